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

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402
from sqznet_tf.errors import SqznetError  # noqa: E402

FLAGS = flags.FLAGS

sq_flags.define_model_flags()
sq_flags.define_labels_flag()  # without it: the names the weights carry, else class numbers
sq_flags.define_top_k_flag()
sq_flags.define_runtime_flag()
sq_flags.define_threads_flags()
sq_flags.define_preprocessing_flags(full=False)
sq_flags.define_output_flags(output=False)


def main(argv):
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top  (TensorFlow after flag parsing)
  from sqznet_tf.data.preprocessing import Preprocessor  # pylint: disable=g-import-not-at-top
  from sqznet_tf.formats.labels import read_labels, stored_labels  # pylint: disable=g-import-not-at-top
  files = argv[1:]
  if not files:
    raise SqznetError("no image files given; usage: sqznet-predict [flags] IMAGE [IMAGE ...]")
  labels = read_labels(FLAGS.labels) if FLAGS.labels else None
  model, info = sq_flags.load_model_from_flags()
  if labels is None and info is not None:
    labels = stored_labels(info.labels, int(model.output_shape[-1]))  # e.g. CIFAR-10's class names
  prep = sq_flags.preprocessing_from_flags(info, model)
  results, failed = evaluation.predict_each(model, files, Preprocessor(prep, FLAGS.resize_backend), labels,
                                            FLAGS.top_k, runtime=FLAGS.runtime)
  if FLAGS.format == "json":
    reporting.print_json({"predictions": results, "failed": failed})
  else:
    if labels is None:
      reporting.progress("no --labels given and the weights carry no class names: classes are shown as numbers")
    for r in results:
      print(r["file"])
      for rank, t in enumerate(r["top"], 1):
        print(f"  {rank}. {t['probability']:7.2%}  {t['label']}  (class {t['class']})")
  if failed:
    for f in failed:
      reporting.progress(f"not classified: {f['error']}")
    raise SqznetError(f"{len(failed)} of {len(files)} images could not be classified (listed above)")


def run():
  sq_flags.run_main(main, allow_args=True)


if __name__ == "__main__":
  run()
