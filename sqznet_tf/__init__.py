"""sqznet_tf: SqueezeNet and AlexNet for TensorFlow/Keras (Keras 2), with cost analysis.

Public names are loaded on first use, so `import sqznet_tf.models.configs` (pure Python) does
not import TensorFlow.
"""

import importlib
import os
import sys

__version__ = "0.1.0"

# oneDNN's kernels for convolutions and matrix products. TensorFlow 2.21 switches them on by itself
# only on x86 CPUs with AVX-512 (and newer); on an AVX2-only CPU it runs Eigen's instead, which
# measured 2.3x slower in a 4096 x 4096 product and 1.3-1.5x slower in a training step
# (BENCHMARKS.md "On the AVX2-only CPU"). On for every x86 CPU when sqznet_tf is imported before
# TensorFlow (the switch is read when TensorFlow loads); a user's TF_ENABLE_ONEDNN_OPTS wins (0: off).
from sqznet_tf.reporting import X86  # noqa: E402  (standard library only: TensorFlow is not loaded yet)
if X86 and "tensorflow" not in sys.modules:
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

_LAZY = {
    "get_model": "sqznet_tf.models",
    "build": "sqznet_tf.models",
    "list_models": "sqznet_tf.models.configs",
    "get_config": "sqznet_tf.models.configs",
    "SqueezeNetConfig": "sqznet_tf.models.configs",
    "AlexNetConfig": "sqznet_tf.models.configs",
    "fire_channels": "sqznet_tf.models.configs",
    "squeezenet": "sqznet_tf.models",
    "alexnet": "sqznet_tf.models",
    "SqueezeNetV1_0": "sqznet_tf.models",
    "SqueezeNetV1_0Caffe": "sqznet_tf.models",
    "SqueezeNetV1_1": "sqznet_tf.models",
    "AlexNet": "sqznet_tf.models",
    "analyze_model": "sqznet_tf.analysis",
    "analyze": "sqznet_tf.analysis",
    "SqznetError": "sqznet_tf.errors",
    "load_model": "sqznet_tf.loading",
    "weights_info": "sqznet_tf.weights",
    "Predictor": "sqznet_tf.runtimes",  # inference on the runtime that suits the batch size
}


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'sqznet_tf' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_LAZY))


__all__ = sorted(_LAZY)
