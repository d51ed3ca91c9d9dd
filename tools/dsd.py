"""sqznet-dsd: Dense -> Sparse -> Dense training (DSD, arXiv:1607.04381).

Phase 1 trains dense (or starts from --init_weights with --dense_epochs=0), phase 2 prunes each
layer to its target by magnitude and retrains with the masks fixed, phase 3 lifts the masks
(pruned weights restart from zero) and retrains everything at a lower learning rate. Each phase
writes its own folder under --model_dir (phase1_dense/, phase2_sparse/, phase3_dense/) with
checkpoints and TensorBoard logs; rerun the same command to resume a killed run in its phase.

The training flags are those of sqznet-train (--data, --model, --batch_norm, --image_size, ...);
--epochs and --learning_rate are replaced by the per-phase flags.

Examples:
  sqznet-dsd --data=embedded --batch_norm --image_size=64 --model_dir=runs/dsd
  sqznet-dsd --data=../shared/data/cifar10_subset/train --val_data=../shared/data/cifar10_subset/test \\
      --batch_norm --dense_epochs=4 --sparse_epochs=2 --redense_epochs=2 --sparsity='{"*": 0.67}'
  sqznet-dsd --sparsity=sensitivity/sparsity_map.json --keep_dense=conv1,conv10 ...
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402

FLAGS = flags.FLAGS

sq_flags.define_train_flags()
flags.DEFINE_integer("dense_epochs", 2, "Epochs of phase 1 (0: start from --init_weights).", lower_bound=0)
flags.DEFINE_integer("sparse_epochs", 2, "Epochs of phase 2 (masks fixed).", lower_bound=0)
flags.DEFINE_integer("redense_epochs", 2, "Epochs of phase 3 (masks lifted).", lower_bound=0)
flags.DEFINE_float("dense_lr", None, "Learning rate of phase 1 (default --learning_rate).")
flags.DEFINE_float("sparse_lr", None, "Learning rate of phase 2 (default --learning_rate).")
flags.DEFINE_float("redense_lr", None, "Learning rate of phase 3 (default --learning_rate / 10).")
sq_flags.define_sparsity_flags()

COLUMNS = ["phase", "epochs", "learning_rate", "val_accuracy", "val_top5", "sparsity", "nonzero_params",
           "size_fp32", "seconds"]


def main(argv):
  del argv
  base = sq_flags.train_config_from_flags()
  sq_flags.check_outputs(folders=[("--model_dir", FLAGS.model_dir)])
  from sqznet_tf.pruning.dsd import DSDConfig, run_dsd  # pylint: disable=g-import-not-at-top  (TensorFlow)
  cfg = DSDConfig(base=base, dense_epochs=FLAGS.dense_epochs, sparse_epochs=FLAGS.sparse_epochs,
                  redense_epochs=FLAGS.redense_epochs, dense_lr=FLAGS.dense_lr, sparse_lr=FLAGS.sparse_lr,
                  redense_lr=FLAGS.redense_lr, sparsity=sq_flags.sparsity_from_flags(),
                  keep_dense=tuple(FLAGS.keep_dense or ()), model_dir=FLAGS.model_dir)
  rows = run_dsd(cfg, verbose_phase=lambda name: reporting.progress(f"--- {name} ---"))
  if FLAGS.format == "json":
    reporting.print_json({"phases": rows})
    return
  print()
  print(reporting.heading("DSD: Dense -> Sparse -> Dense"))
  print(reporting.table(rows, COLUMNS))
  print(f"\nPer-phase outputs in {FLAGS.model_dir}/phase*/; TensorBoard: tensorboard --logdir {FLAGS.model_dir}")


def run():
  sq_flags.run_main(main, resume="rerun the same command to resume in the phase where it stopped")


if __name__ == "__main__":
  run()
