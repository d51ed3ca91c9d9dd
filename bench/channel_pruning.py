"""Channel pruning of the shipped CIFAR-10 SqueezeNet at 2x, 3x and 4x fewer MACs, against two controls.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

For each MACs ratio (--ratios: fractions of the original MACs):
  channel       sqznet-prune-channels --weights=cifar10 --target_macs=R, fine-tuned --finetune_epochs on
                the 50,000 photos (the recipe's data handling, cosine from --learning_rate);
  unstructured  magnitude pruning of the same model to the same number of non-zero parameters
                (sqznet-dsd: sparse phase only, --finetune_epochs, same learning rate), every conv layer;
  scratch       the channel-pruned network's widths (--conv1_filters, --fires) trained from scratch by
                the recipe for 40 + --finetune_epochs epochs: the shipped model's epochs plus the
                fine-tuning ("Rethinking the Value of Network Pruning", Liu et al. 2019).
Every model is scored by sqznet-evaluate on the 3,000 test photos. At the first ratio (2x) it also
measures the speed of the channel-pruned model against the dense one, side by side in one process
(alternating rounds; TF at batch 32 and 1, TFLite with XNNPACK at batch 1), and exports it with
sqznet-export and checks the export with sqznet-verify-export. The speed part times every ratio's
network beside the dense one (one-shot widths where the fine-tuning has not run: the same channels).

Every step is resumable: a run folder continues where it stopped, and each finished step's result
goes to the ledger (--ledger, committed), so that a fresh clone runs only what is missing. Writes
accuracy_vs_macs.png in --out and prints the tables as Markdown.

  python bench/channel_pruning.py --out=runs/channel_pruning
  python bench/channel_pruning.py --report
"""

import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

from _ledger import Ledger  # noqa: E402  (bench/ is the script's folder)
from _recipe import RECIPE_FLAGS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("ratios", ["0.5", "0.333", "0.25"], "MACs of the pruned networks, as fractions of the original.")
flags.DEFINE_integer("finetune_epochs", 20, "Fine-tuning epochs of the pruned models (8 left the global-L1 2x point "
                     "3.0 points short, 2026-12-03).")
flags.DEFINE_float("learning_rate", 0.02, "Peak learning rate of the fine-tuning (cosine).")
flags.DEFINE_string("criterion", "l1", "Channel criterion (sqznet-prune-channels --criterion).")
flags.DEFINE_string("mode", "uniform", "Allocation (sqznet-prune-channels --mode): one-shot at half the MACs, with "
                    "batch-norm recalibration, uniform scored 55% and global 45% (2026-12-03).")
flags.DEFINE_integer("round_to", 16, "Channel rounding (sqznet-prune-channels --round_to). At half the MACs, "
                     "uniform L1, on the AVX-512 EPYC: multiples of 16 ran 1.59-1.63x faster than the dense model "
                     "in TF at batch 32, multiples of 8 1.38-1.41x (2026-12-04).")
flags.DEFINE_integer("base_epochs", 40, "Epochs of the shipped model's training (the scratch control gets these "
                     "plus the fine-tuning epochs).")
flags.DEFINE_list("parts", ["channel", "speed", "export", "unstructured", "scratch"], "What to run, in this order.")
flags.DEFINE_integer("speed_rounds", 7, "Alternating rounds of the speed comparison.")
flags.DEFINE_string("data", "../shared/data/cifar10_full/train", "Training photos.")
flags.DEFINE_string("val_data", "../shared/data/cifar10_subset/test", "Test photos.")
flags.DEFINE_string("out", "runs/channel_pruning", "Where the runs go.")
flags.DEFINE_string("ledger", None, "Finished steps' results (committed); default "
                    "bench/results/channel_pruning_<mode>.json.")
flags.DEFINE_bool("report", False, "Only tabulate what the ledger holds.")


