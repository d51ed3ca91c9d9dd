"""The paper's Figure 3 sweeps on the whole CIFAR-10 training set: squeeze ratio, and the 3x3 share.

Run by hand; results go to BENCHMARKS.md. Not a test.

Each point is squeezenet_v1_1_cifar (with --pool_after's pools) with one metaparameter changed (squeeze ratio with pct3x3 0.5;
pct3x3 with squeeze ratio 0.125: the paper's two sweeps), trained from scratch by sqznet-train with
the CIFAR recipe (bench/cifar10_recipe.py's flags) for --epochs on the 50,000 photos and scored on
the 3,000 test photos. The --repeat points are trained a second time with another seed, to show
how far the same point moves between runs (a sweep resolves only differences larger than that).
Every run is resumable: the same command continues each run where it stopped; a finished run's
score goes to the ledger (--ledger, committed), so a fresh clone runs only what is missing. Writes results.json
and figure3.png (accuracy against Deep Compression size, as the paper's Figure 3) in --out and
prints the tables as Markdown.

  python bench/design_space_sweeps.py --epochs=15 --out=runs/sweeps
"""

import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

from _ledger import Ledger  # noqa: E402  (bench/ is the script's folder)
from _recipe import RECIPE_FLAGS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 15, "Training epochs per point (cosine schedule over them).")
flags.DEFINE_list("sr", ["0.125", "0.25", "0.5", "0.75", "1.0"], "Squeeze ratios (pct3x3 0.5).")
flags.DEFINE_list("pct3x3", ["0.01", "0.25", "0.5", "0.75", "0.99"], "3x3 shares (squeeze ratio 0.125).")
flags.DEFINE_list("repeat", ["sr=0.125", "sr=0.75"], "Points trained again with seed 1 (repeatability).")
flags.DEFINE_string("pool_after", "conv1,fire3,fire5", "Pool placement of every point: v1.1's three pools "
                    "(fire6-9 on 4x4, about a third of the shipped layout's multiply-adds, so the 12 runs fit "
                    "in a few hours); 'conv1,fire5' is the shipped model's.")
flags.DEFINE_string("data", "../shared/data/cifar10_full/train", "Training photos.")
flags.DEFINE_string("val_data", "../shared/data/cifar10_subset/test", "Test photos.")
flags.DEFINE_string("out", "runs/sweeps", "Where the runs go.")
flags.DEFINE_string("ledger", "bench/results/design_space_sweeps.json", "Finished runs' scores (committed; a run "
                    "recorded there is not run again). Other settings need another ledger.")
flags.DEFINE_bool("report", False, "Only tabulate what the ledger holds.")

MODEL = "squeezenet_v1_1_cifar"
DC_DENSITY, DC_BITS = 0.334, 6  # the size axis: Deep Compression as the paper's release


def points():
  """[(key, overrides)]: the two sweeps, the shared point (SR 0.125, pct3x3 0.5) once."""
  out = {}
  for sr in FLAGS.sr:
    out[f"sr={sr}"] = {"squeeze_ratio": float(sr), "pct3x3": 0.5}
  for p in FLAGS.pct3x3:
    key = "sr=0.125" if float(p) == 0.5 else f"pct3x3={p}"
    out.setdefault(key, {"squeeze_ratio": 0.125, "pct3x3": float(p)})
  return list(out.items())


def train_args(overrides: dict, seed: int, model_dir: str):
  return [sys.executable, os.path.join(REPO, "tools", "train.py"), f"--model={MODEL}",
          f"--squeeze_ratio={overrides['squeeze_ratio']}", f"--pct3x3={overrides['pct3x3']}",
          f"--pool_after={FLAGS.pool_after}",
          f"--data={FLAGS.data}", f"--val_data={FLAGS.val_data}", *RECIPE_FLAGS, f"--epochs={FLAGS.epochs}",
          "--learning_rate=0.1", "--warmup_epochs=2", f"--seed={seed}", f"--model_dir={model_dir}"]


