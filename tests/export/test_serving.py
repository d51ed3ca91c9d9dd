"""SavedModels for TF Serving on a tiny model: signatures, labels, versions, warm-up, bad requests,
and the TFLite/ONNX files. The SavedModel runs in a TF session the way TF Serving runs it."""

import base64
import hashlib
import io
import os

import numpy as np
import pytest
from PIL import Image

import sqznet_tf
from sqznet_tf.data import preprocessing
from sqznet_tf.errors import SqznetError
from sqznet_tf.compression import tflite
from sqznet_tf.export import check, portable, serving

NAMES = ["alpha", "beta, second", "gamma"]
PREP = preprocessing.with_crop(preprocessing.PRESETS["caffe"], 32)  # resize 36x36, crop 32


def png(h, w, seed=0) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
  return buf.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  model = sqznet_tf.get_model("squeezenet_v1_1", classes=3, input_shape=(32, 32, 3))
  export_dir = str(tmp_path_factory.mktemp("exports") / "tiny")
  written = serving.export_saved_model(model, PREP, NAMES, export_dir, top_k=2,
                                       warmup_images=[png(40, 50), png(20, 24, 1)], meta={"source": {"model": "x"}})
  session = check.ServingSession(written["path"])
  yield model, export_dir, written, session
  session.close()


def keras_probs(model, crops):
  return model.predict(preprocessing.normalise(np.asarray(crops, np.float32), PREP), verbose=0)


def test_layout_labels_and_signatures(tiny):
  model, export_dir, written, session = tiny
  assert written["version"] == 1 and written["path"] == os.path.join(export_dir, "1")
  assert sorted(os.listdir(written["path"])) == ["assets", "assets.extra", "fingerprint.pb", "saved_model.pb",
                                                  "variables"]
  with open(os.path.join(written["path"], "assets", "labels.txt"), encoding="utf-8") as f:
    assert f.read().splitlines() == NAMES
  assert serving.read_meta(written["path"])["source"] == {"model": "x"}
  assert set(session.signatures) == {"serving_default", "serving_uint8", "serving_bytes"}
  crops = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
  out = session.predict("serving_default", {"images": crops})
  ref = keras_probs(model, crops)
  np.testing.assert_allclose(out["probabilities"], ref, atol=1e-6)
  top = np.argsort(-ref, axis=1)[:, :2]
  np.testing.assert_array_equal(out["classes"], top)
  assert [[l.decode() for l in row] for row in out["labels"]] == [[NAMES[k] for k in row] for row in top]
  u8 = session.predict("serving_uint8", {"images": np.round(crops).astype(np.uint8)})
  np.testing.assert_allclose(u8["probabilities"], keras_probs(model, np.round(crops)), atol=1e-6)
  # serving_bytes decodes, resizes and crops in the graph as the Keras pipeline does.
  images = [png(48, 64, 3), png(30, 30, 4)]
  by_bytes = session.predict("serving_bytes", {"image_bytes": np.array(images, dtype=object)})
  pre = preprocessing.Preprocessor(PREP)
  np.testing.assert_allclose(by_bytes["probabilities"], model.predict(np.stack([pre(b) for b in images]), verbose=0),
                             atol=1e-6)


def test_bad_requests_get_invalid_argument_and_the_session_goes_on(tiny):
  _, _, _, session = tiny
  ok = np.zeros((1, 32, 32, 3), np.float32)
  cases = [
      ("serving_bytes", {"image_bytes": np.array([b"not an image"], dtype=object)}, "Unknown image file format"),
      ("serving_bytes", {"image_bytes": np.array([], dtype=object)}, "empty batch: send at least one image"),
      # One bad item in a batch: the error names it.
      ("serving_bytes", {"image_bytes": np.array([png(8, 8), b"not an image"], dtype=object)},
       "image_bytes[1] is not a JPEG, PNG, GIF or BMP image"),
      ("serving_bytes", {"image_bytes": np.array([png(8, 8), png(8, 8)[:-20]], dtype=object)},
       "image_bytes[1] is a truncated image"),
      ("serving_bytes", {"image_bytes": np.array(png(8, 8), dtype=object)}, "image_bytes must be a list [N]"),
      ("serving_default", {"images": np.zeros((0, 32, 32, 3), np.float32)}, "empty batch"),
      ("serving_default", {"images": np.zeros((32, 32, 3), np.float32)},
       "images must be a batch [N, 32, 32, 3] of RGB images (0-255); got shape] [32 32 3]"),
      ("serving_default", {"images": np.zeros((1, 64, 64, 3), np.float32)}, "got shape] [1 64 64 3]"),
      ("serving_default", {"images": np.zeros((1, 32, 32, 3), np.uint8)}, "Expects arg[0] to be float32 but uint8"),
      ("serving_uint8", {"images": ok}, "Expects arg[0] to be uint8 but float32"),
      ("serving_default", {"pixels": ok}, "input keys ['pixels'] do not match the signature's ['images']"),
      ("serving_nope", {"images": ok}, "\"serving_nope\" not found"),
  ]
  for sig, inputs, message in cases:
    with pytest.raises(check.ServingError) as e:
      session.predict(sig, inputs)
    assert e.value.code == "INVALID_ARGUMENT" and message in e.value.message, (sig, e.value)
    assert "Traceback" not in e.value.message and "{{node" not in e.value.message
  assert session.predict("serving_default", {"images": ok})["probabilities"].shape == (1, 3)


