"""The one place that picks the Keras this package uses: Keras 2 (`tf_keras`).

tfmot 0.8 only works on Keras 2 models (it rejects Keras 3 models, and `cluster_weights`
returns None for them). keras-tuner 1.4 picks Keras 3 whenever the `keras` package is
importable, unless `sys.modules["keras"]` already is `tf_keras` when it is imported. And
`TF_USE_LEGACY_KERAS=1` must be set before TensorFlow is imported so that `tf.keras` is Keras 2
too. Every other module takes Keras from here:

    from sqznet_tf._keras import keras, tf

Nothing else in the package writes `import keras`.
"""

import contextlib
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# Hide TensorFlow's C++ INFO/WARNING lines (errors still print); a user's setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _quiet_native_stderr():
  """Silences what TensorFlow's C++ code writes to fd 2 while it loads.

  TensorFlow 2.21 prints "oneDNN custom operations are on", "Could not find cuda drivers" and
  "failed call to cuInit" through absl's C++ logging before TF_CPP_MIN_LOG_LEVEL applies
  (BUILD_NOTES.md explains them). They are hidden while TF_CPP_MIN_LOG_LEVEL >= 2 (the default
  set above); set TF_CPP_MIN_LOG_LEVEL=0 to see them. Python exceptions are raised after fd 2
  is restored, so import errors still show.
  """
  if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") < "2":
    yield
    return
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError):
    yield
    return
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)

if "keras_tuner" in sys.modules and getattr(sys.modules.get("keras"), "__name__", "") != "tf_keras":
  raise ImportError("keras_tuner was imported before sqznet_tf and has picked Keras 3; "
                    "import sqznet_tf first (it makes keras_tuner use tf_keras)")

with _quiet_native_stderr():
  import tensorflow as tf  # noqa: E402
  import tf_keras as keras  # noqa: E402
  tf.config.list_physical_devices()  # initialises the devices (and their log lines) here

# keras-tuner (and anything else that does `import keras`) now gets Keras 2.
sys.modules["keras"] = keras


def keras_tuner():
  """Imports keras_tuner bound to tf_keras and returns the module."""
  import keras_tuner as kt  # pylint: disable=g-import-not-at-top
  return kt


def tfmot():
  """Imports tensorflow_model_optimization and returns the module."""
  import tensorflow_model_optimization as mot  # pylint: disable=g-import-not-at-top
  return mot


__all__ = ["keras", "tf", "keras_tuner", "tfmot"]
