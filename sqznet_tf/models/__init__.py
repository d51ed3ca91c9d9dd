"""Model builders and the registry of named variants.

The configs (pure Python) load eagerly; the builders, which need TensorFlow, load on first use,
so channel counts and shapes can be computed without importing TensorFlow.
"""

import importlib

from sqznet_tf.models.configs import (AlexNetConfig, FireChannels, SqueezeNetConfig, fire_channels,
                                      get_config, list_models)

BUILDER_ARGS = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
                "classifier_activation", "name")

_LAZY = {
    "squeezenet": "sqznet_tf.models.squeezenet",
    "fire_module": "sqznet_tf.models.squeezenet",
    "SqueezeNetV1_0": "sqznet_tf.models.squeezenet",
    "SqueezeNetV1_0Caffe": "sqznet_tf.models.squeezenet",
    "SqueezeNetV1_1": "sqznet_tf.models.squeezenet",
    "alexnet": "sqznet_tf.models.alexnet",
    "AlexNet": "sqznet_tf.models.alexnet",
    "CUSTOM_OBJECTS": "sqznet_tf.models.layers",
}


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'sqznet_tf.models' has no attribute {name!r}")


def build(config, **builder_args):
  """Builds a model from a config object (SqueezeNetConfig or AlexNetConfig)."""
  if isinstance(config, AlexNetConfig):
    from sqznet_tf.models.alexnet import alexnet  # pylint: disable=g-import-not-at-top  (TensorFlow only when a model is built: configs stay TF-free)
    return alexnet(config, **builder_args)
  from sqznet_tf.models.squeezenet import squeezenet  # pylint: disable=g-import-not-at-top  (TensorFlow only when a model is built: configs stay TF-free)
  return squeezenet(config, **builder_args)


def split_kwargs(kwargs):
  """Splits keyword arguments into (builder arguments, metaparameter overrides)."""
  builder_args = {k: v for k, v in kwargs.items() if k in BUILDER_ARGS}
  overrides = {k: v for k, v in kwargs.items() if k not in BUILDER_ARGS}
  return builder_args, overrides


def _shipped_classes(weights) -> int:
  """Classes of shipped weights named by `weights` ("cifar10"), else 0."""
  from sqznet_tf import weights as weights_lib  # pylint: disable=g-import-not-at-top
  name = weights_lib.shipped_name(weights)
  return weights_lib.PRETRAINED[name][2] if name else 0


def get_model(model_name: str, /, **kwargs):
  """Builds the registered model `model_name`.

  Keyword arguments are either builder arguments (Keras-applications style: include_top,
  weights, input_tensor, input_shape, pooling, classes, classifier_activation, name) or
  metaparameter overrides of the config (squeeze_ratio=0.75, pct3x3=0.25, bypass="simple", ...).

  Example:
    model = get_model("squeezenet_v1_0", squeeze_ratio=0.75, classes=10, input_shape=(64, 64, 3))
    model = get_model("squeezenet_v1_1_cifar", weights="cifar10")  # shipped, trained on CIFAR-10
  """
  builder_args, overrides = split_kwargs(kwargs)
  shipped = _shipped_classes(builder_args.get("weights"))
  if shipped and "classes" not in builder_args:
    builder_args["classes"] = shipped  # get_model("squeezenet_v1_1_cifar", weights="cifar10"): 10 classes
  return build(get_config(model_name, **overrides), **builder_args)


__all__ = ["AlexNetConfig", "BUILDER_ARGS", "FireChannels", "SqueezeNetConfig", "build",
           "fire_channels", "get_config", "get_model", "list_models", "split_kwargs"] + sorted(_LAZY)
