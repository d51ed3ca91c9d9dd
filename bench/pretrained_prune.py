"""Magnitude pruning of the pretrained SqueezeNet to the paper's density, without retraining.

Run by hand; results go to BENCHMARKS.md. Not a test.

The Deep Compression release is already 33.4% dense overall, but unevenly: its 1x1 layers are
almost dense and its 3x3 layers about 33%. This prunes every layer (or every layer but those in
--keep_dense) to --sparsity by magnitude, zeros already there counting, and measures top-1/top-5
on the 500 sample photos. There is no ImageNet training set here, so DSD's retraining of the
sparse phase cannot be run on the pretrained net; this is the no-retraining point.

  python bench/pretrained_prune.py --sparsity=0.666
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_float("sparsity", 0.666, "Per-layer target sparsity (the paper's density is 33.4%).")
flags.DEFINE_list("keep_dense", [], "Layers left as released.")
flags.DEFINE_string("shared", "../shared/data", "Shared data folder.")


def main(argv):
  del argv
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data import preprocessing, sources  # pylint: disable=g-import-not-at-top
  from sqznet_tf.pruning import prune  # pylint: disable=g-import-not-at-top
  from sqznet_tf.formats import labels  # pylint: disable=g-import-not-at-top
  s = FLAGS.shared
  model = sqznet_tf.get_model("squeezenet_v1_0_caffe",
                              weights=f"{s}/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net")
  src = sources.open_source(f"{s}/imagenet_sample/images",
                            labels=labels.read_labels(f"{s}/imagenet_sample/synset_words.txt"))
  prep = preprocessing.Preprocessor(preprocessing.PRESETS["caffe"])
  def measure(tag):
    r = evaluation.evaluate(model, src, prep, progress=False)
    rep = prune.sparsity_report(model)
    print(f"| {tag} | {1 - rep['sparsity']:.3f} | {r.top1:.3f} | {r.top5:.3f} |", flush=True)
  print("| weights | kernel density | top-1 | top-5 |\n|---|---|---|---|")
  measure("as released")
  targets = {n: (0.0 if n in FLAGS.keep_dense else FLAGS.sparsity) for n in prune.prunable_layers(model)}
  prune.apply_map(model, targets)
  keep = f", {', '.join(FLAGS.keep_dense)} kept" if FLAGS.keep_dense else ""
  measure(f"every layer pruned to sparsity {FLAGS.sparsity}{keep}")


if __name__ == "__main__":
  app.run(main)
