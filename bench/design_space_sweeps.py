"""The paper's Figure 3 sweeps on the CIFAR-10 subset: squeeze ratio, and the share of 3x3 filters.

Run by hand; results go to BENCHMARKS.md. Not a test.

Each sweep is a sqznet-tune grid search (SqueezeNet v1.0 with batch norm, 32 px, trained from
scratch for --epochs on the 10,000 training photos, validated on the 3,000 test photos), then a
markdown table of accuracy against parameters, MACs and Deep Compression size (6-bit, 33.4%).

  python bench/design_space_sweeps.py --epochs=3
"""

import json
import os
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 3, "Training epochs per point.")
flags.DEFINE_list("sweeps", ["sr", "pct3x3"], "Which sweeps.")
flags.DEFINE_string("shared", "../shared/data", "Shared data folder.")
flags.DEFINE_string("directory", "runs/bench_tune", "Where the searches go.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
  del argv
  data = f"{FLAGS.shared}/cifar10_subset"
  for sweep in FLAGS.sweeps:
    cmd = [sys.executable, os.path.join(REPO, "tools", "tune.py"), f"--sweep={sweep}", "--tuner=grid",
           "--max_trials=20", f"--epochs={FLAGS.epochs}", f"--data={data}/train", f"--val_data={data}/test",
           "--image_size=32", f"--directory={FLAGS.directory}", f"--project_name={sweep}", "--verbose=0",
           "--format=json"]
    print(f"<!-- {' '.join(cmd[1:])} -->", flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode:
      sys.exit(f"sweep {sweep} failed: {r.stderr[-2000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    key = "squeeze_ratio" if sweep == "sr" else "pct3x3"
    print(f"\n| {key} | params | MACs (32 px) | 6-bit 33% size, bytes | top-1 (val) |\n|---|---|---|---|---|")
    for t in sorted(d["trials"], key=lambda t: t["values"][key]):
      acc = "" if t["val_accuracy"] is None else f"{t['val_accuracy']:.1%}"
      print(f"| {t['values'][key]} | {t['params']:,} | {t['macs']:,} | {t['bytes']:,} | {acc} |", flush=True)


if __name__ == "__main__":
  app.run(main)