def finished(model_dir: str):
  path = os.path.join(model_dir, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    s = json.load(f)
  return s if s.get("epochs_run") == FLAGS.epochs else None


def train_minutes(model_dir: str):
  """Training minutes as the median epoch's seconds x epochs (history.json): a run that was paused
  (SIGSTOP while something was timed) or resumed in another session is counted as if run straight."""
  path = os.path.join(model_dir, "history.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    seconds = [e["epoch_seconds"] for e in json.load(f).values() if "epoch_seconds" in e]
  return round(statistics.median(seconds) * len(seconds) / 60, 1) if seconds else None


def costs(overrides: dict) -> dict:
  from sqznet_tf.analysis.cost import analyze  # pylint: disable=g-import-not-at-top
  report = analyze(MODEL, input_size=32, classes=10, pool_after=FLAGS.pool_after, **overrides)
  return {"params": report.params, "macs": report.macs,
          "bytes": report.sizes(DC_DENSITY, DC_BITS)["deep_compression"]["total"]}


def main(argv):
  del argv
  runs = [(key, ov, 0) for key, ov in points()] + [(key, ov, 1) for key, ov in points() if key in FLAGS.repeat]
  ledger = Ledger(FLAGS.ledger, {"model": MODEL, "epochs": FLAGS.epochs, "pool_after": FLAGS.pool_after,
                                 "data": FLAGS.data, "val_data": FLAGS.val_data, "recipe": RECIPE_FLAGS})
  for key, ov, seed in runs:
    name, model_dir = f"{key}_seed{seed}", os.path.join(FLAGS.out, f"{key}_seed{seed}")
    if ledger.get(name) is not None or FLAGS.report:
      continue
    if not finished(model_dir):
      print(f"{key} seed {seed}: {model_dir}", flush=True)
      os.makedirs(FLAGS.out, exist_ok=True)
      with open(model_dir + ".log", "a", encoding="utf-8") as log:
        rc = subprocess.call(train_args(ov, seed, model_dir), stdout=log, stderr=subprocess.STDOUT)
      if rc:
        sys.exit(f"sqznet-train exited {rc} for {key} seed {seed}; see {log.name}")
    s = finished(model_dir)
    ledger.put(name, {"top1": s["val_accuracy"], "minutes": train_minutes(model_dir) or round(s["seconds"] / 60, 1)})
  rows = []
  for key, ov, seed in runs:
    rec = ledger.get(f"{key}_seed{seed}")
    if rec:
      minutes = train_minutes(os.path.join(FLAGS.out, f"{key}_seed{seed}")) or rec["minutes"]
      rows.append(dict(key=key, seed=seed, top1=rec["top1"], minutes=minutes, **ov, **costs(ov)))
  os.makedirs(FLAGS.out, exist_ok=True)
  with open(os.path.join(FLAGS.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump({"epochs": FLAGS.epochs, "model": MODEL, "rows": rows}, f, indent=1)
  for title, field, keep in (("Squeeze ratio (pct3x3 0.5)", "squeeze_ratio", lambda r: r["pct3x3"] == 0.5),
                             ("3x3 share (squeeze ratio 0.125)", "pct3x3", lambda r: r["squeeze_ratio"] == 0.125)):
    print(f"\n{title}, {FLAGS.epochs} epochs\n\n| {field} | seed | params | MACs | DC size (bytes) | top-1 | minutes |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(filter(keep, rows), key=lambda r: (r[field], r["seed"])):
      print(f"| {r[field]} | {r['seed']} | {r['params']:,} | {r['macs']:,} | {r['bytes']:,} | {100 * r['top1']:.2f} | "
            f"{r['minutes']} |")
  pairs = {}
  for r in rows:
    pairs.setdefault(r["key"], {})[r["seed"]] = r["top1"]
  rep = {k: abs(v[0] - v[1]) for k, v in pairs.items() if len(v) == 2}
  if rep:
    print("\nRepeatability (same point, seeds 0 and 1): " + ", ".join(f"{k}: {100 * d:.2f} points" for k, d in rep.items()))
  if not rows:
    return
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sqznet_tf import io as sq_io  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, field, keep, label in ((axes[0], "squeeze_ratio", lambda r: r["pct3x3"] == 0.5, "squeeze ratio"),
                                 (axes[1], "pct3x3", lambda r: r["squeeze_ratio"] == 0.125, "pct3x3")):
    sel = sorted((r for r in rows if keep(r) and r["seed"] == 0), key=lambda r: r[field])
    ax.plot([r["bytes"] / 1024 for r in sel], [100 * r["top1"] for r in sel], marker="o")
    for r in sel:
      ax.annotate(f"{r[field]}", (r["bytes"] / 1024, 100 * r["top1"]), textcoords="offset points", xytext=(4, -10))
    for r in rows:
      if keep(r) and r["seed"] == 1:
        ax.plot([r["bytes"] / 1024], [100 * r["top1"]], marker="x", color="tab:red", linestyle="none")
    ax.set_xlabel(f"model size, Deep Compression {DC_BITS}-bit at {DC_DENSITY:.0%} density (KiB)")
    ax.set_ylabel("top-1 on the 3,000 test photos (%)")
    ax.set_title(f"{label} sweep (x: the repeated run)")
    ax.grid(alpha=0.3)
  sq_io.save_figure(fig, os.path.join(FLAGS.out, "figure3.png"))
  plt.close(fig)


if __name__ == "__main__":
  app.run(main)
