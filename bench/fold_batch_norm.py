"""Batch norm folded into the convolutions at inference: the shipped CIFAR-10 model with and without.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

Times, in one process and alternating rounds, (1) `sqznet_tf.inference.Predictor` with `fold=False`
(the model as it is: conv, bias, batch norm, ReLU) against the default (batch norm folded into each
conv's kernel and bias), at batch 1 and 32; (2) the `serving_default` signature of two exports of
the same model, one written as `sqznet-export` writes it (folded) and one with the folding switched
off. Prints the medians, the per-round ratios' range and the largest difference of the outputs.

  python bench/fold_batch_norm.py --rounds=7
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("weights", "cifar10", "Model to time (any model form with batch norm).")
flags.DEFINE_integer("rounds", 7, "Alternating rounds.")
flags.DEFINE_list("batches", ["1", "32"], "Batch sizes.")


def median_ms(fn, runs):
  for _ in range(5):
    fn()
  times = []
  for _ in range(runs):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return 1000 * statistics.median(times)


def compare(name, a, b, batches):
  """a, b: batch -> callable; prints one line per batch (a: as it is, b: folded)."""
  for batch in batches:
    runs = 60 if batch == 1 else 15
    rows = [(median_ms(a[batch], runs), median_ms(b[batch], runs)) for _ in range(FLAGS.rounds)]
    ratios = [x / y for x, y in rows]
    print(f"| {name} | {batch} | {statistics.median(r[0] for r in rows):.2f} ms | "
          f"{statistics.median(r[1] for r in rows):.2f} ms | {statistics.median(ratios):.2f}x "
          f"({min(ratios):.2f}-{max(ratios):.2f}) |")


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sqznet_tf import loading, reporting  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.export import serving  # pylint: disable=g-import-not-at-top
  from sqznet_tf.inference import Predictor  # pylint: disable=g-import-not-at-top
  model, info = loading.load_model(FLAGS.weights)
  size = int(model.input_shape[1])
  batches = [int(b) for b in FLAGS.batches]
  rng = np.random.default_rng(0)
  x = {b: rng.uniform(-1, 1, (b, size, size, 3)).astype(np.float32) for b in batches}
  pixels = {b: tf.constant(rng.uniform(0, 255, (b, size, size, 3)).astype(np.float32)) for b in batches}
  plain, folded = Predictor(model, fold=False), Predictor(model)
  diff = max(float(np.abs(plain(x[b]) - folded(x[b])).max()) for b in batches)

  tmp = tempfile.mkdtemp(prefix="sqznet-fold-")
  try:
    signatures = {}
    fold = serving.fold_batch_norm
    for name, fn in (("plain", lambda m: m), ("folded", fold)):
      serving.fold_batch_norm = fn  # the export as sqznet-export writes it, and with the folding off
      try:
        serving.export_saved_model(model, info.preprocessing, info.labels.split(","), os.path.join(tmp, name), 1,
                                   True, 5)
      finally:
        serving.fold_batch_norm = fold
      signatures[name] = tf.saved_model.load(os.path.join(tmp, name, "1")).signatures["serving_default"]
    served_diff = max(float(tf.reduce_max(tf.abs(signatures["plain"](images=pixels[b])["probabilities"] -
                                                 signatures["folded"](images=pixels[b])["probabilities"])))
                      for b in batches)
    machine = reporting.machine()
    print(f"\n{FLAGS.weights} ({model.name}, {size} px), {machine.get('cpu')}, {machine.get('cores')} cores, "
          f"{FLAGS.rounds} alternating rounds\n")
    print("| path | batch | as it is | batch norm folded | speed-up (range) |")
    print("|---|---|---|---|---|")
    compare("TF `Predictor`", {b: (lambda b=b: plain(x[b])) for b in batches},
            {b: (lambda b=b: folded(x[b])) for b in batches}, batches)
    call = lambda sig, b: lambda: sig(images=pixels[b])["probabilities"].numpy()  # noqa: E731
    compare("export `serving_default`", {b: call(signatures["plain"], b) for b in batches},
            {b: call(signatures["folded"], b) for b in batches}, batches)
    print(f"\nlargest difference of the probabilities: Predictor {diff:.1e}, served {served_diff:.1e}")
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