def tool(name, *args, log=None):
  cmd = [sys.executable, os.path.join(REPO, "tools", f"{name}.py"), *args]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  if log:
    with open(log, "a", encoding="utf-8") as f:
      rc = subprocess.call(cmd + ["--format=json"], stdout=f, stderr=f, env=env)
    if rc:
      sys.exit(f"{name} exited {rc}; see {log}")
    with open(log, encoding="utf-8") as f:
      lines = [l for l in f.read().splitlines() if l.startswith("{")]
    return json.loads(lines[-1])
  out = subprocess.run(cmd + ["--format=json"], capture_output=True, text=True, env=env)
  if out.returncode:
    sys.exit(f"{name} exited {out.returncode}: {out.stderr[-2000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def top1(weights):
  return tool("evaluate", f"--weights={weights}", f"--data_dir={FLAGS.val_data}")["top1"]


def key(ratio):
  return f"{float(ratio):.3f}"


def epoch_seconds(folder):
  """Every finished epoch's seconds from the run's history.json, over all the sessions it ran in."""
  path = os.path.join(folder, "history.json")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    history = json.load(f)
  rows = history.values() if isinstance(history, dict) else history
  return [r["epoch_seconds"] for r in rows if isinstance(r, dict) and "epoch_seconds" in r]


def epoch_summary(folder):
  """`epoch_seconds_median` and `train_minutes` (the sum) of every finished epoch, including epochs
  slowed by other work or by a pause; empty before the first epoch."""
  ep = epoch_seconds(folder)
  if not ep:
    return {}
  return {"epoch_seconds_median": round(statistics.median(ep), 1), "train_minutes": round(sum(ep) / 60, 1)}


def timing(folder, start):
  """`minutes`: this invocation's wall time (a resumed run's last part only), and `epoch_summary`."""
  return {"minutes": round((time.time() - start) / 60, 1), **epoch_summary(folder)}


def run_channel(ledger, ratio):
  name = f"channel_{key(ratio)}"
  if ledger.get(name):
    return
  out = os.path.join(FLAGS.out, name)
  t = time.time()
  s = tool("prune_channels", "--weights=cifar10", f"--target_macs={ratio}", f"--criterion={FLAGS.criterion}",
           f"--round_to={FLAGS.round_to}", f"--mode={FLAGS.mode}", f"--data={FLAGS.data}", *RECIPE_FLAGS, f"--epochs={FLAGS.finetune_epochs}",
           f"--learning_rate={FLAGS.learning_rate}", "--latency_runs=0", f"--model_dir={out}",
           log=out + ".log")
  ledger.put(name, {"top1": top1(out), "params": s["after"]["params"], "macs": s["after"]["macs"],
                    "overrides": s["overrides"], "folder": out, "minutes": round((time.time() - t) / 60, 1)})


def run_unstructured(ledger, ratio, dense):
  name = f"unstructured_{key(ratio)}"
  ch = ledger.get(f"channel_{key(ratio)}")
  if ledger.get(name) or not ch:
    return
  sparsity = round((dense["params"] - ch["params"]) / dense["kernel_weights"], 4)
  out = os.path.join(FLAGS.out, name)
  t = time.time()
  tool("dsd", "--model=squeezenet_v1_1_cifar", "--init_weights=cifar10", f"--data={FLAGS.data}",
       f"--val_data={FLAGS.val_data}", *RECIPE_FLAGS, "--dense_epochs=0", f"--sparse_epochs={FLAGS.finetune_epochs}",
       "--redense_epochs=0", f"--learning_rate={FLAGS.learning_rate}", f"--sparsity={sparsity}", "--keep_dense=",
       "--nosave_model", f"--model_dir={out}", log=out + ".log")
  a = tool("analyze", f"--weights={out}/phase2_sparse")
  ledger.put(name, {"top1": top1(f"{out}/phase2_sparse"), "sparsity": sparsity, "macs": dense["macs"],
                    "nonzero": a["params"] - sum(r["zeros"] for r in a["sparsity_layers"]),
                    **timing(f"{out}/phase2_sparse", t)})


def run_scratch(ledger, ratio):
  name = f"scratch_{key(ratio)}"
  ch = ledger.get(f"channel_{key(ratio)}")
  if ledger.get(name) or not ch:
    return
  out = os.path.join(FLAGS.out, name)
  ov = ch["overrides"]
  t = time.time()
  tool("train", "--model=squeezenet_v1_1_cifar", f"--data={FLAGS.data}", f"--val_data={FLAGS.val_data}",
       *RECIPE_FLAGS, f"--epochs={FLAGS.base_epochs + FLAGS.finetune_epochs}", "--learning_rate=0.1",
       "--warmup_epochs=2", f"--conv1_filters={ov['conv1_filters']}", f"--fires={json.dumps(ov['fires'])}",
       "--nosave_model", f"--model_dir={out}", log=out + ".log")
  ledger.put(name, {"top1": top1(out), "macs": ch["macs"], "params": ch["params"], **timing(out, t)})


def oneshot(ratio):
  """The network of `ratio` pruned without fine-tuning: the same widths as the fine-tuned one (the
  channels are chosen on the shipped weights), for timing before the fine-tuning has run."""
  out = os.path.join(FLAGS.out, f"oneshot_{key(ratio)}")
  if not os.path.exists(os.path.join(out, "prune_summary.json")):
    tool("prune_channels", "--weights=cifar10", f"--target_macs={ratio}", f"--criterion={FLAGS.criterion}",
         f"--round_to={FLAGS.round_to}", f"--mode={FLAGS.mode}", f"--data={FLAGS.data}", *RECIPE_FLAGS,
         "--epochs=0", "--latency_runs=0", f"--model_dir={out}", log=out + ".log")
  return out


def run_speed(ledger):
  """The dense model and every ratio's network in one process, timed in alternating rounds. The
  issue's target is on the first ratio; the others show how the speed-up grows with fewer MACs."""
  if ledger.get("speed"):
    return
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
  from sqznet_tf.analysis import analyze_model  # pylint: disable=g-import-not-at-top
  from sqznet_tf.compression import tflite  # pylint: disable=g-import-not-at-top
  from sqznet_tf.inference import Predictor  # pylint: disable=g-import-not-at-top
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  folders = {"dense": "cifar10"}
  for ratio in FLAGS.ratios:
    ch = ledger.get(f"channel_{key(ratio)}")
    folders[key(ratio)] = ch["folder"] if ch else oneshot(ratio)
  models = {k: loading.load_model(f)[0] for k, f in folders.items()}
  predictors = {k: Predictor(m) for k, m in models.items()}  # TF, batch norm folded as every binary runs it
  rng = np.random.default_rng(0)
  x32 = rng.uniform(-1, 1, (32, 32, 32, 3)).astype(np.float32)
  x1 = x32[:1]
  interpreters = {}
  for k, m in models.items():
    it = Interpreter(model_content=tflite.convert(m, "float32"), num_threads=os.cpu_count())
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x1)
    interpreters[k] = it

  def ms(fn, runs):
    for _ in range(5):
      fn()
    times = []
    for _ in range(runs):
      t = time.perf_counter()
      fn()
      times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)
  calls = {"tf_b32": (lambda k: lambda: predictors[k](x32), 15), "tf_b1": (lambda k: lambda: predictors[k](x1), 60),
           "tflite_b1": (lambda k: interpreters[k].invoke, 200)}
  rounds = {name: [] for name in calls}
  for _ in range(FLAGS.speed_rounds):
    for name, (make, runs) in calls.items():
      rounds[name].append({k: ms(make(k), runs) for k in models})
  result = {"folders": folders, "rounds": FLAGS.speed_rounds,
            "macs": {k: int(analyze_model(m).macs) for k, m in models.items()}}
  for name, rows in rounds.items():
    result[name] = {"dense_ms": round(statistics.median(r["dense"] for r in rows), 3)}
    for k in folders:
      if k == "dense":
        continue
      ratios = [r["dense"] / r[k] for r in rows]
      result[name][k] = {"ms": round(statistics.median(r[k] for r in rows), 3),
                         "speedup": round(statistics.median(ratios), 2),
                         "speedup_range": [round(min(ratios), 2), round(max(ratios), 2)]}
  ledger.put("speed", result)


