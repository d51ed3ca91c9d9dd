"""The loader treats model files as data: no code in a file runs, and a wrong file is one clear line."""

import os

import pytest

from sqznet_tf.errors import SqznetError
from tests.conftest import REPO, shared_data_dir
from tests.tools import run_tool


def _lambda_model(marker):
  """A model whose Lambda layer, when it is rebuilt from its config, creates `marker` (an attack)."""
  from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
  inp = keras.Input((4,))
  code = f"lambda x: (__import__('os').system('touch {marker}'), x)[1]"
  return keras.Model(inp, keras.layers.Lambda(eval(code))(inp))  # pylint: disable=eval-used


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
  """The same Lambda model as a legacy .h5, a .keras and a Keras SavedModel; the marker it would write."""
  root = tmp_path_factory.mktemp("evil")
  marker = root / "ran"
  model = _lambda_model(marker)
  paths = {"h5": root / "evil.h5", "keras": root / "evil.keras", "saved_model": root / "evil_sm"}
  model.save(str(paths["h5"]))
  model.save(str(paths["keras"]))
  model.save(str(paths["saved_model"]), save_format="tf")
  if marker.exists():
    marker.unlink()  # building the model ran the lambda once, here, on purpose
  return paths, marker


@pytest.mark.parametrize("form, message", [
    ("h5", "is a whole Keras model in the legacy HDF5 format, which can run code"),
    ("keras", "cannot load the Keras model"),
    ("saved_model", "holds a Lambda layer, which runs Python code"),
])
def test_no_code_runs_from_a_model_file(evil, form, message):
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
  paths, marker = evil
  with pytest.raises(SqznetError, match=message):
    loading.load_model(str(paths[form]))
  assert not marker.exists()


def test_the_crafted_h5_is_refused_by_a_binary(evil):
  paths, marker = evil
  r = run_tool("evaluate", f"--saved_model={paths['h5']}", f"--data_dir={shared_data_dir('cifar10_subset', 'test')}")
  assert r.returncode == 1 and "Traceback" not in r.stderr and "legacy HDF5 format" in r.stderr
  assert not marker.exists()


def test_a_text_file_is_not_hdf5_weights(tmp_path, models):
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
  text = tmp_path / "notes.h5"
  text.write_text("not weights\n")
  with pytest.raises(SqznetError, match="is not an HDF5 weights file"):
    loading.load_model(str(text), model="squeezenet_v1_1", classes=10, input_size=32)
  with pytest.raises(SqznetError, match="is not an HDF5 weights file"):
    sqznet_tf.get_model("squeezenet_v1_1", classes=10, input_shape=(32, 32, 3), weights=str(text))


def test_unknown_forms_name_what_is_accepted(tmp_path):
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
  with pytest.raises(SqznetError, match="'nope.bin' do not exist; expected a registry name, 'imagenet'"):
    loading.load_model("nope.bin")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(SqznetError, match="is not a run folder or a SavedModel"):
    loading.load_model(str(empty))
  (empty / "config.json").write_text('{"model": "squeezenet_v1_1"}')
  with pytest.raises(SqznetError, match="has no final.weights.h5 .the run has not finished"):
    loading.load_model(str(empty))
  assert os.path.isdir(REPO / "sqznet_tf")


def test_an_export_in_the_earlier_layout_still_loads(tmp_path):
  """Exports written before the SavedModel held only the variables held the Keras model itself
  (`.model`); both layouts load with the weights they hold."""
  import json  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  model = sqznet_tf.get_model("squeezenet_v1_1", classes=3, input_shape=(32, 32, 3))
  module = tf.Module()
  module.model = model
  module.serve = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, 32, 32, 3])])
  folder = tmp_path / "1"
  tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
  (folder / "assets.extra").mkdir()
  (folder / "assets.extra" / "sqznet_export.json").write_text(json.dumps(
      {"source": {"architecture": "squeezenet_v1_1", "overrides": {}}, "classes": 3, "input_size": 32}))
  loaded, _ = loading.load_model(str(folder))
  x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
  np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
