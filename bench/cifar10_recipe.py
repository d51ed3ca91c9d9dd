"""The CIFAR-10 recipe: squeezenet_v1_1_cifar trained on the 50,000 photos, its time-to-accuracy curve.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

It runs sqznet-train as a user would (a subprocess, output in --model_dir/train.log), so that
running the same command again after an interruption resumes at the last finished epoch, then
draws accuracy on the 3,000 test photos against wall-clock minutes (`epoch_seconds` in the run's
history.json, validation included) to --model_dir/time_to_accuracy.png and prints one JSON line.
--report only draws and prints what the folder holds (e.g. while the run goes on elsewhere).

  python bench/cifar10_recipe.py --model_dir=runs/cifar10_recipe
  python bench/cifar10_recipe.py --model_dir=runs/cifar10_recipe --report
  python bench/cifar10_recipe.py --pool_after=conv1,fire5 --model_dir=runs/cifar10_recipe_8x8
"""

import json
import os
import platform
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/cifar10_full/train", "Training photos (class-per-folder).")
flags.DEFINE_string("val_data", "../shared/data/cifar10_subset/test", "Test photos (class-per-folder).")
flags.DEFINE_string("model_dir", "runs/cifar10_recipe", "Run folder (rerun the same command to resume).")
flags.DEFINE_integer("epochs", 40, "Epochs (the schedule spans them; changing it restarts nothing but "
                     "reshapes the rest of the schedule).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 0.1, "Peak learning rate (SGD, momentum 0.9, nesterov off).")
flags.DEFINE_float("warmup_epochs", 2, "Linear warm-up epochs before the cosine decay.")
flags.DEFINE_float("weight_decay", 5e-4, "L2 weight decay on kernels.")
flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing.")
flags.DEFINE_float("dropout", 0.2, "Dropout before conv10.")
flags.DEFINE_string("model", "squeezenet_v1_1_cifar", "Registry name.")
flags.DEFINE_list("pool_after", None, "Pool placement override (e.g. conv1,fire5: 8x8 maps in fire6-9).")
flags.DEFINE_bool("report", False, "Only draw and print what --model_dir holds.")


def recipe_args():
  return [f"--model={FLAGS.model}", f"--data={FLAGS.data}", f"--val_data={FLAGS.val_data}", "--image_size=32",
          "--preprocessing=cifar", "--augmentation=pad_crop_flip", f"--batch_size={FLAGS.batch_size}",
          f"--epochs={FLAGS.epochs}", "--optimizer=sgd", f"--learning_rate={FLAGS.learning_rate}",
          "--lr_schedule=cosine", f"--warmup_epochs={FLAGS.warmup_epochs}", f"--weight_decay={FLAGS.weight_decay}",
          f"--label_smoothing={FLAGS.label_smoothing}", f"--dropout={FLAGS.dropout}", "--histogram_freq=0",
          "--verbose=2", f"--model_dir={FLAGS.model_dir}"] + (
              [f"--pool_after={','.join(FLAGS.pool_after)}"] if FLAGS.pool_after else [])


def cpu_name() -> str:
  """The CPU's model name and whether it has AVX-512 (the two kinds of machine differ 4x in matmul)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      text = f.read()
  except OSError:
    return platform.processor() or "unknown CPU"
  names = [l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")]
  return f"{names[0] if names else 'unknown CPU'}, {'AVX-512' if 'avx512f' in text else 'no AVX-512'}"


def report(model_dir: str) -> dict:
  from sqznet_tf import io as sq_io  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_dir, "history.json")
  if not os.path.exists(path):
    return {"model_dir": model_dir, "epochs": 0}
  with open(path, encoding="utf-8") as f:
    history = {int(k): v for k, v in json.load(f).items()}
  minutes, acc, total = [], [], 0.0
  for epoch in sorted(history):
    total += history[epoch].get("epoch_seconds", 0.0)
    minutes.append(total / 60)
    acc.append(history[epoch]["val_accuracy"])
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.plot(minutes, [100 * a for a in acc], marker="o", markersize=3)
  ax.axhline(90, color="grey", linestyle="--", linewidth=1, label="90% target")
  ax.set_xlabel(f"training minutes ({cpu_name()}, 2 cores)")
  ax.set_ylabel("top-1 on the 3,000 test photos (%)")
  pools = f", pools after {','.join(FLAGS.pool_after)}" if FLAGS.pool_after else ""
  ax.set_title(f"{FLAGS.model}{pools} on CIFAR-10 (50,000 photos), {len(acc)} epochs")
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right")
  sq_io.save_figure(fig, os.path.join(model_dir, "time_to_accuracy.png"))
  plt.close(fig)
  best = max(range(len(acc)), key=acc.__getitem__)
  return {"model_dir": model_dir, "cpu": cpu_name(), "epochs": len(acc), "minutes": round(minutes[-1], 1),
          "last_top1": round(acc[-1], 4), "best_top1": round(acc[best], 4), "best_epoch": best + 1,
          "curve": [[round(m, 2), round(a, 4)] for m, a in zip(minutes, acc)]}


def main(argv):
  del argv
  if not FLAGS.report:
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    cmd = [sys.executable, os.path.join(REPO, "tools", "train.py"), *recipe_args()]
    with open(os.path.join(FLAGS.model_dir, "train.log"), "a", encoding="utf-8") as log:
      log.write("$ " + " ".join(cmd) + "\n")
      log.flush()
      rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if rc:
      sys.exit(f"sqznet-train exited {rc}; see {os.path.join(FLAGS.model_dir, 'train.log')}")
  print(json.dumps(report(FLAGS.model_dir)))


if __name__ == "__main__":
  app.run(main)