def run_export(ledger):
  ch = ledger.get(f"channel_{key(FLAGS.ratios[0])}")
  if ledger.get("export") or not ch:
    return
  exp = os.path.join(FLAGS.out, "export_2x")
  tool("export", f"--weights={ch['folder']}", f"--export_dir={exp}", "--tflite=float32", "--overwrite")
  cmd = [sys.executable, os.path.join(REPO, "tools", "verify_export.py"), f"--export_dir={exp}",
         f"--data_dir={FLAGS.val_data}", "--format=json"]
  out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  d = json.loads(out.stdout.strip().splitlines()[-1])
  ledger.put("export", {"exit": out.returncode, "failures": d["failures"],
                        "rows": [{k: r.get(k) for k in ("format", "top1", "max_abs_diff", "pass")} for r in d["rows"]]})


def main(argv):
  del argv
  ledger = Ledger(FLAGS.ledger or f"bench/results/channel_pruning_{FLAGS.mode}.json", {
      "mode": FLAGS.mode, "finetune_epochs": FLAGS.finetune_epochs, "learning_rate": FLAGS.learning_rate,
      "criterion": FLAGS.criterion, "round_to": FLAGS.round_to, "base_epochs": FLAGS.base_epochs, "data": FLAGS.data,
      "val_data": FLAGS.val_data, "recipe": RECIPE_FLAGS})
  os.makedirs(FLAGS.out, exist_ok=True)
  if ledger.get("dense") is None:
    a = tool("analyze", "--weights=cifar10")
    kernels = sum(r["weights"] for r in a["sparsity_layers"])
    ledger.put("dense", {"top1": top1("cifar10"), "params": a["params"], "macs": a["macs"], "kernel_weights": kernels})
  dense = ledger.get("dense")
  if not FLAGS.report:
    for part in FLAGS.parts:
      for ratio in FLAGS.ratios:
        {"channel": lambda r: run_channel(ledger, r), "unstructured": lambda r: run_unstructured(ledger, r, dense),
         "scratch": lambda r: run_scratch(ledger, r), "speed": lambda r: run_speed(ledger),
         "export": lambda r: run_export(ledger)}[part](ratio)
  report(ledger, dense)


