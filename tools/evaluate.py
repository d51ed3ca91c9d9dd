"""sqznet-evaluate: top-1 / top-5 accuracy of a model on labelled photos.

Data layouts (detected, or set with --data_format):
  folders   DATA_DIR/<class>/<image>
  flat      DATA_DIR/nXXXXXXXX_name.JPEG, mapped to classes through --labels (a synset file)
  tfrecord  ImageNet-style TFRecords (image/encoded, image/class/label)

Unreadable images are skipped, counted and listed; the JSON result is the last line of stdout.

Examples:
  sqznet-evaluate --data_dir=../shared/data/imagenet_sample/images \\
      --labels=../shared/data/imagenet_sample/synset_words.txt \\
      --weights=../shared/data/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net
  sqznet-evaluate --weights=imagenet --data_dir=/data/imagenet/val --labels=synset_words.txt \\
      --resize_backend=pil --format=json
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import cli, reporting  # noqa: E402
from sqznet_tf.data import preprocessing  # noqa: E402

FLAGS = flags.FLAGS

cli.define_classifier_data_flags()
flags.DEFINE_enum("preprocessing", None, list(preprocessing.PRESETS),
                  "Preset; default: the one stored with the weights (caffe for the release).")
flags.DEFINE_integer("crop_size", None, "Centre-crop side; default: the preset's (caffe 227).", lower_bound=1)
flags.DEFINE_float("crop_fraction", None, "crop_size / resize side; default: the preset's (caffe 227/256).")
flags.DEFINE_enum("resize_method", None, preprocessing.METHODS, "Resize interpolation; default: the preset's.")
flags.DEFINE_bool("antialias", None, "Antialias when downscaling (tf back-end); default: the preset's.")
flags.DEFINE_enum("resize_backend", "tf", preprocessing.BACKENDS, "tf: tf.image (as in exported graphs); "
                  "pil: Pillow's antialiased resize (as the Caffe reference figures were measured).")
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.", lower_bound=1)
flags.DEFINE_integer("limit", None, "Evaluate at most this many images (folders: taken round-robin over the classes).", lower_bound=1)
flags.DEFINE_bool("per_class", False, "Also report accuracy per class.")
flags.DEFINE_enum("format", "table", ["table", "json"], "Output format; json prints one JSON object as the "
                  "last line of stdout.")
flags.DEFINE_string("output", None, "Also write the JSON result to this file (atomically).")


def resolve_preprocessing(info):
  """The preset asked for, else the weights' own preprocessing, with the flags' overrides."""
  if FLAGS.preprocessing:
    p = preprocessing.PRESETS[FLAGS.preprocessing]
  else:
    p = info.preprocessing if info else preprocessing.PRESETS["caffe"]
  p = preprocessing.with_crop(p, FLAGS.crop_size, FLAGS.crop_fraction)
  if FLAGS.resize_method:
    p = p.replace(method=FLAGS.resize_method)
  if FLAGS.antialias is not None:
    p = p.replace(antialias=FLAGS.antialias)
  return p


def main(argv):
  del argv
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
  source = cli.source_from_flags(FLAGS)
  reporting.progress(f"{source.layout} source {source.location}: "
                     f"{len(source) if source.size_known else 'unknown number of'} images")
  model, info = evaluation.load_classifier(FLAGS.model, FLAGS.weights, FLAGS.saved_model, FLAGS.crop_size)
  prep = resolve_preprocessing(info)
  in_size = model.input_shape[1]
  if in_size is not None and in_size != prep.crop_size:
    raise cli.SqznetError(f"crop size {prep.crop_size} does not match the model's input {in_size}; "
                          f"pass --crop_size={in_size} or build the model for {prep.crop_size}")
  result = evaluation.evaluate(model, source, preprocessing.Preprocessor(prep, FLAGS.resize_backend),
                               FLAGS.batch_size, FLAGS.limit, FLAGS.per_class)
  d = result.to_dict(source.class_names)
  d.update(model=FLAGS.saved_model or FLAGS.model, weights=None if FLAGS.saved_model else FLAGS.weights,
           data_dir=FLAGS.data_dir, layout=source.layout, resize_backend=FLAGS.resize_backend,
           preprocessing=prep.to_dict())
  if FLAGS.output:
    cli.write_json_atomic(FLAGS.output, d)
  if FLAGS.format == "json":
    reporting.print_json(d)
    return
  pairs = [("model", f"{d['model']} (weights: {d['weights']})"), ("data", f"{d['data_dir']} ({source.layout})"),
           ("preprocessing", f"{prep.mode}: resize {prep.resize} {prep.resize_size}, crop {prep.crop_size}, "
                             f"{prep.channel_order}, {prep.method}{' antialiased' if prep.antialias else ''} "
                             f"({FLAGS.resize_backend})"),
           ("images", f"{result.n} evaluated, {len(result.skipped)} skipped (unreadable)"),
           ("top-1", f"{result.top1:.2%} ({result.correct1}/{result.n})"),
           ("top-5", f"{result.top5:.2%} ({result.correct5}/{result.n})"),
           ("speed", f"{d['images_per_sec']} images/s ({d['seconds']} s)")]
  print(reporting.kv_lines(pairs))
  for s in d["skipped_files"]:
    print(f"skipped {s['id']}: {s['reason']}")
  if FLAGS.per_class:
    rows = [{k: c[k] for k in ("label", "name", "n", "top1_acc", "top5_acc")} for c in d["per_class"]]
    print()
    print(reporting.table(rows, ["label", "name", "n", "top1_acc", "top5_acc"]))


def run():
  cli.run_main(main)


if __name__ == "__main__":
  run()
