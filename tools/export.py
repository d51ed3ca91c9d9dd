"""sqznet-export: a model for TF Serving (SavedModel with preprocessing, labels and warm-up), TFLite, ONNX.

Starts from --model and --weights ('imagenet', a .net file, a .sqz container, Keras weights saved
by this package, a checkpoint of a pruning/clustering phase (wrappers stripped), or a sqznet-train
folder) and writes

  EXPORT_DIR/VERSION/             SavedModel in TF Serving's layout (default EXPORT_DIR:
                                  savedmodels/<model>; VERSION: the next free integer)
    assets/labels.txt             class names, looked up in the graph
    assets.extra/tf_serving_warmup_requests   PredictionLog records replayed by TF Serving on load
    assets.extra/sqznet_export.json           what was exported, from what, how to preprocess
  EXPORT_DIR/portable/VERSION/    --tflite and --onnx files (TF Serving skips this folder)

Signatures: serving_default (float32 images [N, size, size, 3], RGB 0-255), serving_uint8 (the
same in uint8) and serving_bytes (encoded JPEG/PNG strings [N], decoded, resized and cropped in
the graph). Each returns probabilities, classes, scores and labels (the top --top_k).
An existing version is never replaced without --overwrite. Check the result with
sqznet-verify-export.

Examples:
  sqznet-export --weights=../shared/data/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net \\
      --labels=../shared/data/imagenet_sample/synset_words.txt --export_dir=savedmodels/squeezenet \\
      --tflite=float32,float16,dynamic,int8 --representative_data=../shared/data/imagenet_sample/images --onnx
  sqznet-export --model=squeezenet_v1_1 --batch_norm --weights=runs/demo/phase3_dense
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import cli, reporting  # noqa: E402
from sqznet_tf.errors import SqznetError  # noqa: E402

FLAGS = flags.FLAGS

TFLITE_KINDS = ("float32", "float16", "dynamic", "int8")

flags.DEFINE_string("model", "squeezenet_v1_0_caffe", "Registered model (a .sqz --weights names its own).")
cli.define_override_flags()
flags.DEFINE_string("weights", "imagenet", "'imagenet', a .net file, a .sqz container, Keras weights (.h5) saved "
                    "by this package (a pruning/clustering checkpoint included), or a sqznet-train folder.")
flags.DEFINE_integer("classes", None, "Classes of the model (default: the weights' metadata).", lower_bound=1)
flags.DEFINE_integer("input_size", None, "Input side (default: the weights' crop size).", lower_bound=8)
flags.DEFINE_string("export_dir", None, "The model folder TF Serving watches (default savedmodels/<model>).")
flags.DEFINE_integer("version", None, "Version folder to write (default: the next free one).", lower_bound=1)
flags.DEFINE_bool("overwrite", False, "Replace an existing version (otherwise refused).")
flags.DEFINE_string("labels", None, "Class names: a synset file ('nXXXXXXXX name' per line) or one name per "
                    "line; default: the weights' metadata (training runs store their class folders).")
flags.DEFINE_integer("top_k", 5, "Classes returned per image.", lower_bound=1)
flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests (needs tensorflow-serving-api).")
flags.DEFINE_list("warmup_images", [], "Photos for the warm-up requests (default: a generated JPEG).")
flags.DEFINE_list("tflite", [], f"TFLite files to write: any of {', '.join(TFLITE_KINDS)}.")
flags.DEFINE_string("representative_data", None, "Folder of photos (searched recursively) to calibrate int8 on.")
flags.DEFINE_integer("representative_count", 100, "Photos to calibrate int8 on (spread over the folder).",
                     lower_bound=1)
flags.DEFINE_enum("tflite_sparsity", "auto", ["auto", "on", "off"], "The converter's sparsity optimization; "
                  "auto: on when at most half of the kernel weights are non-zero (a pruned model).")
flags.DEFINE_bool("onnx", False, "Also write model.onnx (tf2onnx; fails if an op is left unconverted).")
flags.DEFINE_integer("opset", 17, "ONNX opset.", lower_bound=9)
flags.DEFINE_enum("format", "table", ["table", "json"], "Output; json prints one JSON object as the last line.")


def _class_names(info, classes: int):
  from sqznet_tf.weights import labels as labels_lib  # pylint: disable=g-import-not-at-top
  if FLAGS.labels:
    names = labels_lib.read_labels(FLAGS.labels).names
    if len(names) != classes:
      raise SqznetError(f"label file {FLAGS.labels!r} has {len(names)} classes; the model has {classes}")
    return names, os.path.abspath(FLAGS.labels)
  stored = info.labels if info else ""
  if stored and os.path.isfile(stored):
    return labels_lib.read_labels(stored).names, stored
  if stored and len(stored.split(",")) == classes:
    return stored.split(","), "the weights' metadata"
  reporting.progress(f"no class names for the {classes} classes (pass --labels): the labels output will hold "
                     "class numbers")
  return [str(i) for i in range(classes)], "class numbers"


def _check_flags():
  bad = [k for k in FLAGS.tflite if k not in TFLITE_KINDS]
  if bad:
    raise SqznetError(f"--tflite={bad[0]} is not accepted; expected a list of {', '.join(TFLITE_KINDS)}")
  if "int8" in FLAGS.tflite and not FLAGS.representative_data:
    raise SqznetError("--tflite=int8 calibrates on real photos: give --representative_data=FOLDER")
  for path in FLAGS.warmup_images:
    if not os.path.isfile(path):
      raise SqznetError(f"--warmup_images: {path!r} is not a file")


def main(argv):
  del argv
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data import preprocessing  # pylint: disable=g-import-not-at-top
  from sqznet_tf.export import portable, serving, verify  # pylint: disable=g-import-not-at-top
  _check_flags()
  overrides = cli.overrides_from_flags(FLAGS)
  model, info = evaluation.load_trained(FLAGS.model, FLAGS.weights, overrides, FLAGS.classes, FLAGS.input_size)
  name = info.architecture if info and str(FLAGS.weights).endswith(".sqz") else FLAGS.model
  export_dir = FLAGS.export_dir or os.path.join("savedmodels", name)
  version = serving.choose_version(export_dir, FLAGS.version, FLAGS.overwrite)
  portable_folder = verify.portable_dir(os.path.join(export_dir, str(version)))
  if os.path.exists(portable_folder) and not FLAGS.overwrite and (FLAGS.tflite or FLAGS.onnx):
    raise SqznetError(f"{portable_folder} exists; pass --overwrite to replace it")
  size = int(model.input_shape[1])
  prep = info.preprocessing if info else preprocessing.PRESETS["caffe"]
  if prep.crop_size != size:
    prep = preprocessing.with_crop(prep, size, None)
  classes = int(model.output_shape[-1])
  names, labels_from = _class_names(info, classes)
  if FLAGS.top_k > classes:
    raise SqznetError(f"--top_k={FLAGS.top_k} is not accepted; the model has {classes} classes")

  # Everything is converted in memory first: a failed conversion leaves no files behind.
  files = {}
  sparse = portable.is_sparse(model) if FLAGS.tflite_sparsity == "auto" else FLAGS.tflite_sparsity == "on"
  rep = None
  if "int8" in FLAGS.tflite:
    rep = portable.representative_images(FLAGS.representative_data, prep, FLAGS.representative_count)
  for kind in FLAGS.tflite:
    reporting.progress(f"TFLite {kind}{' (sparse)' if sparse and kind != 'dynamic' else ''}")
    files[f"model_{kind}.tflite"] = portable.tflite(model, kind, rep, sparse=sparse)
  if FLAGS.onnx:
    reporting.progress(f"ONNX (opset {FLAGS.opset})")
    files["model.onnx"] = portable.onnx(model, FLAGS.opset)

  warmup = [cli.read_bytes(p, "warm-up image") for p in FLAGS.warmup_images]
  source = {"model": FLAGS.model, "overrides": overrides, "classes": classes, "input_size": size,
            "weights": FLAGS.weights if FLAGS.weights in (None, "imagenet") else os.path.abspath(FLAGS.weights)}
  meta = {"source": source, "weights_info": info.to_dict() if info else None, "labels_from": labels_from,
          "portable_files": sorted(files)}
  reporting.progress(f"SavedModel version {version} in {export_dir}")
  written = serving.export_saved_model(model, prep, names, export_dir, version, FLAGS.overwrite, FLAGS.top_k,
                                       warmup, FLAGS.warmup, meta)
  if files:
    _write_folder(portable_folder, files, names, written)
  rows = [{"file": written["path"] + os.sep, "bytes": _tree_bytes(written["path"])}]
  rows += [{"file": os.path.join(portable_folder, f), "bytes": len(d)} for f, d in sorted(files.items())]
  out = {"export_dir": export_dir, "version": version, "path": written["path"], "signatures": written["signatures"],
         "warmup_requests": written["warmup_requests"], "labels_from": labels_from, "sparse": bool(sparse),
         "files": rows}
  if FLAGS.format == "json":
    reporting.print_json(out)
    return
  print(reporting.table([{"export": r["file"], "bytes": r["bytes"]} for r in rows], ["export", "bytes"]))
  print(f"\nVersion {version} of {export_dir} (model name {os.path.basename(os.path.abspath(export_dir))!r}); "
        f"{written['warmup_requests']} warm-up requests; labels from {labels_from}.")


def _write_folder(folder, files, names, record):
  """The portable files, their labels and metadata, written beside and renamed into `folder`."""
  from sqznet_tf.export import serving  # pylint: disable=g-import-not-at-top
  with cli.atomic_folder(folder) as tmp:
    for f, data in files.items():
      with open(os.path.join(tmp, f), "wb") as out:
        out.write(data)
    serving.write_labels(os.path.join(tmp, "labels.txt"), names)
    cli.write_json_atomic(os.path.join(tmp, serving.META_FILE),
                          {k: v for k, v in record.items() if k != "signatures"})


def _tree_bytes(folder):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def run():
  cli.run_main(main)


if __name__ == "__main__":
  run()
