"""sqznet-verify-export: every export of a version against the Keras model it came from, on real photos.

Loads the SavedModel the way TF Serving does (a session on the version folder, requests fed by
signature) and the version's TFLite (ai-edge-litert) and ONNX (onnxruntime) files, runs them on
the labelled photos of --data_dir and the Keras model on the same photos, and prints per export:
the largest absolute difference of probabilities from the Keras model, top-1 agreement with it,
top-1 and top-5 accuracy, and whether it passes:

  float exports (SavedModel serving_bytes / serving_default, TFLite float32, ONNX):
      max difference <= --tolerance (1e-4)
  quantized or rounded ones (serving_uint8, TFLite float16 / dynamic / int8):
      top-1 accuracy at most --max_top1_drop (2 points) below the Keras model's

It also replays the warm-up file's requests against the signatures. The Keras model is rebuilt
from what sqznet_export.json records (override with --model/--weights). Exit status 1 when a
check fails.

Example:
  sqznet-verify-export --export_dir=savedmodels/squeezenet \\
      --data_dir=../shared/data/imagenet_sample/images --labels=../shared/data/imagenet_sample/synset_words.txt
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402

FLAGS = flags.FLAGS

sq_flags.define_export_dir_flags()
flags.mark_flag_as_required("export_dir")
sq_flags.define_labelled_data_flags(what="Labelled photos")
sq_flags.define_evaluation_flags(batch_size=16)
sq_flags.define_model_flags(weights=None)
flags.DEFINE_float("tolerance", 1e-4, "Largest probability difference allowed for float exports.")
flags.DEFINE_float("max_top1_drop", 0.02, "Largest top-1 drop allowed for quantized exports (0.02 = 2 points).")
sq_flags.define_output_flags(output=False)


def main(argv):
  del argv
  from sqznet_tf.export import verify  # pylint: disable=g-import-not-at-top  (TensorFlow after flag parsing)
  folder = verify.version_dir(FLAGS.export_dir, FLAGS.version)  # before the photos: fail fast on a bad folder
  out = verify.run(folder, sq_flags.source_from_flags(), None, FLAGS.limit, FLAGS.batch_size,
                   sq_flags.model_ref_from_flags(), FLAGS.model, sq_flags.overrides_from_flags(), FLAGS.tolerance,
                   FLAGS.max_top1_drop, progress=reporting.progress)
  if FLAGS.format == "json":
    reporting.print_json(out)
  else:
    pct = lambda v: "" if v is None else f"{v:.2%}"  # noqa: E731
    print(reporting.table([{"export": r["format"], "max |diff|": f"{r['max_abs_diff']:.2e}",
                            "top-1 agree": pct(r["top1_agreement"]), "top-1": pct(r["top1"]), "top-5": pct(r["top5"]),
                            "bytes": r["file_bytes"] or "", "check": r.get("check", "reference"),
                            "pass": {True: "yes", False: "NO"}.get(r.get("pass"), "")} for r in out["rows"]],
                          ["export", "max |diff|", "top-1 agree", "top-1", "top-5", "bytes", "check", "pass"]))
    a, warmup = out["serving_default_vs_bytes"], out["warmup"]
    if a["max_abs_diff"] is not None:
      print(f"\n{out['n']} photos ({out['skipped']} unreadable skipped). serving_default vs serving_bytes: max "
            f"|diff| {a['max_abs_diff']:.2e}, top-1 agreement {a['top1_agreement']:.2%}.")
    print(f"Warm-up: {warmup['requests']} requests ({', '.join(warmup['signatures'])}), {warmup['failed']} failed.")
  if out["failures"]:
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: checks failed: {'; '.join(out['failures'])}\n")
    sys.exit(1)


def run():
  sq_flags.run_main(main)


if __name__ == "__main__":
  run()
