"""Paper Table 2 on the real weights: weight sharing and entropy coding of the Deep Compression release.

Run by hand; results go to BENCHMARKS.md and the README. Not a test.

Starts from the decoded release (SqueezeNet v1.0, 8-bit shared, 33.4% dense, 675,763 bytes) and,
without any ImageNet training (there is no training set here), re-shares each layer's non-zero
weights to 2^bits values (exact least-squares 1-D k-means, code 0 for zero), optionally prunes
further by magnitude, writes the .sqz container with and without Huffman coding, and measures
top-1/top-5 on the 500 sample photos (tf.image preprocessing, as sqznet-evaluate's default).
The sizes are of the real files (bytes; the paper's MB are KiB-based: 0.66 MB = 675,840 bytes).

  python bench/deep_compression_table.py                 # the default list of points
  python bench/deep_compression_table.py --points=6,5:0.7
"""

import fnmatch
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("points", ["8", "7", "6", "5", "4", "6:0.7", "6:conv10=0.85", "6:*expand3x3=0.75",
                             "6/conv10=5", "6/*expand3x3=5", "6/fire*=5", "6/conv10=5;fire9*=5"],
                  "bits[/glob=bits;...][:sparsity]: code width (per-layer widths by layer glob after '/'), "
                  "then a magnitude-pruning sparsity of every layer but conv1, or layer-glob=sparsity pairs "
                  "joined by ';' (zeros already there count; none: the release's own per-layer density).")
flags.DEFINE_string("shared", "../shared/data", "Shared data folder.")


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
  from sqznet_tf.compression import cluster, container, pipeline  # pylint: disable=g-import-not-at-top
  from sqznet_tf.formats import sqz  # pylint: disable=g-import-not-at-top
  from sqznet_tf.weights import weights_info  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data import preprocessing, sources  # pylint: disable=g-import-not-at-top
  from sqznet_tf.pruning import prune  # pylint: disable=g-import-not-at-top
  from sqznet_tf.formats import labels  # pylint: disable=g-import-not-at-top
  s = FLAGS.shared
  release = f"{s}/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net"
  model = sqznet_tf.get_model("squeezenet_v1_0_caffe", weights=release)
  info = weights_info(model)
  original = model.get_weights()
  src = sources.open_source(f"{s}/imagenet_sample/images",
                            labels=labels.read_labels(f"{s}/imagenet_sample/synset_words.txt"))
  prep = preprocessing.Preprocessor(preprocessing.PRESETS["caffe"])
  names = pipeline.coded_layers(model)

  def measure():
    r = evaluation.evaluate(model, src, prep, progress=False)
    return r.top1, r.top5

  base1, base5 = measure()
  print("| weights | bits | kernel density | file (fixed width) | file (Huffman) | top-1 | top-5 | top-1 change |")
  print("|---|---|---|---|---|---|---|---|")
  print(f"| release file as is | 8 | {pipeline.kernel_density(model):.3f} | 675,763 (.net) | | {base1:.1%} | "
        f"{base5:.1%} | |", flush=True)
  conf = container.model_config("squeezenet_v1_0_caffe", {"classes": 1000, "input_shape": [227, 227, 3]}, info)
  for point in FLAGS.points:
    start = time.time()
    bits_part, _, sparsity = point.partition(":")
    base_bits, _, per_layer = bits_part.partition("/")
    globs = {k: int(v) for k, v in (item.split("=") for item in per_layer.split(";"))} if per_layer else {}
    widths = {n: next((b for g, b in globs.items() if fnmatch.fnmatchcase(n, g)), int(base_bits)) for n in names}
    model.set_weights(original)
    if sparsity and "=" not in sparsity:
      prune.apply_map(model, {n: (0.0 if n == "conv1" else float(sparsity)) for n in names})
    elif sparsity:
      spec = {k: float(v) for k, v in (item.split("=") for item in sparsity.split(";"))}
      prune.apply_map(model, prune.resolve_targets(model, spec, ()))
    shared = {}
    for b in sorted(set(widths.values())):
      shared.update(cluster.share_model(model, b, "optimal", [n for n in names if widths[n] == b]))
    tensors = container.model_tensors(model, widths, shared, names)
    fixed, _ = sqz.encode(tensors, conf, entropy=False)
    coded, _ = sqz.encode(tensors, conf, entropy=True)
    back = sqz.decode(coded)
    for layer in model.layers:  # what is measured is what the file holds
      for i, w in enumerate(layer.get_weights()):
        assert np.array_equal(back.tensors[(layer.name, i)], w)
    top1, top5 = measure()
    what = "re-shared" + (f", pruned to {sparsity}" + ("" if "=" in sparsity else " (conv1 kept)") if sparsity else "")
    bits = base_bits + (f" ({per_layer.replace(';', ', ')})" if per_layer else "")
    print(f"| {what} | {bits} | {pipeline.kernel_density(model):.3f} | {len(fixed):,} | {len(coded):,} | "
          f"{top1:.1%} | {top5:.1%} | {100 * (top1 - base1):+.1f} |", flush=True)
    print(f"<!-- {point}: {time.time() - start:.0f} s -->", file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
