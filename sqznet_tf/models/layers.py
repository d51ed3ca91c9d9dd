"""Layers that Keras lacks and the published networks need.

- `CeilMaxPool2D`: Caffe (and torchvision with ceil_mode=True) round a pool's output size up;
  Keras "valid" pooling rounds down, "same" pads on both sides and shifts the windows. Padding
  the bottom and right edges with -inf and pooling "valid" reproduces Caffe exactly.
- `LRN`: Caffe's across-channel local response normalisation (AlexNet).
"""

import contextlib
from typing import Iterator, List

from sqznet_tf._keras import keras, tf


def ceil_pool_padding(size, pool_size: int, strides: int):
  """Rows (or columns) to add at the end so that a valid pool gives ceil((size-k)/s)+1 outputs.

  Works on Python ints and on scalar tensors.
  """
  return (strides - (size - pool_size) % strides) % strides


def _same_is_ceil(size: int, pad: int, pool_size: int, strides: int) -> bool:
  """Whether TF's "SAME" max pooling gives exactly the ceil-mode windows on a side of `size` whose
  ceil-mode padding is `pad` (`ceil_pool_padding`): the same output size, and the padding (at most
  one row) all at the end, where "SAME" puts a single row and ignores it."""
  return pad <= 1 and -(-size // strides) == (size + pad - pool_size) // strides + 1


class CeilMaxPool2D(keras.layers.Layer):
  """Max pooling without padding whose output size is rounded up, as in Caffe.

  Output side = ceil((input - pool_size) / strides) + 1. The last window may hang over the
  bottom/right edge; the missing values count as -inf, so it takes the max of what is there.
  """

  def __init__(self, pool_size: int = 3, strides: int = 2, **kwargs):
    super().__init__(**kwargs)
    self.pool_size = int(pool_size)
    self.strides = int(strides)

  # tf.nn.max_pool2d (oneDNN's kernel, whose gradient is the fast one); `inference_pooling` swaps in
  # MaxPoolV2 for an inference trace.
  pool_op = staticmethod(tf.nn.max_pool2d)

  def call(self, inputs):
    static = inputs.shape
    if static[1] is not None and static[2] is not None:
      pad_h = ceil_pool_padding(static[1], self.pool_size, self.strides)
      pad_w = ceil_pool_padding(static[2], self.pool_size, self.strides)
      if pad_h == 0 and pad_w == 0:  # the windows fit exactly: no copy of the map (and of its gradient)
        return self.pool_op(inputs, self.pool_size, self.strides, "VALID")
      if (_same_is_ceil(static[1], pad_h, self.pool_size, self.strides)
          and _same_is_ceil(static[2], pad_w, self.pool_size, self.strides)):
        # One row/column over the edge: "SAME" pads only there and ignores it, no padded copy (v1.0's
        # pool4 at 224 px, 54 -> 27: 28.4 ms of 462 for a batch of 32 with the copy, AVX2 CPU).
        return self.pool_op(inputs, self.pool_size, self.strides, "SAME")
    else:
      dyn = tf.shape(inputs)
      pad_h = ceil_pool_padding(dyn[1], self.pool_size, self.strides)
      pad_w = ceil_pool_padding(dyn[2], self.pool_size, self.strides)
    x = tf.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]],
               constant_values=tf.constant(float("-inf"), inputs.dtype))
    return self.pool_op(x, self.pool_size, self.strides, "VALID")

  # No weights: tells tfmot's pruning and clustering wrappers there is nothing to do here.
  def get_prunable_weights(self):
    return []

  def get_clusterable_weights(self):
    return []

  def compute_output_shape(self, input_shape):
    def side(n):
      return None if n is None else -(-(n - self.pool_size) // self.strides) + 1
    return tf.TensorShape([input_shape[0], side(input_shape[1]), side(input_shape[2]), input_shape[3]])

  def get_config(self):
    cfg = super().get_config()
    cfg.update(pool_size=self.pool_size, strides=self.strides)
    return cfg


class LRN(keras.layers.Layer):
  """Caffe's ACROSS_CHANNELS local response normalisation.

  y = x / (k + alpha / size * sum_{window of `size` channels} x^2) ^ beta. Caffe divides alpha
  by the window size; `tf.nn.local_response_normalization` does not, so it gets alpha / size.
  """

  def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

  def call(self, inputs):
    return tf.nn.local_response_normalization(inputs, depth_radius=self.size // 2, bias=self.k,
                                              alpha=self.alpha / self.size, beta=self.beta)

  def get_prunable_weights(self):
    return []

  def get_clusterable_weights(self):
    return []

  def get_config(self):
    cfg = super().get_config()
    cfg.update(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)
    return cfg


CUSTOM_OBJECTS = {"CeilMaxPool2D": CeilMaxPool2D, "LRN": LRN}


def copy_layer(layer):
  """A fresh, built copy of `layer` holding its current weights (no variables shared)."""
  new = layer.__class__.from_config(layer.get_config())
  if layer.weights:
    new.build(layer.input_shape)
    new.set_weights(layer.get_weights())
  return new


def leaf_layers(model) -> List:
  """The layers of `model` that compute, in order: nested models and tfmot's wrappers
  (PruneLowMagnitude, ClusterWeights, QuantizeWrapper: `.layer`) are looked through."""
  found = []

  def visit(layer):
    inner = getattr(layer, "layer", None)
    if inner is not None and isinstance(inner, keras.layers.Layer):
      visit(inner)
    elif isinstance(layer, keras.Model):
      for sub in layer.layers:
        visit(sub)
    else:
      found.append(layer)

  for layer in model.layers:
    visit(layer)
  return found


def set_instance_attribute(layers, name: str, value) -> None:
  """Each of `layers` gets `name` = `value` as an instance attribute (the class and its config
  untouched): calls traced from now on use it."""
  for layer in layers:
    setattr(layer, name, value)


def clear_instance_attribute(layers, name: str) -> None:
  """Undoes `set_instance_attribute`: the class's own `name` again."""
  for layer in layers:
    if name in layer.__dict__:
      delattr(layer, name)


@contextlib.contextmanager
def instance_attribute(layers, name: str, value) -> Iterator[int]:
  """While active, each of `layers` has `name` = `value` as an instance attribute
  (`set_instance_attribute`); yields how many layers. Functions traced inside keep what it made
  them do."""
  set_instance_attribute(layers, name, value)
  try:
    yield len(layers)
  finally:
    clear_instance_attribute(layers, name)


def _max_pool_v2(inputs, pool_size, strides, padding):
  return tf.raw_ops.MaxPoolV2(input=inputs, ksize=[1, pool_size, pool_size, 1], strides=[1, strides, strides, 1],
                              padding=padding)


def inference_pooling(model):
  """While active, `model`'s CeilMaxPool2D layers trace MaxPoolV2 (a context manager; yields how
  many layers).

  The same windows and values as MaxPool, but TensorFlow's oneDNN build does not take this op
  over, and its own kernel is faster on the AVX2-only CPU: v1.0 at 224 px, batch 32, 4.8% less
  time per batch through `inference.Predictor` (pool4, 32x54x54x256: 9.6 against 21 ms); in
  training it is 15-18% slower (its gradient), so only inference traces use it
  (BENCHMARKS.md "Max pooling at inference"). Functions traced inside keep it; exported graphs,
  traced elsewhere, keep MaxPool (what every converter maps).
  """
  pools = [l for l in leaf_layers(model) if type(l) is CeilMaxPool2D]  # pylint: disable=unidiomatic-typecheck
  return instance_attribute(pools, "pool_op", _max_pool_v2)
