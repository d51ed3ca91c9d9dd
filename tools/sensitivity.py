"""sqznet-sensitivity: accuracy after pruning one layer at a time, and a per-layer sparsity map.

For each layer (default: every conv/dense layer) and each sparsity, the layer's kernel alone is
pruned by magnitude (no retraining), the model is evaluated on labelled photos, and the kernel
is restored. Sparsity counts zeros already there (the Deep Compression release is 50-80% zero
in many layers, so low targets change nothing there).

The proposed map gives each layer the largest tested sparsity whose drop alone is within
--budget. Drops do not add up, so by default (--check_combined) the whole map is evaluated at
once and the most sensitive layers are stepped down until the combined drop fits too.
--output_dir gets sensitivity.json, sensitivity.png and sparsity_map.json (what
sqznet-dsd --sparsity=FILE reads). The JSON result is the last line of stdout with --format=json.

Data layouts as in sqznet-evaluate (folders, flat with --labels, tfrecord).

Examples:
  sqznet-sensitivity --data_dir=../shared/data/imagenet_sample/images \\
      --labels=../shared/data/imagenet_sample/synset_words.txt \\
      --weights=../shared/data/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net \\
      --limit=200 --output_dir=/tmp/sens
  sqznet-sensitivity --data_dir=/data/imagenet/val --labels=synset_words.txt \\
      --layers=conv1,fire9_expand1x1,conv10 --sparsities=0.3,0.6,0.9 --budget=0.005 --format=json
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  # `python tools/sensitivity.py`: make the repository importable without installing.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402

FLAGS = flags.FLAGS

sq_flags.define_model_flags()
sq_flags.define_labelled_data_flags()
sq_flags.define_evaluation_flags()  # the run costs 1 + layers x sparsities evaluations of --limit photos
flags.DEFINE_list("layers", None, "Layers to prune one at a time; default every prunable (conv/dense) layer.")
flags.DEFINE_list("sparsities", ["0.25", "0.5", "0.75", "0.9"], "Sparsities to test, fractions in [0, 1).")
flags.DEFINE_float("budget", 0.01, "Largest accepted accuracy drop for the proposed map (0.01 = one point).")
flags.DEFINE_enum("metric", "top1", ["top1", "top5"], "Accuracy measured.")
flags.DEFINE_bool("check_combined", True, "Evaluate the proposed map as a whole and step the most "
                  "sensitive layers down until the combined drop fits --budget (a few more evaluations).")
flags.DEFINE_string("output_dir", None, "Write sensitivity.json, sensitivity.png and sparsity_map.json here "
                    "(each atomically).")
sq_flags.define_output_flags(output=False)


def main(argv):
  del argv
  sparsities = sq_flags.float_list("sparsities", FLAGS.sparsities)
  sq_flags.check_outputs(folders=[("--output_dir", FLAGS.output_dir)])
  sq_flags.check_model_flags()
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top  (TensorFlow after flag parsing)
  from sqznet_tf.pruning import sensitivity as sens  # pylint: disable=g-import-not-at-top
  source = sq_flags.source_from_flags()
  model, info = sq_flags.load_model_from_flags()
  prep = sq_flags.preprocessing_from_flags(info, model)
  accuracy, last = evaluation.accuracy_fn(source, prep, FLAGS.batch_size, FLAGS.limit, FLAGS.metric)
  reporting.progress(f"{source.layout} source {source.location}: "
                     f"{len(source) if source.size_known else 'unknown number of'} images, {FLAGS.limit or 'all'} "
                     f"per evaluation; {len(FLAGS.layers or sens.prunable_layers(model))} layers x "
                     f"{len(sparsities)} sparsities")
  d, result = sens.analyse(model, accuracy, FLAGS.layers, sparsities, FLAGS.budget, FLAGS.metric,
                           FLAGS.check_combined, FLAGS.output_dir,
                           extra=dict(evaluation.describe_run(model, sq_flags.model_ref_from_flags(), source),
                                      preprocessing=prep.to_dict()))
  d.update(images=last.get("n"), skipped=last.get("skipped"))
  if FLAGS.format == "json":
    reporting.print_json(d)
    return
  check = d["combined"]
  pairs = [("model", f"{d['model']} (weights: {d['weights']})"),
           ("data", f"{FLAGS.data_dir} ({source.layout}), {d['images']} images per evaluation, {d['skipped']} skipped"),
           ("baseline", f"{FLAGS.metric} {result.baseline:.4f}"), ("budget", f"drop <= {d['budget']:g}")]
  if check:
    pairs.append(("combined map", f"{FLAGS.metric} {check['accuracy']:.4f} (drop {check['drop']:.4f}) after "
                                  f"{len(check['history'])} map(s) checked"))
  print(reporting.kv_lines(pairs) + "\n")
  rows = [dict(r, per_layer=d["per_layer_map"][r["layer"]], map=d["sparsity_map"][r["layer"]]) for r in result.rows()]
  print(reporting.table(rows, result.columns() + ["per_layer", "map"]))
  for path in d.get("outputs", []):
    print(f"wrote {path}")


def run():
  sq_flags.run_main(main)


if __name__ == "__main__":
  run()
