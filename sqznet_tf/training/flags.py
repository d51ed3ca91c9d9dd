"""The training flags shared by sqznet-train and sqznet-dsd, and the TrainConfig they describe."""

import os

from absl import flags

from sqznet_tf import cli
from sqznet_tf.errors import SqznetError
from sqznet_tf.models import configs


def define_train_flags() -> None:
  """Defines the model, data, optimisation, distribution and output flags (absl)."""
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
    raise SqznetError(f"--data {data!r} does not exist (expected embedded, synthetic, tfds:NAME, an "
                          "image folder or TFRecords)")
  return "folder", data


def config_from_flags(flag_values, **changes):
  """The TrainConfig the flags describe (with `changes` applied to it)."""
  from sqznet_tf.data.pipeline import DataSpec  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.config import TrainConfig  # pylint: disable=g-import-not-at-top
  f = flag_values
  if f.learning_rate <= 0:
    raise SqznetError(f"--learning_rate={f.learning_rate} is not accepted; expected a number > 0")
  source, path = data_source(f.data, f.data_format)
  spec = DataSpec(source=source, path=path, val_path=f.val_data, val_split=f.val_split,
                  image_size=f.image_size, preprocessing=f.preprocessing, augmentation=f.augmentation,
                  seed=f.seed, deterministic=f.deterministic, strict=f.strict_data, label_offset=f.label_offset)
  values = dict(
      model=f.model, overrides=cli.overrides_from_flags(f), data=spec, classes=f.classes,
      batch_size=f.batch_size, epochs=f.epochs, steps_per_epoch=f.steps_per_epoch, optimizer=f.optimizer,
      learning_rate=f.learning_rate, momentum=f.momentum, lr_schedule=f.lr_schedule,
      warmup_epochs=f.warmup_epochs, weight_decay=f.weight_decay, label_smoothing=f.label_smoothing,
      dropout=f.dropout, seed=f.seed, init_weights=f.init_weights, mixed_precision=f.mixed_precision,
      jit_compile=f.jit_compile, strategy=f.strategy, tpu=f.tpu, cpu_devices=f.cpu_devices,
      model_dir=f.model_dir, histogram_freq=f.histogram_freq, verbose=f.verbose)
  values.update(changes)
  return TrainConfig(**values)
