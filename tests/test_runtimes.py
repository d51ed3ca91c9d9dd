"""The runtime a Predictor picks per batch size: the same answers on every runtime, a cache that is used.

The shipped CIFAR-10 model on real test photos; TF is the reference.
"""

import json
import os

import numpy as np
import pytest

from sqznet_tf import loading, runtimes
from sqznet_tf.data.preprocessing import Preprocessor
from sqznet_tf.errors import SqznetError
from sqznet_tf.inference import Predictor as TFPredictor
from tests.conftest import shared_data_dir
from tests.tools import last_json, run_tool


@pytest.fixture(scope="module")
def shipped():
  model, info = loading.load_model("cifar10")
  return model, info


@pytest.fixture(scope="module")
def photos(shipped):
  """48 CIFAR-10 test photos (the first 5 of each class), preprocessed as the shipped model wants."""
  _, info = shipped
  pre = Preprocessor(info.preprocessing)
  root = shared_data_dir("cifar10_subset", "test")
  files = [f for c in sorted(root.iterdir()) for f in sorted(c.iterdir())[:5]][:48]
  return np.stack([pre(f.read_bytes()) for f in files])


@pytest.mark.parametrize("runtime", ["tflite", "onnx"])
def test_every_runtime_gives_tf_s_answers(shipped, photos, runtime, tmp_path):
  model, _ = shipped
  ref = TFPredictor(model)(photos)
  run = runtimes.Predictor(model, runtime, cache=str(tmp_path))
  assert run.runtime_for(1) == run.runtime_for(48) == runtime
  for batch in (1, 5, 48):  # the portable runtimes are resized to each batch size
    got = run.predict(photos, batch_size=batch)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert (got.argmax(1) == ref.argmax(1)).all()
  assert len(os.listdir(tmp_path)) == 1  # the converted model, kept for the next process


def test_auto_measures_once_and_keeps_its_choice(shipped, photos, tmp_path, monkeypatch, capsys):
  model, _ = shipped
  run = runtimes.Predictor(model, "auto", cache=str(tmp_path))
  one, small = run.runtime_for(1), run.runtime_for(runtimes.SMALL_BATCH)
  # The wait says what it is (a first prediction measures before it answers).
  assert f"measuring tf, tf-frozen, tflite, onnx for {model.name} at batch 1 and 8 (once" in capsys.readouterr().err
  assert run.runtime_for(runtimes.SMALL_BATCH + 1) == "tf" and run.runtime_for(2) == small
  at_1, at_small = run.choice["batch_1_ms"], run.choice[f"batch_{runtimes.SMALL_BATCH}_ms"]
  assert set(at_1) == set(at_small) == {"tf", "tf-frozen", "tflite", "onnx"}
  assert one == min(at_1, key=at_1.get) and small == min(at_small, key=at_small.get)
  stored = json.loads((tmp_path / f"{model.name}-{runtimes.model_key(model)}.runtime.json").read_text())
  assert stored == run.choice and stored["machine"] == runtimes.reporting.machine()
  np.testing.assert_allclose(run(photos[:3]), TFPredictor(model)(photos[:3]), atol=1e-4)

  def no_conversion(*args):
    raise AssertionError(f"converted again: {args}")
  monkeypatch.setattr(runtimes, "_convert", no_conversion)
  again = runtimes.Predictor(model, "auto", cache=str(tmp_path))
  assert again.runtime_for(1) == one and again.choice == stored  # read back, not measured
  assert "measuring" not in capsys.readouterr().err
  np.testing.assert_allclose(again(photos[:2]), TFPredictor(model)(photos[:2]), atol=1e-4)


def test_tf_alone_measures_its_two_forms_and_the_frozen_one_is_a_snapshot(shipped, photos, tmp_path):
  model, _ = shipped
  ref = TFPredictor(model)(photos)
  frozen = TFPredictor(model, freeze=True)
  np.testing.assert_allclose(frozen(photos), ref, atol=1e-5)
  np.testing.assert_allclose(TFPredictor(model).frozen()(photos), ref, atol=1e-5)  # the form runtimes uses
  assert (frozen(photos).argmax(1) == ref.argmax(1)).all()
  run = runtimes.Predictor(model, "tf", cache=str(tmp_path))
  one = run.runtime_for(1)
  assert run.runtime_for(runtimes.SMALL_BATCH + 1) == "tf" and run.runtime_for(runtimes.SMALL_BATCH) == run.choice["runtime_small"]
  assert set(run.choice["batch_1_ms"]) == {"tf", "tf-frozen"} and one == min(run.choice["batch_1_ms"], key=run.choice["batch_1_ms"].get)
  stored = json.loads((tmp_path / f"{model.name}-{runtimes.model_key(model)}.runtime-tf.json").read_text())
  assert stored == run.choice  # kept apart from auto's choice (runtime.json), read back next time
  for batch in (1, runtimes.SMALL_BATCH, 48):
    np.testing.assert_allclose(run.predict(photos, batch_size=batch), ref, atol=1e-5)
  # The frozen form read the weights at its first call: it does not follow a later change.
  w = model.get_layer("conv10").kernel
  old = w.numpy()
  try:
    w.assign(old * 1.5)
    np.testing.assert_allclose(frozen(photos[:4]), ref[:4], atol=1e-5)
    assert not np.allclose(TFPredictor(model)(photos[:4]), ref[:4], atol=1e-3)
  finally:
    w.assign(old)


def test_the_cache_key_follows_the_weights(models):
  model = models.get("squeezenet_v1_1", 32, classes=10, batch_norm=True)
  key = runtimes.model_key(model)
  w = model.weights[-2]
  old = w.numpy()
  try:
    w.assign(old + 1e-3)
    assert runtimes.model_key(model) != key
  finally:
    w.assign(old)
  assert runtimes.model_key(model) == key


def test_bad_runtime_is_named(shipped):
  with pytest.raises(SqznetError, match=r"runtime='tpu' is not accepted; expected one of auto, tf, tflite, onnx"):
    runtimes.Predictor(shipped[0], "tpu")


def test_sqznet_evaluate_on_onnx_scores_as_tf(shipped, tmp_path):
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data import sources  # pylint: disable=g-import-not-at-top
  root = shared_data_dir("cifar10_subset", "test")
  r = run_tool("evaluate", "--weights=cifar10", f"--data_dir={root}", "--limit=60", "--batch_size=4",
               "--runtime=onnx", "--format=json", env={"SQZNET_CACHE_DIR": str(tmp_path)})
  assert r.returncode == 0, r.stderr[-2000:]
  d = last_json(r.stdout)
  model, info = shipped
  ref = evaluation.evaluate(model, sources.open_source(str(root)),
                            Preprocessor(info.preprocessing), 32, 60,
                            progress=False)
  assert d["runtime"] == "onnx" and d["n"] == ref.n == 60
  assert d["correct1"] == ref.correct1 and d["correct5"] == ref.correct5
  assert any(f.endswith(".onnx") for f in os.listdir(tmp_path))


def test_the_flag_offers_every_runtime():
  from sqznet_tf import flags as sq_flags  # pylint: disable=g-import-not-at-top
  assert sq_flags.RUNTIMES == runtimes.RUNTIMES
