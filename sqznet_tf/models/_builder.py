"""What every builder shares: argument checks, the input tensor, the head's pooling, weights."""

import os
from typing import Optional, Sequence

from sqznet_tf import weights as weights_lib
from sqznet_tf._keras import keras
from sqznet_tf.errors import SqznetError
from sqznet_tf.models import configs

POOLING_CHOICES = (None, "avg", "max")


def check_builder_args(config, include_top: bool, weights, pooling, classes) -> None:
  """Raises SqznetError for arguments a builder cannot use (Keras-applications rules)."""
  if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
    raise SqznetError(f"classes={classes!r} is not accepted for {config.name}; expected an integer >= 1")
  if pooling not in POOLING_CHOICES:
    raise SqznetError(f"pooling={pooling!r} is not accepted; expected None, 'avg' or 'max'")
  if weights is not None:
    if not isinstance(weights, (str, os.PathLike)):
      raise SqznetError(f"weights={weights!r} is not accepted; expected None, 'imagenet', a .net file "
                        "or a path to weights saved by this package")
    if str(weights) == "imagenet":
      if config.family != "squeezenet":
        raise SqznetError(f"weights='imagenet' is not available for {config.name}; it is for "
                          "squeezenet_v1_0_caffe (and squeezenet_v1_0)")
      if include_top and classes != 1000:
        raise SqznetError(f"weights='imagenet' have 1000 classes; classes={classes} is not accepted with "
                          "them (use include_top=False for other classes)")
    elif weights_lib.shipped_name(weights):
      name = weights_lib.shipped_name(weights)
      _, architecture, n = weights_lib.PRETRAINED[name]
      if config.name != architecture:
        raise SqznetError(f"weights={name!r} are for {architecture}; {config.name} is not accepted with them")
      if include_top and classes != n:
        raise SqznetError(f"weights={name!r} have {n} classes; classes={classes} is not accepted with them")
      weights_lib.pretrained_path(name)  # raises when the package's file is missing
    elif not os.path.exists(weights):
      raise SqznetError(f"weights file {str(weights)!r} does not exist")


def make_inputs(config, input_tensor, input_shape: Optional[Sequence[Optional[int]]]):
  """Returns (model_inputs, first_tensor) after checking the input shape against `config`."""
  if input_tensor is not None:
    shape = tuple(input_tensor.shape[1:])
  elif input_shape is None:
    shape = (config.default_input_size, config.default_input_size, 3)
  else:
    shape = tuple(input_shape)
  if len(shape) != 3 or (shape[2] is None) or any(
      s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1) for s in shape):
    raise SqznetError(f"input_shape={shape!r} is not accepted for {config.name}; expected "
                      "(height, width, channels) with positive integers (height/width may be None)")
  configs.check_input_size(config, shape[0], shape[1])
  if input_tensor is None:
    x = keras.Input(shape=shape, name="input")
    return x, x
  if not keras.backend.is_keras_tensor(input_tensor):
    x = keras.Input(tensor=input_tensor, shape=shape, name="input")
    return x, x
  return keras.utils.get_source_inputs(input_tensor), input_tensor


def global_pool(x, pooling):
  if pooling == "avg":
    return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  if pooling == "max":
    return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
  return x


def load_weights(model, weights) -> None:
  """Loads `weights` (see `sqznet_tf.weights.load_weights`); a mismatch is a clear error."""
  if weights is None:
    return
  weights_lib.load_weights(model, weights)
