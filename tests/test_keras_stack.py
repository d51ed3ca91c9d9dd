"""The one-Keras decision: builders' models work with tfmot and keras-tuner."""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import sqznet_tf
from sqznet_tf import _keras
from sqznet_tf._keras import keras
from sqznet_tf.training import optimizers

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_keras_is_tf_keras():
  assert keras.__name__ == "tf_keras"
  assert sys.modules["keras"] is keras
  model = sqznet_tf.get_model("squeezenet_v1_1", classes=3, input_shape=(32, 32, 3))
  assert isinstance(model, keras.Model)


def test_prune_low_magnitude_accepts_builder_model():
  mot = _keras.tfmot()
  model = sqznet_tf.get_model("squeezenet_v1_1", classes=3, input_shape=(32, 32, 3))
  schedule = mot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
  pruned = mot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
  wrapped = [l.layer for l in pruned.layers if type(l).__name__ == "PruneLowMagnitude"]
  assert sum(isinstance(l, keras.layers.Conv2D) for l in wrapped) == 1 + 8 * 3 + 1  # every conv
  pruned.compile("sgd", "sparse_categorical_crossentropy")
  optimizers.build_slots(pruned)  # one trace of the train function (see test_options)
  x = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")
  pruned.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0,
             callbacks=[mot.sparsity.keras.UpdatePruningStep()])
  stripped = mot.sparsity.keras.strip_pruning(pruned)
  kernel = stripped.get_layer("fire9_expand3x3").kernel.numpy()
  assert abs((kernel == 0).mean() - 0.5) < 0.01


def test_keras_tuner_hypermodel_returns_builder_model():
  kt = _keras.keras_tuner()

  class Hyper(kt.HyperModel):

    def build(self, hp):
      sr = hp.Choice("squeeze_ratio", [0.125, 0.25])
      m = sqznet_tf.get_model("squeezenet_v1_1", squeeze_ratio=sr, classes=3, input_shape=(32, 32, 3))
      m.compile("adam", "sparse_categorical_crossentropy")
      return m

  hp = kt.HyperParameters()
  model = Hyper().build(hp)
  # keras-tuner checks what build() returns against ITS Keras: that must be Keras 2 (tf_keras), or
  # every trial fails with "build() must return a Model". (isinstance alone could not fail here.)
  from keras_tuner.src.backend import keras as tuner_keras  # pylint: disable=g-import-not-at-top
  assert tuner_keras.models.Model is keras.Model
  assert isinstance(model, tuner_keras.models.Model)
  assert model.get_layer("fire2_squeeze1x1").filters == 16


def test_nothing_else_imports_keras_directly():
  pattern = re.compile(r"^\s*(import keras\b|from keras\b|import tf_keras|from tf_keras)", re.M)
  offenders = []
  for folder in ("sqznet_tf", "tools", "tests", "bench"):
    for path in (REPO / folder).rglob("*.py"):
      if path.name != "_keras.py" and pattern.search(path.read_text()):
        offenders.append(str(path.relative_to(REPO)))
  assert offenders == []


@pytest.mark.skipif(not sqznet_tf.X86, reason="oneDNN's switch is for x86 CPUs")
def test_onednn_is_on_unless_the_user_turns_it_off():
  """Importing sqznet_tf first switches TensorFlow's oneDNN kernels on (TF 2.21 leaves them off on
  AVX2-only CPUs, where its Eigen kernels train 1.3-1.5x slower); TF_ENABLE_ONEDNN_OPTS=0 still wins.

  Fresh interpreters: the switch is read once, when TensorFlow is imported.
  """
  probe = ("import os, sqznet_tf; from tensorflow.python.util import _pywrap_util_port as p; "
           "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), p.IsMklEnabled())")
  seen = {}
  for setting in (None, "0"):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
      env["TF_ENABLE_ONEDNN_OPTS"] = setting
    r = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    seen[setting] = r.stdout.split()[-2:]
  assert seen == {None: ["1", "True"], "0": ["0", "False"]}
