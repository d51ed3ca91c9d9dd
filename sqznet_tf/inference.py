"""Repeated inference without Keras' per-call overhead: the forward pass compiled once.

`Keras Model.predict_on_batch` re-enters Keras' data handling on every call; at batch 1 that
costs as much as SqueezeNet itself (measured: 16.5 ms against 8.8 ms for v1.1 at 224 px on 2
cores; BENCHMARKS.md). `Predictor` traces `model(x, training=False)` once in a tf.function with a
fixed input signature (any batch size) and calls the traced concrete function directly (about 2%
faster at batch 1 than through the tf.function's dispatch). `sqznet_tf.runtimes.Predictor`
uses it as its TF runtime; the export checks use it as the reference.
"""

import numpy as np

from sqznet_tf._keras import keras, tf


class Predictor:
  """`model`'s forward pass as one compiled function; `predict_on_batch`-compatible."""

  def __init__(self, model):
    self.model = model
    self.input_shape = model.input_shape
    self.output_shape = model.output_shape
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    self._concrete = None  # traced on the first call; called directly (no signature matching per call)

  def __call__(self, x) -> np.ndarray:
    if self._concrete is None:
      self._concrete = self._fn.get_concrete_function()
    return self._concrete(tf.convert_to_tensor(np.asarray(x, dtype=np.float32))).numpy()

  predict_on_batch = __call__

  def predict(self, x, batch_size: int = 32) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.concatenate([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def predictor(model):
  """A Predictor for a single-input Keras model; anything else (a TFLite runner...) as it is."""
  if isinstance(model, keras.Model) and not isinstance(model.input_shape, list):
    return Predictor(model)
  return model
