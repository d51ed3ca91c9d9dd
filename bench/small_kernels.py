"""One 5x5 convolution against two stacked 3x3 convolutions (the same 5x5 receptive field), measured.

For each (Cin, C, N): a 5x5 conv Cin -> C against 3x3 Cin -> C then 3x3 C -> C (same padding, no
bias) on an N x N map. Reports parameters, multiply-accumulates (MACs), bytes moved per image (fp32:
weights once per batch, the input, the output, and for the stack its intermediate map written and
read once), and the measured time per image at batch 1 and 32 (a `tf.function` on random inputs,
median of repeated calls, each call at least ~0.2 s of work); the faster one wins the row.

The first rows are the article's case (one input channel: 25*C*N^2 MACs against 9*C*(1+C)*N^2),
the rest the channel counts of real networks (Cin = C).

Usage (from the repository root, nothing else running):
  python bench/small_kernels.py --out=bench/results/small_kernels.json
"""

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _ledger import cpu_name  # noqa: E402

CASES = [(1, 16, 56), (1, 64, 56), (3, 64, 112), (16, 16, 56), (64, 64, 56), (128, 128, 28), (256, 256, 14),
         (512, 512, 7)]


def seconds_per_call(fn, x, min_seconds=0.2, repeats=5):
  fn(x).numpy()
  t = time.perf_counter()
  fn(x).numpy()
  one = time.perf_counter() - t
  inner = max(1, int(min_seconds / max(one, 1e-6)))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(inner):
      fn(x).numpy()
    times.append((time.perf_counter() - t) / inner)
  return statistics.median(times)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--batches", default="1,32")
  ap.add_argument("--out", default=None)
  args = ap.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  sys.argv = sys.argv[:1]
  from sqznet_tf._keras import keras, tf  # pylint: disable=g-import-not-at-top

  rows = []
  for cin, c, n in CASES:
    x_in = keras.Input((n, n, cin))
    one = keras.Model(x_in, keras.layers.Conv2D(c, 5, padding="same", use_bias=False)(x_in))
    mid = keras.layers.Conv2D(c, 3, padding="same", use_bias=False)(x_in)
    two = keras.Model(x_in, keras.layers.Conv2D(c, 3, padding="same", use_bias=False)(mid))
    p5, p3 = one.count_params(), two.count_params()
    m5, m3 = 25 * cin * c * n * n, (9 * cin * c + 9 * c * c) * n * n
    act_in, act_out = cin * n * n * 4, c * n * n * 4
    row = {"cin": cin, "c": c, "n": n, "params_5x5": p5, "params_3x3x2": p3, "macs_5x5": m5, "macs_3x3x2": m3}
    for b in [int(v) for v in args.batches.split(",")]:
      x = tf.random.uniform((b, n, n, cin))
      f5 = tf.function(lambda a, m=one: m(a, training=False))
      f3 = tf.function(lambda a, m=two: m(a, training=False))
      t5, t3 = seconds_per_call(f5, x) / b, seconds_per_call(f3, x) / b
      row[f"bytes_5x5_b{b}"] = act_in + act_out + p5 * 4 / b
      row[f"bytes_3x3x2_b{b}"] = act_in + 2 * act_out + act_out + p3 * 4 / b  # the middle map written and read
      row[f"ms_5x5_b{b}"], row[f"ms_3x3x2_b{b}"] = t5 * 1e3, t3 * 1e3
      row[f"gflops_5x5_b{b}"], row[f"gflops_3x3x2_b{b}"] = 2 * m5 / t5 / 1e9, 2 * m3 / t3 / 1e9
    rows.append(row)
    print(json.dumps(row), flush=True)
    keras.backend.clear_session()

  bs = [int(v) for v in args.batches.split(",")]
  head = ("| Cin -> C, N x N | params 5x5 / 3x3+3x3 | MACs 5x5 / 3x3+3x3 | "
          + " | ".join(f"ms per image at batch {b}, 5x5 / 3x3+3x3 (GFLOP/s)" for b in bs) + " | faster |")
  print("\n" + head + "\n|" + "---|" * (4 + len(bs)))
  for r in rows:
    cells = [f"{r['cin']} -> {r['c']}, {r['n']}x{r['n']}", f"{r['params_5x5']:,} / {r['params_3x3x2']:,}",
             f"{r['macs_5x5'] / 1e6:.1f} M / {r['macs_3x3x2'] / 1e6:.1f} M ({r['macs_3x3x2'] / r['macs_5x5']:.2f}x)"]
    for b in bs:
      cells.append(f"{r[f'ms_5x5_b{b}']:.3f} ({r[f'gflops_5x5_b{b}']:.0f}) / {r[f'ms_3x3x2_b{b}']:.3f} "
                   f"({r[f'gflops_3x3x2_b{b}']:.0f})")
    wins = ["3x3+3x3" if r[f"ms_3x3x2_b{b}"] < r[f"ms_5x5_b{b}"] else "5x5" for b in bs]
    cells.append(" / ".join(wins))
    print("| " + " | ".join(cells) + " |")
  result = {"cpu": cpu_name(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
            "command": "python bench/small_kernels.py " + " ".join(f"--{k}={v}" for k, v in vars(args).items() if v),
            "rows": rows}
  if args.out:
    from sqznet_tf.io import write_json_atomic  # pylint: disable=g-import-not-at-top
    write_json_atomic(args.out, result)


if __name__ == "__main__":
  main()
