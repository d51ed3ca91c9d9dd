"""1x1 convolutions run as one matrix product each, for training.

A 1x1 convolution with stride 1 is a matrix product of the (batch * height * width, in) map with
the (in, out) kernel. TensorFlow's oneDNN convolution path pays for it in training: the kernel is
reordered to a blocked layout for the forward pass and again for the backward pass, and the filter
gradient of a 1x1 convolution is computed by a kernel that is slower than its forward (oneDNN's
verbose log of one SqueezeNet v1.1 step at 64 px, batch 32: 10.2 ms for the 17 filter gradients
against 4.4 ms forward, plus 71 weight reorders). As a matrix product, the forward and both
gradients are plain GEMMs on the layout the tensors already have. Same numbers (float round-off
only), same variables, same layer classes and configs: only the call changes, and only while
`pointwise_as_matmul` is active, so exported graphs keep their convolutions.

Measured in BENCHMARKS.md ("Training: 1x1 convolutions as matrix products").
"""

from typing import List

from sqznet_tf._keras import keras, tf
from sqznet_tf.models.layers import clear_instance_attribute, instance_attribute, leaf_layers, set_instance_attribute


def _eligible(layer) -> bool:
  return (type(layer) is keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1)  # pylint: disable=unidiomatic-typecheck
          and tuple(layer.strides) == (1, 1) and tuple(layer.dilation_rate) == (1, 1)
          and getattr(layer, "groups", 1) == 1 and layer.data_format == "channels_last")


def pointwise_layers(model) -> List:
  """The plain 1x1, stride-1, ungrouped Conv2D layers of `model`, also inside tfmot's wrappers."""
  return [layer for layer in leaf_layers(model) if _eligible(layer)]


def _matmul_op(inputs, kernel):
  cin, cout = int(kernel.shape[-2]), int(kernel.shape[-1])
  flat = tf.reshape(inputs, [-1, cin])
  out = tf.linalg.matmul(flat, tf.reshape(kernel, [cin, cout]))
  h, w = inputs.shape[1], inputs.shape[2]
  if h is not None and w is not None:
    return tf.reshape(out, [-1, h, w, cout])
  return tf.reshape(out, tf.concat([tf.shape(inputs)[:-1], [cout]], 0))


def use_matmul(layers) -> None:
  """Calls of these 1x1 Conv2D layers traced from now on compute a matrix product."""
  set_instance_attribute(layers, "convolution_op", _matmul_op)


def use_convolution(layers) -> None:
  """Undoes `use_matmul`."""
  clear_instance_attribute(layers, "convolution_op")


def pointwise_as_matmul(model, enabled: bool = True):
  """While active, every 1x1 convolution of `model` runs as a matrix product (a context manager;
  yields how many).

  Functions traced inside (Keras' train and test steps) keep the matrix products after the block;
  calls traced afterwards use the convolutions again.
  """
  return instance_attribute(pointwise_layers(model) if enabled else [], "convolution_op", _matmul_op)
