"""sqznet-export and sqznet-verify-export as a user runs them, on the real release and the 500 photos."""

import base64
import os

import pytest

from tests.conftest import photos_apart
from tests.tools import last_json, run_tool


run = run_tool


@pytest.fixture(scope="module")
def exported(release_path, sample_dir, synsets, tmp_path_factory):
  export_dir = tmp_path_factory.mktemp("savedmodels") / "squeezenet"
  r = run("export", f"--weights={release_path}", f"--labels={synsets}", f"--export_dir={export_dir}",
          "--tflite=float32,int8", f"--representative_data={sample_dir}", "--onnx",
          f"--warmup_images={sample_dir / 'n02123394_Persian_cat.JPEG'}", "--format=json")
  assert r.returncode == 0, r.stderr
  return export_dir, last_json(r.stdout)


def test_export_layout(exported):
  export_dir, d = exported
  assert d["version"] == 1 and d["path"] == str(export_dir / "1") and d["sparse"]  # the release is 2/3 zeros
  assert d["warmup_requests"] == 3 and set(d["signatures"]) == {"serving_default", "serving_uint8", "serving_bytes"}
  assert sorted(os.listdir(export_dir)) == ["1", "portable"]
  assert sorted(os.listdir(export_dir / "portable" / "1")) == ["labels.txt", "model.onnx", "model_float32.tflite",
                                                                "model_int8.tflite", "sqznet_export.json"]
  # The sparse float32 flatbuffer is well under the 5 MB of dense float32 weights.
  sizes = {os.path.basename(f["file"]): f["bytes"] for f in d["files"]}
  assert sizes["model_float32.tflite"] < 2.5e6 and sizes["model_int8.tflite"] < 1.2e6


def test_export_holds_each_weight_once_and_loads_back_to_the_bit(exported, release_path):
  """The signatures run a copy with the Fire concats split (each squeeze's kernel in two parts); the
  export saves only that copy's weights, and loading it as a model joins the parts back."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
  export_dir, _ = exported
  release, _ = loading.load_model(str(release_path))
  data = [f for f in os.listdir(export_dir / "1" / "variables") if f.startswith("variables.data")]
  stored = sum(os.path.getsize(export_dir / "1" / "variables" / f) for f in data)
  assert 4 * release.count_params() <= stored < 1.1 * 4 * release.count_params(), stored  # 1,248,424 floats
  back, _ = loading.load_model(str(export_dir / "1"))
  assert [w.name for w in back.weights] == [w.name for w in release.weights]
  assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(back.weights, release.weights))


def test_serving_bytes_puts_the_cat_first(exported, sample_dir):
  from sqznet_tf.export import check  # pylint: disable=g-import-not-at-top
  export_dir, _ = exported
  session = check.ServingSession(str(export_dir / "1"))
  try:
    photo = (sample_dir / "n02123394_Persian_cat.JPEG").read_bytes()
    body = {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(photo).decode()}]}
    top = check.rest_predict(session, body)["predictions"][0]
  finally:
    session.close()
  assert top["labels"][0] == "Persian cat" and top["classes"][0] == 283 and len(top["labels"]) == 5


def test_every_export_matches_keras_on_200_photos(exported, sample_dir, synsets):
  # 200 of the 500 photos (round-robin over their classes): the release's accuracy on all 500 is
  # held by tests/test_evaluation.py; here each exported form is compared with the Keras model.
  export_dir, _ = exported
  r = run("verify_export", f"--export_dir={export_dir}", f"--data_dir={sample_dir}", f"--labels={synsets}",
          "--limit=200", "--format=json")
  assert r.returncode == 0, r.stderr
  d = last_json(r.stdout)
  rows = {row["format"]: row for row in d["rows"]}
  assert d["n"] == 200 and d["skipped"] == 0 and d["failures"] == []
  keras = rows["keras"]
  assert photos_apart(keras["top1"], 0.73, 200) <= 2  # 146 of 200 measured (2026-12-02)
  for name in ("saved_model:serving_bytes", "saved_model:serving_default"):
    assert photos_apart(rows[name]["top1"], keras["top1"], 200) <= 1 and rows[name]["max_abs_diff"] <= 1e-5, rows[name]
  assert d["serving_default_vs_bytes"]["top1_agreement"] == 1.0
  assert rows["tflite:model_float32"]["max_abs_diff"] <= 1e-4 and rows["onnx:model"]["max_abs_diff"] <= 1e-4
  # int8 loses 3 of 200 photos to float32 (measured); 6 is the margin.
  assert round(200 * (rows["tflite:model_float32"]["top1"] - rows["tflite:model_int8"]["top1"])) <= 6, rows
  assert d["warmup"] == {"requests": 3, "failed": 0, "first_error": None,
                         "signatures": ["serving_bytes", "serving_default", "serving_uint8"]}


def test_existing_version_is_refused_and_kept(exported, release_path):
  export_dir, _ = exported
  pb = export_dir / "1" / "saved_model.pb"
  before = pb.read_bytes()
  r = run("export", f"--weights={release_path}", f"--export_dir={export_dir}", "--version=1")
  assert r.returncode == 1 and "Traceback" not in r.stderr
  assert "version 1 of" in r.stderr and "exists; pass --overwrite to replace it" in r.stderr
  assert pb.read_bytes() == before and sorted(os.listdir(export_dir)) == ["1", "portable"]


def test_bad_flags_fail_cleanly(release_path, tmp_path):
  out = tmp_path / "m"
  for args, message in [(["--tflite=float32,int4"], "--tflite=int4 is not accepted"),
                        (["--top_k=1001", "--labels=/nope.txt"], "cannot read label file '/nope.txt'")]:
    r = run("export", f"--weights={release_path}", f"--export_dir={out}", *args)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert message in r.stderr, r.stderr
    assert not out.exists() or not os.listdir(out)
  r = run("verify_export", f"--export_dir={out}", f"--data_dir={tmp_path}")
  assert r.returncode == 1 and "holds no SavedModel version" in r.stderr
