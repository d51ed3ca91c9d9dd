"""SqueezeNet builders (Keras functional API), exact to the published networks.

Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model
size", arXiv:1602.07360; Caffe release DeepScale/SqueezeNet (v1.0, v1.1). Layer names follow the
Caffe release with `_` for `/`: conv1, fire2_squeeze1x1, fire2_expand1x1, fire2_expand3x3, ...,
conv10. Max pools round their output size up as Caffe does. Initialisers follow the Caffe
train_val files: Xavier (uniform, fan-in) for the convs, N(0, 0.01) for conv10, zero biases.
"""

from typing import Optional, Sequence

from sqznet_tf._keras import keras
from sqznet_tf.models import configs
from sqznet_tf.models._builder import check_builder_args, global_pool, load_weights, make_inputs
from sqznet_tf.models.layers import CeilMaxPool2D


def _xavier():
  # Caffe's "xavier" filler: uniform in +-sqrt(3 / fan_in).
  return keras.initializers.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")


def _conv_relu(x, filters, kernel, name, config, strides=1, padding="valid"):
  x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, name=name,
                          kernel_initializer=_xavier(), bias_initializer="zeros")(x)
  if config.batch_norm:
    x = keras.layers.BatchNormalization(momentum=0.9, name=name + "_bn")(x)
  return keras.layers.ReLU(name=name + "_relu")(x)


def fire_module(x, channels: configs.FireChannels, config: configs.SqueezeNetConfig, bypass: str = "none"):
  """One Fire module: squeeze 1x1 -> (expand 1x1 || expand 3x3, pad 1) -> concat [+ bypass].

  Args:
    x: input tensor (NHWC).
    channels: filter counts (s1x1, e1x1, e3x3) and the name prefix.
    config: supplies batch_norm.
    bypass: "none", "identity" (add the input) or "conv" (add a 1x1 conv of the input).
  """
  n = channels.name
  inputs = x
  s = _conv_relu(x, channels.squeeze, 1, f"{n}_squeeze1x1", config)
  e1 = _conv_relu(s, channels.expand1x1, 1, f"{n}_expand1x1", config)
  e3 = _conv_relu(s, channels.expand3x3, 3, f"{n}_expand3x3", config, padding="same")
  x = keras.layers.Concatenate(axis=-1, name=f"{n}_concat")([e1, e3])
  if bypass == "identity":
    x = keras.layers.Add(name=f"{n}_bypass")([x, inputs])
  elif bypass == "conv":
    b = keras.layers.Conv2D(channels.out_channels, 1, name=f"{n}_bypass1x1",
                            kernel_initializer=_xavier())(inputs)
    x = keras.layers.Add(name=f"{n}_bypass")([x, b])
  return x


def squeezenet(config: configs.SqueezeNetConfig,
               include_top: bool = True,
               weights=None,
               input_tensor=None,
               input_shape: Optional[Sequence[Optional[int]]] = None,
               pooling: Optional[str] = None,
               classes: int = 1000,
               classifier_activation: Optional[str] = "softmax",
               name: Optional[str] = None):
  """Builds the SqueezeNet described by `config`.

  Args:
    config: a SqueezeNetConfig (see `configs.get_config`).
    include_top: whether to include dropout, conv10, its ReLU and global average pooling.
    weights: None (random init) or a path to Keras weights saved by this package.
    input_tensor: optional Keras tensor to use as the model input.
    input_shape: (height, width, channels); default (s, s, 3) with s = config.default_input_size.
      Height and width may be None (the network is fully convolutional).
    pooling: with include_top=False, None (4D features), "avg" or "max".
    classes: filters of conv10 (number of classes).
    classifier_activation: activation of the output (default softmax); None returns the
      globally pooled conv10 outputs.
    name: model name (default: config.name).

  Returns:
    A tf_keras functional Model.
  """
  check_builder_args(config, include_top, weights, pooling, classes)
  model_inputs, x = make_inputs(config, input_tensor, input_shape)
  if config.conv1_padding:
    x = keras.layers.ZeroPadding2D(config.conv1_padding, name="conv1_pad")(x)
  x = _conv_relu(x, config.conv1_filters, config.conv1_kernel, "conv1", config, strides=config.conv1_stride)
  if "conv1" in config.pool_after:
    x = CeilMaxPool2D(3, 2, name="pool1")(x)
  for i, chans in enumerate(configs.fire_channels(config)):
    x = fire_module(x, chans, config, configs.bypass_kind(config, i))
    if chans.name in config.pool_after:
      x = CeilMaxPool2D(3, 2, name="pool" + chans.name[len("fire"):])(x)
  if include_top:
    x = keras.layers.Dropout(config.dropout, name="drop9")(x)
    if config.conv10_padding:
      x = keras.layers.ZeroPadding2D(config.conv10_padding, name="conv10_pad")(x)
    x = keras.layers.Conv2D(classes, 1, name="conv10",
                            kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01),
                            bias_initializer="zeros")(x)
    if config.batch_norm:
      # Without it, the ReLU after conv10 silences most classes early in training from scratch.
      x = keras.layers.BatchNormalization(momentum=0.9, name="conv10_bn")(x)
    x = keras.layers.ReLU(name="conv10_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool10")(x)
    if classifier_activation is not None:
      x = keras.layers.Activation(classifier_activation, name="predictions", dtype="float32")(x)
  else:
    x = global_pool(x, pooling)
  model = keras.Model(model_inputs, x, name=name or config.name)
  load_weights(model, weights)
  return model


def _named_builder(registry_name: str):
  def builder(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
              classes=1000, classifier_activation="softmax", name=None, **overrides):
    return squeezenet(configs.get_config(registry_name, **overrides), include_top=include_top,
                      weights=weights, input_tensor=input_tensor, input_shape=input_shape,
                      pooling=pooling, classes=classes, classifier_activation=classifier_activation,
                      name=name)
  builder.__name__ = registry_name
  builder.__doc__ = (f"Builds `{registry_name}`; metaparameter overrides as keyword arguments.\n\n"
                     "See `squeezenet` for the arguments.")
  return builder


SqueezeNetV1_0 = _named_builder("squeezenet_v1_0")
SqueezeNetV1_0Caffe = _named_builder("squeezenet_v1_0_caffe")
SqueezeNetV1_1 = _named_builder("squeezenet_v1_1")
