"""AlexNet, the baseline of the SqueezeNet paper.

Two published variants:
- `alexnet`: the BVLC Caffe reference network (Krizhevsky et al., 2012 as released by BVLC):
  conv1 96x11x11/4, LRN, pool; conv2 256x5x5 pad 2 groups 2, LRN, pool; conv3 384x3x3;
  conv4 384x3x3 groups 2; conv5 256x3x3 groups 2; pool; fc6, fc7 4096 with dropout; fc8.
  227x227 input, 60,965,224 parameters.
- `alexnet_owt`: torchvision's single-tower "one weird trick" network (arXiv:1404.5997):
  64/192/384/256/256 filters, conv1 pad 2, no LRN, no groups; 224 input, 61,100,840 parameters.
Pools are 3x3 stride 2 with Caffe's ceil rounding (which equals floor rounding at these sizes).
Initialisers follow BVLC's train_val: N(0, 0.01) convs and fc8, N(0, 0.005) fc6/fc7, bias 0.1
on conv2, conv4, conv5, fc6 and fc7.
"""

from typing import Optional, Sequence

from sqznet_tf._keras import keras
from sqznet_tf.errors import SqznetError
from sqznet_tf.models import configs
from sqznet_tf.models._builder import check_builder_args, global_pool, load_weights, make_inputs
from sqznet_tf.models.layers import LRN, CeilMaxPool2D

_CONV_BIAS = (0.0, 0.1, 0.0, 0.1, 0.1)
FC_INPUT_SIDE = 6  # fc6 reads a 6x6 pool5 map


def _init(std):
  return keras.initializers.RandomNormal(0.0, std)


def alexnet(config: configs.AlexNetConfig,
            include_top: bool = True,
            weights=None,
            input_tensor=None,
            input_shape: Optional[Sequence[Optional[int]]] = None,
            pooling: Optional[str] = None,
            classes: int = 1000,
            classifier_activation: Optional[str] = "softmax",
            name: Optional[str] = None):
  """Builds the AlexNet described by `config`.

  Arguments as in `squeezenet.squeezenet`. With include_top=True the input must give a 6x6
  pool5 map (227 for `alexnet`, 224 for `alexnet_owt`), since fc6 reads 6*6*256 values.
  """
  check_builder_args(config, include_top, weights, pooling, classes)
  model_inputs, x = make_inputs(config, input_tensor, input_shape)
  if include_top:
    side = configs.alexnet_feature_sizes(config, x.shape[1] or 0)["pool5"] if x.shape[1] else None
    side_w = configs.alexnet_feature_sizes(config, x.shape[2] or 0)["pool5"] if x.shape[2] else None
    if side != FC_INPUT_SIDE or side_w != FC_INPUT_SIDE:
      raise SqznetError(
          f"input size {x.shape[1]}x{x.shape[2]} is not accepted for {config.name} with include_top=True; "
          f"fc6 needs a 6x6 pool5 map, e.g. {config.default_input_size}x{config.default_input_size} "
          "(use include_top=False for other sizes)")
  for i, (filters, groups) in enumerate(zip(config.conv_filters, config.groups)):
    n = i + 1
    kernel, strides = {1: (11, 4), 2: (5, 1)}.get(n, (3, 1))
    if n == 1 and config.conv1_padding:
      x = keras.layers.ZeroPadding2D(config.conv1_padding, name="conv1_pad")(x)
    x = keras.layers.Conv2D(filters, kernel, strides=strides, groups=groups,
                            padding="valid" if n == 1 else "same", name=f"conv{n}",
                            kernel_initializer=_init(0.01),
                            bias_initializer=keras.initializers.Constant(_CONV_BIAS[i]))(x)
    if config.batch_norm:
      x = keras.layers.BatchNormalization(name=f"conv{n}_bn")(x)
    x = keras.layers.ReLU(name=f"conv{n}_relu")(x)
    if n in (1, 2) and config.lrn:
      x = LRN(name=f"norm{n}")(x)
    if n in (1, 2, 5):
      x = CeilMaxPool2D(3, 2, name=f"pool{n}")(x)
  if include_top:
    x = keras.layers.Flatten(name="flatten")(x)
    for n in (6, 7):
      if config.dropout_before_fc:
        x = keras.layers.Dropout(config.dropout, name=f"drop{n}")(x)
      x = keras.layers.Dense(config.fc_widths[n - 6], name=f"fc{n}", kernel_initializer=_init(0.005),
                             bias_initializer=keras.initializers.Constant(0.1))(x)
      x = keras.layers.ReLU(name=f"fc{n}_relu")(x)
      if not config.dropout_before_fc:
        x = keras.layers.Dropout(config.dropout, name=f"drop{n}")(x)
    x = keras.layers.Dense(classes, name="fc8", kernel_initializer=_init(0.01))(x)
    if classifier_activation is not None:
      x = keras.layers.Activation(classifier_activation, name="predictions", dtype="float32")(x)
  else:
    x = global_pool(x, pooling)
  model = keras.Model(model_inputs, x, name=name or config.name)
  load_weights(model, weights)
  return model


def AlexNet(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
            classes=1000, classifier_activation="softmax", name=None, **overrides):
  """Builds the BVLC `alexnet`; see `alexnet` for the arguments."""
  return alexnet(configs.get_config("alexnet", **overrides), include_top, weights, input_tensor,
                 input_shape, pooling, classes, classifier_activation, name)
