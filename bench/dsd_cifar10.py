"""DSD vs dense training on the CIFAR-10 subset, same total epochs, several seeds.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

Dense: `--epochs` epochs of plain training. DSD: dense / sparse / re-dense phases whose epochs
add up to the same total (default 2 + 2 + 2 against 6), sparsity 0.67 on every layer but conv1,
re-dense at a tenth of the learning rate. SqueezeNet v1.1 with batch norm at 32 px, trained on
the 10,000 training photos, accuracy on the 3,000 test photos.

  python bench/dsd_cifar10.py --seeds=0,1,2 --out=/tmp/dsd_bench
"""

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; each runs dense and DSD.")
flags.DEFINE_integer("dense_epochs", 2, "DSD phase 1 epochs.")
flags.DEFINE_integer("sparse_epochs", 2, "DSD phase 2 epochs.")
flags.DEFINE_integer("redense_epochs", 2, "DSD phase 3 epochs.")
flags.DEFINE_float("sparsity", 0.67, "Sparsity of every layer but conv1 in the sparse phase.")
flags.DEFINE_float("learning_rate", 0.04, "Base learning rate (poly decay within each phase).")
flags.DEFINE_integer("image_size", 32, "Input side.")
flags.DEFINE_string("data", "../shared/data/cifar10_subset", "Folder with train/ and test/.")
flags.DEFINE_string("out", "/tmp/sqznet-dsd-bench", "Where the runs go.")


def main(argv):
  del argv
  from sqznet_tf.data.pipeline import DataSpec  # pylint: disable=g-import-not-at-top
  from sqznet_tf.pruning.dsd import DSDConfig, run_dsd  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.config import TrainConfig  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.train import train  # pylint: disable=g-import-not-at-top
  total = FLAGS.dense_epochs + FLAGS.sparse_epochs + FLAGS.redense_epochs
  results = []
  for seed in (int(s) for s in FLAGS.seeds):
    base = TrainConfig(model="squeezenet_v1_1", overrides={"batch_norm": True},
                       data=DataSpec("folder", os.path.join(FLAGS.data, "train"),
                                     val_path=os.path.join(FLAGS.data, "test"), image_size=FLAGS.image_size,
                                     seed=seed),
                       batch_size=64, epochs=total, learning_rate=FLAGS.learning_rate, seed=seed, verbose=0,
                       histogram_freq=0, model_dir=os.path.join(FLAGS.out, f"dense_seed{seed}"))
    dense = train(base)
    rows = run_dsd(DSDConfig(base, FLAGS.dense_epochs, FLAGS.sparse_epochs, FLAGS.redense_epochs,
                             sparsity=FLAGS.sparsity, keep_dense=("conv1",),
                             model_dir=os.path.join(FLAGS.out, f"dsd_seed{seed}")))
    curves = {}
    for phase in ("phase1_dense", "phase2_sparse", "phase3_dense"):
      path = os.path.join(FLAGS.out, f"dsd_seed{seed}", phase, "history.json")
      if os.path.exists(path):
        curves[phase] = [round(v["val_accuracy"], 4) for _, v in sorted(json.load(open(path)).items(), key=lambda kv: int(kv[0]))]
    r = {"seed": seed, "dense": dense.val_accuracy,
         "dense_curve": [round(dense.history[k]["val_accuracy"], 4) for k in sorted(dense.history, key=int)],
         "dsd": rows[-1]["val_accuracy"], "dsd_phases": {x["phase"]: x["val_accuracy"] for x in rows},
         "dsd_curves": curves}
    results.append(r)
    print(json.dumps(r), flush=True)
  d = [r["dense"] for r in results]
  s = [r["dsd"] for r in results]
  print(f"\n{total} epochs in all; DSD {FLAGS.dense_epochs}+{FLAGS.sparse_epochs}+{FLAGS.redense_epochs}, "
        f"sparsity {FLAGS.sparsity}\n")
  print("| seed | dense | DSD: after dense | after sparse | after re-dense |")
  print("|---|---|---|---|---|")
  for r in results:
    p = r["dsd_phases"]
    print(f"| {r['seed']} | {r['dense']:.4f} | {p['phase1_dense']:.4f} | {p['phase2_sparse']:.4f} | "
          f"{p['phase3_dense']:.4f} |")
  spread = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
  print(f"| mean +- sd | {statistics.mean(d):.4f} +- {spread(d):.4f} | | | "
        f"{statistics.mean(s):.4f} +- {spread(s):.4f} |")


if __name__ == "__main__":
  app.run(main)
