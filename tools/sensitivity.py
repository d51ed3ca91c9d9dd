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

from sqznet_tf import cli, reporting  # noqa: E402
from sqznet_tf.data import preprocessing  # noqa: E402
from sqznet_tf.errors import SqznetError  # noqa: E402

FLAGS = flags.FLAGS

cli.define_classifier_data_flags()
flags.DEFINE_integer("limit", None, "Images per evaluation (the first ones of --data_dir, round-robin over the classes); default all. "
                     "The run costs 1 + layers x sparsities evaluations.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.", lower_bound=1)
flags.DEFINE_list("layers", None, "Layers to prune one at a time; default every prunable (conv/dense) layer.")
flags.DEFINE_list("sparsities", ["0.25", "0.5", "0.75", "0.9"], "Sparsities to test, fractions in [0, 1).")
flags.DEFINE_float("budget", 0.01, "Largest accepted accuracy drop for the proposed map (0.01 = one point).")
flags.DEFINE_enum("metric", "top1", ["top1", "top5"], "Accuracy measured.")
flags.DEFINE_bool("check_combined", True, "Evaluate the proposed map as a whole and step the most "
                  "sensitive layers down until the combined drop fits --budget (a few more evaluations).")
flags.DEFINE_string("output_dir", None, "Write sensitivity.json, sensitivity.png and sparsity_map.json here "
                    "(each atomically).")
flags.DEFINE_enum("format", "table", ["table", "json"], "Output format; json prints one JSON object as the "
                  "last line of stdout.")


def parse_sparsities(values):
  """--sparsities as floats, checked to be fractions in [0, 1)."""
  from sqznet_tf.pruning import sensitivity as sens  # pylint: disable=g-import-not-at-top
  out = []
  for v in values:
    try:
      out.append(float(v))
    except ValueError:
      raise SqznetError(f"--sparsities: {v!r} is not accepted; expected fractions in [0, 1), "
                        "e.g. --sparsities=0.25,0.5,0.75,0.9") from None
  return sens.check_sparsities(out)


def main(argv):
  del argv
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
  from sqznet_tf.pruning import sensitivity as sens  # pylint: disable=g-import-not-at-top
  sparsities = parse_sparsities(FLAGS.sparsities)
  budget = sens.check_budget(FLAGS.budget)
  source = cli.source_from_flags(FLAGS)
  model, info = evaluation.load_classifier(FLAGS.model, FLAGS.weights, FLAGS.saved_model)
  layers = sens.check_layers(model, FLAGS.layers)
  prep = info.preprocessing if info else preprocessing.PRESETS["caffe"]
  in_size = model.input_shape[1]
  if in_size is not None and in_size != prep.crop_size:
    raise SqznetError(f"the preprocessing crops to {prep.crop_size} but the model's input is {in_size}; "
                      "use a model built for the weights' crop size")
  preprocessor = preprocessing.Preprocessor(prep)
  last = {}

  def accuracy(m):
    r = evaluation.evaluate(m, source, preprocessor, FLAGS.batch_size, FLAGS.limit, progress=False)
    last.update(n=r.n, skipped=len(r.skipped))
    return getattr(r, FLAGS.metric)

  n_evals = 1 + len(layers) * len(sparsities)
  reporting.progress(f"{source.layout} source {source.location}: "
                     f"{len(source) if source.size_known else 'unknown number of'} images, "
                     f"{FLAGS.limit or 'all'} per evaluation; {len(layers)} layers x {len(sparsities)} "
                     f"sparsities = {n_evals} evaluations")
  result = sens.sensitivity(model, accuracy, layers, sparsities, metric=FLAGS.metric)
  per_layer = sens.propose_map(result, budget)
  check = (sens.backoff_map(result, budget, model, accuracy, progress=True)
           if FLAGS.check_combined else None)
  sparsity_map = check.sparsity_map if check else per_layer

  d = {"model": FLAGS.saved_model or FLAGS.model, "weights": None if FLAGS.saved_model else FLAGS.weights,
       "data_dir": FLAGS.data_dir, "layout": source.layout, "images": last.get("n"),
       "skipped": last.get("skipped"), "metric": FLAGS.metric, "budget": budget,
       "preprocessing": prep.to_dict(), "sensitivity": result.to_dict(), "per_layer_map": per_layer,
       "combined": check.to_dict() if check else None, "sparsity_map": sparsity_map}
  if FLAGS.output_dir:
    out = FLAGS.output_dir
    cli.write_json_atomic(os.path.join(out, "sensitivity.json"), d)
    sens.plot(result, os.path.join(out, "sensitivity.png"))
    cli.write_json_atomic(os.path.join(out, "sparsity_map.json"), sparsity_map)
    d["outputs"] = [os.path.join(out, f) for f in ("sensitivity.json", "sensitivity.png", "sparsity_map.json")]
  if FLAGS.format == "json":
    reporting.print_json(d)
    return
  pairs = [("model", f"{d['model']} (weights: {d['weights']})"),
           ("data", f"{FLAGS.data_dir} ({source.layout}), {d['images']} images per evaluation, "
                    f"{d['skipped']} skipped"),
           ("baseline", f"{FLAGS.metric} {result.baseline:.4f}"),
           ("budget", f"drop <= {budget:g}")]
  if check:
    pairs.append(("combined map", f"{FLAGS.metric} {check.accuracy:.4f} (drop {check.drop:.4f}) after "
                                  f"{len(check.history)} map(s) checked"))
  print(reporting.kv_lines(pairs))
  print()
  rows = result.rows()
  for row in rows:
    row["per_layer"] = per_layer[row["layer"]]
    row["map"] = sparsity_map[row["layer"]]
  print(reporting.table(rows, result.columns() + ["per_layer", "map"]))
  for path in d.get("outputs", []):
    print(f"wrote {path}")


def run():
  cli.run_main(main)


if __name__ == "__main__":
  run()
