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

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402

FLAGS = flags.FLAGS

sq_flags.define_model_flags()
sq_flags.define_labelled_data_flags()
sq_flags.define_preprocessing_flags()
sq_flags.define_evaluation_flags()
sq_flags.define_runtime_flag()
sq_flags.define_threads_flags()
flags.DEFINE_bool("per_class", False, "Also report accuracy per class.")
sq_flags.define_output_flags()


def main(argv):
  del argv
  sq_flags.check_outputs(files=[("--output", FLAGS.output)])  # before TensorFlow: a bad path fails in 1 s
  sq_flags.check_model_flags(input_size=FLAGS.crop_size)
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top  (TensorFlow after flag parsing)
  from sqznet_tf.io import write_json_atomic  # pylint: disable=g-import-not-at-top
  source = sq_flags.source_from_flags()
  reporting.progress(f"{source.layout} source {source.location}: "
                     f"{len(source) if source.size_known else 'unknown number of'} images")
  model, info = sq_flags.load_model_from_flags(input_size=FLAGS.crop_size)
  prep = sq_flags.preprocessing_from_flags(info, model)
  d = evaluation.evaluate_report(model, source, prep, FLAGS.resize_backend, FLAGS.batch_size, FLAGS.limit,
                                 FLAGS.per_class, model_ref=sq_flags.model_ref_from_flags(),
                                 runtime=FLAGS.runtime)
  d["tf_threads"] = sq_flags.tf_threads()
  if FLAGS.output:
    write_json_atomic(FLAGS.output, d)
  if FLAGS.format == "json":
    reporting.print_json(d)
    return
  print(reporting.kv_lines([
      ("model", f"{d['model']} (weights: {d['weights']})"), ("data", f"{d['data_dir']} ({d['layout']})"),
      ("preprocessing", f"{prep.mode}: resize {prep.resize} {prep.resize_size}, crop {prep.crop_size}, "
                        f"{prep.channel_order}, {prep.method}{' antialiased' if prep.antialias else ''} "
                        f"({FLAGS.resize_backend})"),
      ("images", f"{d['n']} evaluated, {d['skipped']} skipped (unreadable)"),
      ("top-1", f"{d['top1']:.2%} ({d['correct1']}/{d['n']})"),
      ("top-5", f"{d['top5']:.2%} ({d['correct5']}/{d['n']})"),
      ("speed", f"{d['images_per_sec']} images/s ({d['seconds']} s, runtime {d['runtime']}"
                + "".join(f", TF {d['tf_threads'][k]} {k.replace('_', '-')} threads" for k in ("intra_op", "inter_op")
                          if d["tf_threads"][k]) + ")")]))
  for s in d["skipped_files"]:
    print(f"skipped {s['id']}: {s['reason']}")
  if FLAGS.per_class:
    print()
    print(reporting.table(d["per_class"], ["label", "name", "n", "top1_acc", "top5_acc"]))


def run():
  sq_flags.run_main(main)


if __name__ == "__main__":
  run()
