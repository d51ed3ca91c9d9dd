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

from sqznet_tf import cli, reporting  # noqa: E402
from sqznet_tf.errors import SqznetError  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("export_dir", None, "The model folder (its latest version is checked) or a version folder.",
                    required=True)
flags.DEFINE_integer("version", None, "Version to check (default: the latest).", lower_bound=1)
flags.DEFINE_string("data_dir", None, "Labelled photos (class folders, flat WordNet-id files or TFRecords).",
                    required=True)
flags.DEFINE_enum("data_format", "auto", ["auto", "folders", "flat", "tfrecord"], "Layout of --data_dir.")
flags.DEFINE_string("labels", None, "Synset file for flat folders / WordNet-id folder names.")
flags.DEFINE_integer("label_offset", 0, "Subtracted from TFRecord labels.")
flags.DEFINE_integer("limit", None, "Photos to use (round-robin over the classes); default all.", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Images per request.", lower_bound=1)
flags.DEFINE_string("model", None, "Reference model (default: the one the export records).")
flags.DEFINE_string("weights", None, "Reference weights (default: the ones the export records).")
flags.DEFINE_float("tolerance", 1e-4, "Largest probability difference allowed for float exports.")
flags.DEFINE_float("max_top1_drop", 0.02, "Largest top-1 drop allowed for quantized exports (0.02 = 2 points).")
flags.DEFINE_enum("format", "table", ["table", "json"], "Output; json prints one JSON object as the last line.")

EXACT = ("saved_model:serving_bytes", "saved_model:serving_default", "tflite:model_float32", "onnx:model")


def _version_dir():
  from sqznet_tf.export import serving  # pylint: disable=g-import-not-at-top
  d = FLAGS.export_dir
  if os.path.exists(os.path.join(d, "saved_model.pb")):
    if FLAGS.version is not None:
      raise SqznetError(f"--export_dir={d} is a version folder already; leave --version out")
    return d
  have = serving.versions(d)
  if not have:
    raise SqznetError(f"--export_dir={d} holds no SavedModel version (integer folders with saved_model.pb)")
  v = FLAGS.version or have[-1]
  if v not in have:
    raise SqznetError(f"version {v} is not in {d}; it has {', '.join(map(str, have))}")
  return os.path.join(d, str(v))


def _checks(result, warmup):
  keras_top1 = result["rows"][0]["top1"]
  failures = []
  for r in result["rows"][1:]:
    if r["format"] in EXACT:
      r["check"] = f"diff <= {FLAGS.tolerance:g}"
      r["pass"] = r["max_abs_diff"] <= FLAGS.tolerance
    elif keras_top1 is not None:
      r["check"] = f"top-1 drop <= {FLAGS.max_top1_drop:g}"
      r["pass"] = keras_top1 - r["top1"] <= FLAGS.max_top1_drop
    else:
      r["check"], r["pass"] = "", True
    if not r["pass"]:
      failures.append(f"{r['format']} fails {r['check']} (diff {r['max_abs_diff']:.2e}, top-1 {r['top1']})")
  if warmup["failed"]:
    failures.append(f"{warmup['failed']} of {warmup['requests']} warm-up requests fail: {warmup['first_error']}")
  return failures


def main(argv):
  del argv
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
  from sqznet_tf.export import serving, verify  # pylint: disable=g-import-not-at-top
  version_dir = _version_dir()
  meta = serving.read_meta(version_dir)
  src = meta["source"]
  model_name = FLAGS.model or src["model"]
  weights = FLAGS.weights or src["weights"]
  reporting.progress(f"reference: {model_name} with {weights}")
  model, _ = evaluation.load_trained(model_name, weights, src.get("overrides") if not FLAGS.model else None,
                                     src.get("classes"), src.get("input_size"))
  images, crops, labels, skipped = verify.read_images(cli.source_from_flags(FLAGS),
                                                      verify.export_preprocessing(version_dir), FLAGS.limit)
  result = verify.verify(version_dir, model, images, crops, labels, FLAGS.batch_size, progress=reporting.progress)
  warmup = result["warmup"]
  failures = _checks(result, warmup)
  out = dict(result, version_dir=version_dir, skipped=len(skipped), failures=failures)
  if FLAGS.format == "json":
    reporting.print_json(out)
  else:
    pct = lambda v: "" if v is None else f"{v:.2%}"  # noqa: E731
    print(reporting.table([{"export": r["format"], "max |diff|": f"{r['max_abs_diff']:.2e}",
                            "top-1 agree": pct(r["top1_agreement"]), "top-1": pct(r["top1"]), "top-5": pct(r["top5"]),
                            "bytes": r["file_bytes"] or "", "check": r.get("check", "reference"),
                            "pass": {True: "yes", False: "NO"}.get(r.get("pass"), "")} for r in result["rows"]],
                          ["export", "max |diff|", "top-1 agree", "top-1", "top-5", "bytes", "check", "pass"]))
    a = result["serving_default_vs_bytes"]
    print(f"\n{result['n']} photos ({len(skipped)} unreadable skipped). serving_default vs serving_bytes: max "
          f"|diff| {a['max_abs_diff']:.2e}, top-1 agreement {a['top1_agreement']:.2%}.")
    print(f"Warm-up: {warmup['requests']} requests ({', '.join(warmup['signatures'])}), {warmup['failed']} failed.")
  if failures:
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: checks failed: {'; '.join(failures)}\n")
    sys.exit(1)


def run():
  cli.run_main(main)


if __name__ == "__main__":
  run()
