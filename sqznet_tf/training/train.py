"""train(config): one training run on a TF distribution strategy, with preemption-safe checkpoints.

Outputs in `config.model_dir`:
  config.json            the resolved TrainConfig
  history.json           every finished epoch's metrics (kept complete across restarts)
  checkpoints/           epoch-NNN.weights.h5 after every epoch
  best.weights.h5        the best by validation accuracy (+ .sqznet.json metadata)
  backup/                BackupAndRestore state: rerun the same command to resume
  logs/                  TensorBoard (loss, accuracy, learning rate, histograms, graph)
  final.weights.h5       the last weights (+ .sqznet.json), saved_model/ (Keras SavedModel)
  summary.json           accuracy, parameters, size, time, images/s
  wrappers.json          with `wrap` (pruning, clustering): the wrapped layers, so that the
                         checkpoints of the wrapped model load (see training/wrappers.py)
Under multi-worker training only the chief writes these; the other workers write to temporary
folders that they delete.
"""

import dataclasses
import hashlib
import os
import shutil
import tempfile
import time
from typing import Callable, Optional

import numpy as np

from sqznet_tf import weights as weights_lib
from sqznet_tf._keras import keras, tf
from sqznet_tf.data import pipeline
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats.metadata import write_info
from sqznet_tf.io import write_atomic, write_json_atomic
from sqznet_tf.models import build, get_config, pointwise
from sqznet_tf.reporting import progress
from sqznet_tf.training import wrappers
from sqznet_tf.training import callbacks as cb
from sqznet_tf.training import optimizers, schedules, strategies
from sqznet_tf.training.config import GROUP_FROM_STEPS, GROUPED_STEPS, TrainConfig


@dataclasses.dataclass
class TrainResult:
  """What a run produced (also written to summary.json)."""
  model_dir: str
  epochs_run: int
  history: dict
  val_accuracy: Optional[float]
  val_top5: Optional[float]
  params: int
  size_bytes: int
  seconds: float
  images_per_sec: float
  train_size: int
  val_size: int
  skipped: int
  replicas: int
  classes: int = 0
  weights_sha256: str = ""  # of all final weights: equal on every worker of a synchronous run
  skipped_files: list = dataclasses.field(default_factory=list)  # "path: reason" of each unreadable image

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _l2_losses(model, weight_decay: float) -> None:
  """Caffe's weight_decay: adds wd/2 * ||w||^2 of every conv/dense kernel to the loss."""
  for wrapper in model.layers:
    layer = getattr(wrapper, "layer", wrapper)  # inside a pruning or clustering wrapper
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      kernel = layer.kernel
      if not hasattr(kernel, "assign"):  # clustering: the kernel is computed from the trained weights
        kernel = getattr(wrapper, "original_clusterable_weights", {}).get("kernel")
        if kernel is None:
          continue
      model.add_loss(lambda k=kernel: 0.5 * weight_decay * tf.reduce_sum(tf.square(tf.cast(k, tf.float32))))


def _optimizer(config: TrainConfig, schedule):
  if config.optimizer == "sgd":
    return keras.optimizers.SGD(schedule, momentum=config.momentum)
  if config.optimizer == "adam":
    return keras.optimizers.Adam(schedule)
  return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)


def _init_from(model, init_weights: str) -> None:
  """Starts from pretrained weights; layers that do not fit (a new classifier) stay fresh."""
  if init_weights == "imagenet" or init_weights.endswith(".net"):
    net, info = weights_lib.read_release(init_weights)
    weights_lib.load_compressed(model, net, info, skip_classifier_mismatch=True)
    return
  init_weights = os.fspath(weights_lib.resolve(init_weights))  # "cifar10": the .sqz the package ships
  if not os.path.exists(init_weights):
    raise SqznetError(f"init_weights {init_weights!r} does not exist")
  if weights_lib.is_container(init_weights):
    weights_lib.load_weights(model, init_weights)  # every tensor must fit (the same architecture)
    return
  if not init_weights.endswith(".h5"):
    raise SqznetError(f"init_weights {init_weights!r} is not accepted; expected 'imagenet', "
                      f"{', '.join(repr(n) for n in weights_lib.PRETRAINED)}, a .net or .sqz file or Keras "
                      "weights ending in .h5")
  model.load_weights(init_weights, by_name=True, skip_mismatch=True)


def _worker_dir(model_dir: str, chief: bool) -> str:
  if chief:
    return model_dir
  _, task_id = strategies.task_info()
  return tempfile.mkdtemp(prefix=f"sqznet-worker{task_id}-")