def test_rest_body_with_b64(tiny):
  model, _, _, session = tiny
  image = png(50, 40, 5)
  body = {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(image).decode()}]}
  out = check.rest_predict(session, body)["predictions"]
  pre = preprocessing.Preprocessor(PREP)
  ref = model.predict(pre(image)[None], verbose=0)[0]
  assert len(out) == 1 and out[0]["labels"][0] == NAMES[int(ref.argmax())]
  np.testing.assert_allclose(out[0]["probabilities"], ref, atol=1e-6)
  pixels = {"instances": np.zeros((2, 32, 32, 3)).tolist()}  # serving_default; JSON numbers
  assert len(check.rest_predict(session, pixels)["predictions"]) == 2
  with pytest.raises(check.ServingError, match="not base64"):
    check.rest_predict(session, {"signature_name": "serving_bytes", "instances": [{"b64": "***"}]})


def test_warmup_records_run_against_the_signatures(tiny):
  _, _, written, session = tiny
  logs = serving.read_warmup(os.path.join(written["path"], "assets.extra", serving.WARMUP_FILE))
  assert written["warmup_requests"] == len(logs) == 6  # two photos x three signatures
  assert sorted({l.predict_log.request.model_spec.signature_name for l in logs}) == sorted(serving.SIGNATURES)
  assert {l.predict_log.request.model_spec.name for l in logs} == {"tiny"}
  for log in logs:
    out = session.predict_request(log.predict_log.request)
    assert out["probabilities"].shape == (1, 3)
  bad = os.path.join(os.path.dirname(written["path"]), "not_a_record")
  with open(bad, "wb") as f:
    f.write(b"\x00" * 40)
  with pytest.raises(SqznetError, match="not a TFRecord file"):
    serving.read_warmup(bad)


def _digest(folder):
  h = hashlib.sha256()
  for d, _, files in sorted(os.walk(folder)):
    for f in sorted(files):
      with open(os.path.join(d, f), "rb") as fh:
        h.update(f.encode() + fh.read())
  return h.hexdigest()


def test_versions_refuse_to_overwrite(tiny):
  model, export_dir, written, _ = tiny
  before = _digest(written["path"])
  second = serving.export_saved_model(model, PREP, NAMES, export_dir, top_k=1, warmup=False)
  assert second["version"] == 2 and serving.versions(export_dir) == [1, 2]
  with pytest.raises(SqznetError, match="version 1 of .* exists; pass --overwrite to replace it"):
    serving.export_saved_model(model, PREP, NAMES, export_dir, version=1, top_k=1)
  assert _digest(written["path"]) == before  # untouched
  assert not [d for d in os.listdir(export_dir) if d.startswith(".tmp")]
  replaced = serving.export_saved_model(model, PREP, NAMES, export_dir, version=2, overwrite=True, top_k=3,
                                        warmup=False)
  assert replaced["version"] == 2 and serving.read_meta(replaced["path"])["top_k"] == 3
  with pytest.raises(SqznetError, match="top_k=4 is not accepted; expected an integer from 1 to 3"):
    serving.export_saved_model(model, PREP, NAMES, export_dir, top_k=4)
  with pytest.raises(SqznetError, match="2 class names for a model with 3 classes"):
    serving.export_saved_model(model, PREP, NAMES[:2], export_dir)
  assert serving.versions(export_dir) == [1, 2]


def test_tflite_and_onnx_match_keras(tiny):
  model = tiny[0]
  x = preprocessing.normalise(np.random.default_rng(6).uniform(0, 255, (8, 32, 32, 3)), PREP).astype(np.float32)
  ref = model.predict(x, verbose=0)
  f32 = tflite.convert(model, "float32")
  assert np.abs(tflite.predict(f32, x, batch_size=3) - ref).max() <= 1e-4
  half = tflite.convert(model, "float16")
  assert len(half) < 0.6 * len(f32) and np.abs(tflite.predict(half, x) - ref).max() < 1e-2
  assert np.abs(portable.onnx_predict(portable.onnx(model), x) - ref).max() <= 1e-4
  with pytest.raises(SqznetError, match="needs representative images"):
    tflite.convert(model, "int8")
  with pytest.raises(SqznetError, match="TFLite kind 'int4' is not accepted"):
    tflite.convert(model, "int4")
