"""sqznet-predict: the top-k classes of one or more photos.

Examples:
  sqznet-predict --labels=../shared/data/imagenet_sample/synset_words.txt \\
      --weights=../shared/data/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net \\
      ../shared/data/imagenet_sample/images/n02123597_Siamese_cat.JPEG
  sqznet-predict --weights=imagenet --labels=synset_words.txt --top_k=3 --format=json cat.jpg dog.jpg
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import cli, reporting  # noqa: E402
from sqznet_tf.data import preprocessing  # noqa: E402
from sqznet_tf.models import configs  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("model", "squeezenet_v1_0_caffe", f"Registered model: {', '.join(configs.list_models())}.")
flags.DEFINE_string("weights", "imagenet", "'imagenet', a .net file, a .sqz container (it names its own "
                    "architecture: --model is not used), or Keras weights saved by this package.")
flags.DEFINE_string("saved_model", None, "A Keras model saved by this package (replaces --model/--weights).")
flags.DEFINE_string("labels", None, "Synset or class-name file (line i = class i); without it classes are "
                    "printed as numbers.")
flags.DEFINE_integer("top_k", 5, "Classes to show per image.", lower_bound=1)
flags.DEFINE_enum("resize_backend", "tf", preprocessing.BACKENDS, "Resize with tf.image or Pillow.")
flags.DEFINE_enum("format", "table", ["table", "json"], "Output format; json prints one JSON object as the "
                  "last line of stdout.")


def main(argv):
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
  from sqznet_tf.weights import labels as labels_lib  # pylint: disable=g-import-not-at-top
  files = argv[1:]
  if not files:
    raise cli.SqznetError("no image files given; usage: sqznet-predict [flags] IMAGE [IMAGE ...]")
  labels = labels_lib.read_labels(FLAGS.labels) if FLAGS.labels else None
  model, info = evaluation.load_classifier(FLAGS.model, FLAGS.weights, FLAGS.saved_model)
  prep = info.preprocessing if info else preprocessing.PRESETS["caffe"]
  if model.input_shape[1] is not None and model.input_shape[1] != prep.crop_size:
    prep = preprocessing.with_crop(prep, crop_size=model.input_shape[1])
  results = evaluation.predict_files(model, files, preprocessing.Preprocessor(prep, FLAGS.resize_backend),
                                     labels, FLAGS.top_k)
  if FLAGS.format == "json":
    reporting.print_json({"predictions": results})
    return
  if labels is None:
    reporting.progress("no --labels given: classes are shown as numbers")
  for r in results:
    print(r["file"])
    for rank, t in enumerate(r["top"], 1):
      print(f"  {rank}. {t['probability']:7.2%}  {t['label']}  (class {t['class']})")


def run():
  cli.run_main(main, allow_args=True)


if __name__ == "__main__":
  run()