def report(ledger, dense):
  print(f"\nDense (the shipped model): {100 * dense['top1']:.2f}% top-1, {dense['params']:,} parameters, "
        f"{dense['macs']:,} MACs; fine-tuning {FLAGS.finetune_epochs} epochs\n")
  print("| MACs | channel pruning: params | top-1 | unstructured (same non-zeros): top-1 | from scratch "
        f"({FLAGS.base_epochs}+{FLAGS.finetune_epochs} epochs): top-1 |")
  print("|---|---|---|---|---|")
  points = []
  for ratio in FLAGS.ratios:
    ch, un, sc = (ledger.get(f"{k}_{key(ratio)}") for k in ("channel", "unstructured", "scratch"))
    if not ch:
      continue
    points.append((ch, un, sc))
    cell = lambda r: f"{100 * r['top1']:.2f}" if r else "(not run)"  # noqa: E731
    print(f"| {ch['macs']:,} ({dense['macs'] / ch['macs']:.2f}x fewer) | {ch['params']:,} | {cell(ch)} | {cell(un)} | "
          f"{cell(sc)} |")
  times = []
  for ratio in FLAGS.ratios:
    for kind, sub in (("unstructured", "phase2_sparse"), ("scratch", "")):
      rec = ledger.get(f"{kind}_{key(ratio)}")
      if not rec:
        continue
      median = (rec.get("epoch_seconds_median")
                or epoch_summary(os.path.join(FLAGS.out, f"{kind}_{key(ratio)}", sub)).get("epoch_seconds_median"))
      if median:
        times.append(f"{kind} {key(ratio)}: median epoch {median:.0f} s")
  if times:
    print("\nTraining time, the median epoch over every session a run took (an epoch that shared the machine "
          "or was paused counts as it ran): " + "; ".join(times))
  speed = ledger.get("speed")
  if speed:
    print(f"\nSpeed, dense and every point in one process, {speed['rounds']} alternating rounds (median; range of "
          "the per-round ratio); points without a fine-tuned model timed one-shot (the same widths):\n")
    keys = [k for k in speed["folders"] if k != "dense"]
    print("| runtime | dense | " + " | ".join(f"{speed['macs']['dense'] / speed['macs'][k]:.2f}x fewer MACs"
                                            for k in keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for name in ("tf_b32", "tf_b1", "tflite_b1"):
      v = speed[name]
      print(f"| {name} | {v['dense_ms']} ms | " + " | ".join(
          f"{v[k]['ms']} ms, **{v[k]['speedup']}x** ({v[k]['speedup_range'][0]}-{v[k]['speedup_range'][1]})"
          for k in keys) + " |")
  exp = ledger.get("export")
  if exp:
    print(f"\nExport of the first point verified: exit {exp['exit']}, failures: {exp['failures'] or 'none'}")
  if not points:
    return
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sqznet_tf import io as sq_io  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  m = lambda r: r["macs"] / 1e6  # noqa: E731
  ax.plot([m(dense)] + [m(c) for c, _, _ in points], [100 * dense["top1"]] + [100 * c["top1"] for c, _, _ in points],
          marker="o", label="channel pruning + fine-tuning")
  un = [(c, u) for c, u, _ in points if u]
  if un:
    ax.plot([m(c) for c, _ in un], [100 * u["top1"] for _, u in un], marker="s", linestyle="--",
            label="unstructured, same non-zeros (MACs: the pruned net's, dense kernels run all)")
  sc = [(c, s) for c, _, s in points if s]
  if sc:
    ax.plot([m(c) for c, _ in sc], [100 * s["top1"] for _, s in sc], marker="^", linestyle=":",
            label="same widths from scratch")
  ax.axhline(100 * dense["top1"] - 1, color="grey", linewidth=0.8, linestyle="--", label="dense - 1 point")
  ax.set_xlabel("multiply-adds per image (millions)")
  ax.set_ylabel("top-1 on the 3,000 test photos (%)")
  ax.legend(loc="lower right", fontsize=8)
  ax.grid(alpha=0.3)
  sq_io.save_figure(fig, os.path.join(FLAGS.out, "accuracy_vs_macs.png"))
  plt.close(fig)


if __name__ == "__main__":
  app.run(main)
