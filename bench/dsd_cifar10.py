"""DSD on a converged CIFAR-10 SqueezeNet, against the same extra epochs without pruning, several seeds.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

Starting point (--base): the shipped model (weights=cifar10: bench/cifar10_recipe.py's 40-epoch run,
stored with 6-bit weight sharing), or the folder of a converged sqznet-train run (its final weights).
For each seed, two runs of sqznet-dsd from those weights (no dense phase), as a user would run it:
  DSD:     sparse phase (--sparsity of every layer but conv1, masks fixed) then re-dense phase
           (masks lifted, a tenth of the learning rate), the recipe's data, augmentation and
           schedule restarted in each phase;
  control: the same two phases with sparsity 0: the same epochs, the same learning-rate restarts,
           the same code path, nothing pruned (the equal-budget control).
The baseline is the converged model itself (the paper's comparison). Every run is resumable:
running the same command again continues where each run stopped; a finished run's curve goes to
the ledger (--ledger, committed), so that a fresh clone runs only what is missing. Writes
results.json and curves.png in --out and prints the tables as Markdown.

  python bench/dsd_cifar10.py --seeds=0,1,2 --out=runs/dsd_converged
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
flags.DEFINE_string("base", "cifar10", "The converged model: 'cifar10' (the shipped weights) or a sqznet-train "
                    "run folder (bench/cifar10_recipe.py's).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the extra phases; each runs DSD and the control.")
flags.DEFINE_integer("sparse_epochs", 4, "Epochs of the sparse phase (and of the control's first phase).")
flags.DEFINE_integer("redense_epochs", 4, "Epochs of the re-dense phase (and of the control's second phase).")
flags.DEFINE_float("sparsity", 0.67, "Sparsity of every layer but conv1 in the sparse phase (the paper's).")
flags.DEFINE_float("learning_rate", 0.02, "Learning rate of the sparse phase (re-dense: a tenth), cosine.")
flags.DEFINE_string("data", "../shared/data/cifar10_full/train", "Training photos.")
flags.DEFINE_string("val_data", "../shared/data/cifar10_subset/test", "Test photos.")
flags.DEFINE_string("out", "runs/dsd_converged", "Where the runs go.")
flags.DEFINE_string("ledger", "bench/results/dsd_converged.json", "Finished runs' curves (committed; a run "
                    "recorded there is not run again). Other settings need another ledger.")
flags.DEFINE_bool("report", False, "Only tabulate what the ledger and --out hold.")

PHASES = ("phase2_sparse", "phase3_dense")


def run_args(seed: int, sparsity: float, model_dir: str):
  return [sys.executable, os.path.join(REPO, "tools", "dsd.py"), "--model=squeezenet_v1_1_cifar",
          f"--data={FLAGS.data}", f"--val_data={FLAGS.val_data}", *RECIPE_FLAGS, f"--learning_rate={FLAGS.learning_rate}",
          f"--init_weights={init_weights()}", "--dense_epochs=0",
          f"--sparse_epochs={FLAGS.sparse_epochs}", f"--redense_epochs={FLAGS.redense_epochs}",
          f"--sparsity={sparsity}", "--keep_dense=conv1", f"--seed={seed}", "--format=json",
          f"--model_dir={model_dir}"]


def curve(model_dir: str):
  """Test accuracy after each extra epoch, both phases in order (as far as they ran)."""
  out = []
  for phase in PHASES:
    path = os.path.join(model_dir, phase, "history.json")
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        h = json.load(f)
      out += [h[k]["val_accuracy"] for k in sorted(h, key=int)]
  return out


def init_weights() -> str:
  return FLAGS.base if FLAGS.base == "cifar10" else os.path.join(FLAGS.base, "final.weights.h5")


def base_accuracy() -> float:
  """The converged model's top-1 on --val_data: a run folder's summary, or the shipped weights evaluated."""
  if FLAGS.base != "cifar10":
    with open(os.path.join(FLAGS.base, "summary.json"), encoding="utf-8") as f:
      return json.load(f)["val_accuracy"]
  out = subprocess.run([sys.executable, os.path.join(REPO, "tools", "evaluate.py"), "--weights=cifar10",
                        f"--data_dir={FLAGS.val_data}", "--format=json"], check=True, capture_output=True, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])["top1"]


def seconds(model_dir: str) -> float:
  total = 0.0
  for phase in PHASES:
    with open(os.path.join(model_dir, phase, "summary.json"), encoding="utf-8") as f:
      total += json.load(f)["seconds"]
  return total


def mean_sd(v):
  return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def main(argv):
  del argv
  seeds = [int(s) for s in FLAGS.seeds]
  os.makedirs(FLAGS.out, exist_ok=True)
  total = FLAGS.sparse_epochs + FLAGS.redense_epochs
  ledger = Ledger(FLAGS.ledger, {
      "base": FLAGS.base, "sparsity": FLAGS.sparsity, "sparse_epochs": FLAGS.sparse_epochs,
      "redense_epochs": FLAGS.redense_epochs, "learning_rate": FLAGS.learning_rate, "data": FLAGS.data,
      "val_data": FLAGS.val_data, "recipe": RECIPE_FLAGS})
  if ledger.get("baseline") is None:
    ledger.put("baseline", {"top1": base_accuracy()})
  if not FLAGS.report:
    for seed in seeds:
      for kind, sparsity in (("dsd", FLAGS.sparsity), ("control", 0.0)):
        key, model_dir = f"{kind}_seed{seed}", os.path.join(FLAGS.out, f"{kind}_seed{seed}")
        if ledger.get(key) is None and len(curve(model_dir)) < total:
          print(f"{kind} seed {seed}: {model_dir}", flush=True)
          with open(os.path.join(FLAGS.out, f"{kind}_seed{seed}.log"), "a", encoding="utf-8") as log:
            rc = subprocess.call(run_args(seed, sparsity, model_dir), stdout=log, stderr=subprocess.STDOUT)
          if rc:
            sys.exit(f"sqznet-dsd exited {rc} for {kind} seed {seed}; see {log.name}")
        if ledger.get(key) is None:
          ledger.put(key, {"curve": curve(model_dir), "minutes": round(seconds(model_dir) / 60, 1)})
  base = ledger.get("baseline")["top1"]
  rows = []
  for seed in seeds:
    dsd, control = ((ledger.get(f"{k}_seed{seed}") or {}).get("curve", []) for k in ("dsd", "control"))
    if len(dsd) == total and len(control) == total:
      rows.append({"seed": seed, "dsd": dsd[-1], "control": control[-1],
                   "dsd_after_sparse": dsd[FLAGS.sparse_epochs - 1], "dsd_curve": dsd, "control_curve": control})
  result = {"base": FLAGS.base, "baseline": base, "sparsity": FLAGS.sparsity, "sparse_epochs": FLAGS.sparse_epochs,
            "redense_epochs": FLAGS.redense_epochs, "learning_rate": FLAGS.learning_rate, "runs": rows}
  with open(os.path.join(FLAGS.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  if not rows:
    print("no finished seed yet")
    return
  print(f"\nBaseline (converged dense model): {100 * base:.2f}%; extra epochs: {FLAGS.sparse_epochs} sparse "
        f"(sparsity {FLAGS.sparsity}, conv1 dense) + {FLAGS.redense_epochs} re-dense; control: the same "
        "epochs unpruned\n")
  print("| seed | DSD after sparse | DSD | control | DSD - baseline | DSD - control |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['seed']} | {100 * r['dsd_after_sparse']:.2f} | {100 * r['dsd']:.2f} | {100 * r['control']:.2f} | "
          f"{100 * (r['dsd'] - base):+.2f} | {100 * (r['dsd'] - r['control']):+.2f} |")
  d, c = mean_sd([r["dsd"] for r in rows]), mean_sd([r["control"] for r in rows])
  diff = mean_sd([r["dsd"] - r["control"] for r in rows])
  print(f"| mean +- sd | | {100 * d[0]:.2f} +- {100 * d[1]:.2f} | {100 * c[0]:.2f} +- {100 * c[1]:.2f} | "
        f"{100 * (d[0] - base):+.2f} | {100 * diff[0]:+.2f} +- {100 * diff[1]:.2f} |")
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sqznet_tf import io as sq_io  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  for r in rows:
    x = range(1, total + 1)
    ax.plot(x, [100 * v for v in r["dsd_curve"]], color="tab:red", alpha=0.7,
            label="DSD" if r is rows[0] else None)
    ax.plot(x, [100 * v for v in r["control_curve"]], color="tab:blue", alpha=0.7,
            label="control (same epochs, unpruned)" if r is rows[0] else None)
  ax.axhline(100 * base, color="grey", linestyle="--", label="converged baseline")
  ax.axvline(FLAGS.sparse_epochs + 0.5, color="grey", linewidth=0.8)
  ax.set_xlabel("extra epoch (sparse | re-dense)")
  ax.set_ylabel("top-1 on the 3,000 test photos (%)")
  ax.legend(loc="lower right")
  ax.grid(alpha=0.3)
  sq_io.save_figure(fig, os.path.join(FLAGS.out, "curves.png"))
  plt.close(fig)


if __name__ == "__main__":
  app.run(main)