def _save_final(model, out_dir: str, info, save_model: bool = True) -> None:
  weights_lib.save_weights(model, os.path.join(out_dir, "final.weights.h5"), info)
  target = os.path.join(out_dir, "saved_model")
  if not save_model:
    shutil.rmtree(target, ignore_errors=True)  # never one of an earlier run beside these weights
    return
  tmp = os.path.join(out_dir, ".tmp-saved_model")
  shutil.rmtree(tmp, ignore_errors=True)
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel("ERROR")  # "Compiled the loaded model, but the compiled metrics ..." is noise here
  # Without per-layer traces (layers are rebuilt from their configs when loaded, our own layers by
  # `loading.load_model`'s custom objects): about 4x faster to write and 2x to load than Keras's
  # default for v1.1, with the same serving_default signature, traced once here.
  spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=model.input_names[0])
  serve = tf.function(lambda x: {model.output_names[0]: model(x, training=False)}, input_signature=[spec])
  try:
    model.save(tmp, include_optimizer=False, save_traces=False, signatures={"serving_default": serve})
  finally:
    logger.setLevel(level)
  shutil.rmtree(target, ignore_errors=True)
  os.replace(tmp, target)
  write_info(target, info)


def train(config: TrainConfig, wrap: Optional[Callable] = None, unwrap: Optional[Callable] = None,
          extra_callbacks: Optional[Callable] = None) -> TrainResult:
  """Trains `config.model` on `config.data`; rerunning the same config resumes an interrupted run.

  Args:
    config: the run.
    wrap: model -> model applied after building and loading `init_weights`, inside the
      strategy scope (DSD's sparse phase wraps layers for pruning here).
    unwrap: model -> model applied before the final weights are read and saved (strip_pruning).
    extra_callbacks: out_dir -> list of extra Keras callbacks (pruning step and summaries).
  """
  config.validate()
  strategy = strategies.make_strategy(config.strategy, config.tpu, config.cpu_devices)
  replicas = strategy.num_replicas_in_sync
  if config.batch_size % replicas:
    raise SqznetError(f"batch_size={config.batch_size} is not divisible by the {replicas} replicas of "
                      f"strategy {config.strategy}; use a multiple of {replicas}")
  overrides = dict(config.overrides)
  if config.dropout is not None:
    overrides["dropout"] = config.dropout
  model_config = get_config(config.model, **overrides)  # validates before any data is read
  chief = strategies.is_chief()
  multi_worker = config.strategy in ("multi_worker_mirrored", "tpu")
  keras.utils.set_random_seed(config.seed)

  data = pipeline.make_datasets(config.data, config.batch_size, config.classes,
                                drop_remainder=config.strategy == "tpu")
  if config.classes and config.classes != data.num_classes:
    raise SqznetError(f"classes={config.classes} but the data has {data.num_classes} classes")
  if data.skipped:
    progress(f"skipping {len(data.skipped)} unreadable images:")
    for line in data.problems or data.skipped:
      progress(f"  {line}")
  if not config.steps_per_epoch and not data.train_size:
    raise SqznetError(f"the size of {config.data.path!r} is not known without reading it all (over 1 GB of "
                      "TFRecords); pass --steps_per_epoch (e.g. 1,281,167 / batch size for ImageNet)")
  steps = config.steps_per_epoch or max(1, data.train_size // config.batch_size)
  train_ds = data.train.repeat()
  val_ds, val_steps = data.val, None
  if val_ds is not None and multi_worker and data.val_size:
    # Equal, finite validation steps on every worker (uneven shards would stall the collectives).
    val_steps = max(1, data.val_size // config.batch_size)
    val_ds = val_ds.repeat()

  # Steps per call into the graph: tfmot's pruning step and other per-batch callbacks need 1, and
  # Keras needs the validation steps to group them (a folder's count is known; large TFRecords' not).
  per_call = config.steps_per_execution or (
      GROUPED_STEPS if steps * config.epochs >= GROUP_FROM_STEPS else 1)
  if wrap is not None or extra_callbacks:
    per_call = 1
  if per_call > 1 and val_ds is not None and val_steps is None:
    if data.val_size:
      val_steps = -(-data.val_size // config.batch_size)
    else:
      per_call = 1

  out_dir = _worker_dir(config.model_dir, chief)
  os.makedirs(os.path.join(out_dir, "checkpoints"), exist_ok=True)
  resuming = os.path.isdir(os.path.join(config.model_dir, "backup")) and os.listdir(
      os.path.join(config.model_dir, "backup"))
  if chief and not resuming and os.path.exists(os.path.join(out_dir, "history.json")):
    os.remove(os.path.join(out_dir, "history.json"))  # a finished earlier run in the same folder
  if chief:
    write_atomic(os.path.join(out_dir, "config.json"), config.to_json() + "\n")

  if config.mixed_precision:
    keras.mixed_precision.set_global_policy(config.mixed_precision)
  try:
    with strategy.scope():
      model = build(model_config, input_shape=(config.data.image_size, config.data.image_size, 3),
                    classes=data.num_classes)
      if config.init_weights:
        _init_from(model, config.init_weights)
      if wrap is not None:
        model = wrap(model)
        if chief:
          wrappers.record(model, out_dir)  # so that checkpoints of the wrapped model can be loaded
      if config.weight_decay and config.optimizer != "adamw":
        _l2_losses(model, config.weight_decay)
      warmup = int(round(config.warmup_epochs * steps))
      schedule = schedules.make_schedule(config.lr_schedule, config.learning_rate, steps * config.epochs, warmup)
      optimizers.compile_model(model, optimizer=_optimizer(config, schedule),
                               loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                               metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                                        keras.metrics.TopKCategoricalAccuracy(5, name="top5")],
                               jit_compile=config.jit_compile,
                               steps_per_execution=per_call)
    info = weights_lib.WeightsInfo(
        name=os.path.basename(os.path.abspath(config.model_dir)), architecture=config.model,
        classes=data.num_classes, preprocessing=data.preprocessing, labels=",".join(data.class_names),
        source=f"trained by sqznet-train on {config.data.source} "
               f"{os.path.basename(str(config.data.path or '').rstrip('/'))}".strip(),
        licence="as the training data", overrides=overrides)
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    history_cb = cb.HistoryFile(os.path.join(out_dir, "history.json"), write=chief)
    timer = cb.EpochSeconds()
    callbacks = [
        timer,  # first: its epoch_seconds reach the history and TensorBoard
        cb.LearningRateLogger(),
        history_cb,  # before the backup: an epoch lost between the two is rerun and rewritten
        keras.callbacks.BackupAndRestore(os.path.join(config.model_dir, "backup")),
        keras.callbacks.ModelCheckpoint(os.path.join(out_dir, "checkpoints", "epoch-{epoch:03d}.weights.h5"),
                                        save_weights_only=True),
        keras.callbacks.ModelCheckpoint(os.path.join(out_dir, "best.weights.h5"), monitor=monitor,
                                        mode="max", save_best_only=True, save_weights_only=True),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "logs"), histogram_freq=config.histogram_freq,
                                    write_graph=True, update_freq="epoch"),
    ] + (list(extra_callbacks(out_dir)) if extra_callbacks else [])
    start = time.time()
    try:
      with pointwise.pointwise_as_matmul(model, config.pointwise_matmul):  # same numbers, faster (pointwise.py)
        model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps, validation_data=val_ds,
                  validation_steps=val_steps, callbacks=callbacks, verbose=config.verbose)
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError) as e:
      if not multi_worker:
        raise
      first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
      raise SqznetError(f"a worker of the multi-worker run stopped ({type(e).__name__}: {first}); start every "
                        "worker again with the same command to resume from the last finished epoch") from e
    except tf.errors.InvalidArgumentError as e:
      # --strict_data: an image whose body is damaged fails inside tf.data; name the file.
      bad = pipeline.find_undecodable(data.files) if config.data.strict and data.files else None
      if bad is None:
        raise
      raise SqznetError(f"unreadable image {bad[0]!r}: {bad[1]}; remove it or drop --strict_data "
                        "(the run resumes from its last finished epoch)") from e
    seconds = time.time() - start
    # Read once on every worker: under multi-worker training, reading batch-norm statistics is a
    # collective op that all workers must run together.
    final_model = unwrap(model) if unwrap is not None else model
    final_weights = final_model.get_weights()
    history = history_cb.read() if chief else {}
    last = history[max(history)] if history else {}
    if chief:
      # A clean float32 copy without the weight-decay losses (their closures do not serialise).
      policy = keras.mixed_precision.global_policy()
      keras.mixed_precision.set_global_policy("float32")
      try:
        clean = build(model_config, input_shape=(config.data.image_size, config.data.image_size, 3),
                      classes=data.num_classes)
      finally:
        keras.mixed_precision.set_global_policy(policy)
      clean.set_weights(final_weights)
      _save_final(clean, out_dir, info, config.save_model)
      if val_ds is not None and os.path.exists(os.path.join(out_dir, "best.weights.h5")):
        write_info(os.path.join(out_dir, "best.weights.h5"), info)
    train_seconds = sum(timer.seconds) or seconds
    result = TrainResult(
        model_dir=config.model_dir, epochs_run=len(history) if chief else len(timer.seconds),
        history={str(k): v for k, v in history.items()},
        val_accuracy=last.get("val_accuracy"), val_top5=last.get("val_top5"),
        params=int(final_model.count_params()), size_bytes=4 * int(final_model.count_params()), seconds=round(seconds, 2),
        images_per_sec=round(len(timer.seconds) * steps * config.batch_size / train_seconds, 1),
        train_size=data.train_size, val_size=data.val_size, skipped=len(data.skipped), skipped_files=list(data.problems or data.skipped),
        replicas=replicas,
        classes=data.num_classes,
        weights_sha256=hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in final_weights)).hexdigest())
    if chief:
      write_json_atomic(os.path.join(out_dir, "summary.json"), result.to_dict())
    else:
      shutil.rmtree(out_dir, ignore_errors=True)
    result.model = final_model  # the trained model, for callers in the same process (not in to_dict)
    return result
  finally:
    if config.mixed_precision:
      keras.mixed_precision.set_global_policy("float32")
