"""Fire modules without the concat at inference: `Predictor` with and without `split_concat`.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

Times, in one process and alternating rounds, `sqznet_tf.inference.Predictor(model, split=False)`
(each Fire's two expand outputs concatenated, then read by the next squeeze convolution or pool)
against the default (`split_concat`: the reader takes the two outputs apart, one convolution per
part summed, so the concatenated map is never written), per model and batch size, random weights.
Prints the medians, the per-round ratios' range and the largest difference of the outputs.
With --export, the same for the `serving_default` signature of two exports of each model (as
`sqznet-export` writes it, and with the split switched off), what TF Serving runs.

  python bench/split_concat.py --rounds=5 [--export]
"""

import dataclasses
import os
import shutil
import statistics
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["squeezenet_v1_0", "squeezenet_v1_1"], "Registry names.")
flags.DEFINE_integer("size", 224, "Image size.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds.")
flags.DEFINE_list("batches", ["1", "32"], "Batch sizes.")
flags.DEFINE_bool("export", False, "Also time the exports' serving_default signature.")


def exports(model, folder):
  """serving_default of `model` exported with and without the split (labels made up)."""
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data.preprocessing import PRESETS  # pylint: disable=g-import-not-at-top
  from sqznet_tf.export import serving  # pylint: disable=g-import-not-at-top
  size, classes = int(model.input_shape[1]), int(model.output_shape[-1])
  signatures = {}
  split = serving.split_concat
  for name, fn in (("concat", lambda m: m), ("split", split)):
    serving.split_concat = fn  # the export without the split, and as sqznet-export writes it
    try:
      serving.export_saved_model(model, dataclasses.replace(PRESETS["tf"], crop_size=size), [f"c{i}" for i in range(classes)],
                                 os.path.join(folder, model.name, name), 1, True, 5, warmup=False)
    finally:
      serving.split_concat = split
    signatures[name] = tf.saved_model.load(os.path.join(folder, model.name, name, "1")).signatures["serving_default"]
  return signatures


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import _protocol  # pylint: disable=g-import-not-at-top
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf import reporting  # pylint: disable=g-import-not-at-top
  from sqznet_tf.inference import Predictor  # pylint: disable=g-import-not-at-top
  machine = reporting.machine()
  print(f"{machine.get('cpu')}, {machine.get('cores')} cores, AVX-512: {machine.get('avx512')}, "
        f"{FLAGS.size} px, {FLAGS.rounds} alternating rounds\n")
  print("| model | batch | concat | split | speed-up (range) | largest difference |")
  print("|---|---|---|---|---|---|")
  rng = np.random.default_rng(0)
  folder = tempfile.mkdtemp(prefix="sqznet-split-")
  try:
    for name in FLAGS.models:
      try:
        model = sqznet_tf.get_model(name, input_shape=(FLAGS.size, FLAGS.size, 3))
      except ValueError as e:
        sys.exit(f"error: --models: {e}")
      forms = {"TF `Predictor`": (Predictor(model, split=False), Predictor(model))}
      if FLAGS.export:
        sig = exports(model, folder)
        served = lambda s: lambda x: s(images=x)["probabilities"].numpy()  # noqa: E731
        forms["export `serving_default`"] = (served(sig["concat"]), served(sig["split"]))
      for path, (concat, split) in forms.items():
        for batch in (int(b) for b in FLAGS.batches):
          x = rng.uniform(0 if "export" in path else -1, 255 if "export" in path else 1,
                          (batch, FLAGS.size, FLAGS.size, 3)).astype(np.float32)
          diff = float(np.abs(concat(x) - split(x)).max())
          runs = 60 if batch == 1 else 6
          rows = [tuple(1000 * statistics.median(_protocol.timed(lambda p=p: p(x), runs)) for p in (concat, split))
                  for _ in range(FLAGS.rounds)]
          ratios = [a / b for a, b in rows]
          print(f"| {name}, {path} | {batch} | {statistics.median(r[0] for r in rows):.2f} ms | "
                f"{statistics.median(r[1] for r in rows):.2f} ms | {statistics.median(ratios):.2f}x "
                f"({min(ratios):.2f}-{max(ratios):.2f}) | {diff:.1e} |", flush=True)
  finally:
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
