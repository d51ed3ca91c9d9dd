"""Callbacks: the learning rate in the logs, a complete history across restarts."""

import json
import os
import time

import numpy as np

from sqznet_tf._keras import keras


class LearningRateLogger(keras.callbacks.Callback):
  """Adds the optimizer's current learning rate to the epoch logs (TensorBoard, history)."""

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    opt = self.model.optimizer
    lr = opt.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
      lr = lr(opt.iterations)
    logs["learning_rate"] = float(keras.backend.get_value(lr))


class HistoryFile(keras.callbacks.Callback):
  """Writes every finished epoch's logs to a JSON file, keyed by epoch, atomically.

  A run resumed by BackupAndRestore appends to the same file, so the file holds the whole
  history of the run however often it was interrupted. An epoch that is rerun after an
  interruption replaces its earlier row.
  """

  def __init__(self, path: str, write: bool = True):
    super().__init__()
    self.path, self.write = path, write

  def read(self):
    if not os.path.exists(self.path):
      return {}
    with open(self.path, encoding="utf-8") as f:
      return {int(k): v for k, v in json.load(f).items()}

  def on_epoch_end(self, epoch, logs=None):
    if not self.write:
      return
    rows = self.read()
    rows[epoch] = {k: float(np.asarray(v)) for k, v in (logs or {}).items()}
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump({str(k): rows[k] for k in sorted(rows)}, f, indent=1)
    os.replace(tmp, self.path)


class EpochSeconds(keras.callbacks.Callback):
  """Wall time of each epoch in seconds, validation included (for images/s in the summary, and as
  `epoch_seconds` in the epoch logs: history.json then holds a time-to-accuracy curve)."""

  def __init__(self):
    super().__init__()
    self.seconds = []

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.seconds.append(time.perf_counter() - self._start)
    if logs is not None:
      logs["epoch_seconds"] = self.seconds[-1]
