"""sqznet-serve over real HTTP: the shipped CIFAR-10 model exported and served (KServe) by the binary
as a subprocess on 127.0.0.1 at a free port; real photos as b64 JPEG against the Keras model, bad
requests, status and metrics, a new version dropped in, a bounded load, SIGTERM."""

import base64
import concurrent.futures
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

import sqznet_tf
from sqznet_tf.data import preprocessing
from sqznet_tf.export import exporter, serving, verify
from tests.conftest import REPO, shared_data_dir
from tests.tools import free_ports, run_tool, start_tool

NAME = "cifar"
MAX_BODY = 1_000_000
FORM = "application/x-www-form-urlencoded"  # what curl -d sends
READY_S = 240  # TF and KServe import plus the warm-up, on a busy 2-core machine


def call(port, method, path, body=None, content_type="application/json", headers=None, timeout=120):
  """(status, parsed JSON or text) of one request on a fresh connection."""
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
  try:
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    h = dict(headers or {})
    if content_type:
      h["Content-Type"] = content_type
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    raw = r.read().decode()
  finally:
    conn.close()
  try:
    return r.status, json.loads(raw)
  except ValueError:
    return r.status, raw


def predict(port, body, **kw):
  return call(port, "POST", f"/v1/models/{NAME}:predict", body, **kw)


def b64_request(images, signature="serving_bytes"):
  return {"signature_name": signature, "instances": [{"b64": base64.b64encode(b).decode()} for b in images]}


@pytest.fixture(scope="module")
def photos():
  """Two real CIFAR-10 test photos (JPEG files) per class."""
  root = shared_data_dir("cifar10_subset", "test")
  files = [f for d in sorted(root.iterdir()) if d.is_dir() for f in sorted(d.iterdir())[:2]]
  return [f.read_bytes() for f in files]


@contextlib.contextmanager
def server(root, log, *flags):
  """sqznet-serve on `root` at a free port, ready (status 200); yields (process, port); killed at the end."""
  port, = free_ports()
  proc = start_tool("serve", f"--export_dir={root}", f"--rest_api_port={port}", *flags, stdout=os.devnull,
                    stderr=log)
  name = os.path.basename(root)
  try:
    deadline = time.monotonic() + READY_S
    while True:
      if proc.poll() is not None:
        pytest.fail(f"sqznet-serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
      try:
        if call(port, "GET", f"/v1/models/{name}", timeout=5)[0] == 200:
          break
      except OSError:
        pass
      if time.monotonic() > deadline:
        pytest.fail(f"sqznet-serve not ready in {READY_S} s:\n{log.read_text()[-3000:]}")
      time.sleep(0.5)
    yield proc, port
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """Version 1 of the shipped model, served; yields (process, port, root, model, log path)."""
  tmp = tmp_path_factory.mktemp("serve")
  root = tmp / NAME
  model, info = sqznet_tf.load_model("cifar10")
  exporter.export(model, info, "cifar10", exporter.ExportConfig(export_dir=str(root)))
  log = tmp / "server.log"
  with server(root, log, "--file_system_poll_wait_seconds=0.5", "--enable_batching", "--max_batch_size=8",
              f"--max_request_bytes={MAX_BODY}", "--grace_period=20", "--intra_op_threads=1",
              "--inter_op_threads=2") as (proc, port):
    yield proc, port, root, model, log


def exported_labels(root):
  return (root / "1" / "assets" / "labels.txt").read_text(encoding="utf-8").splitlines()


def keras_top(model, root, images):
  prep = verify.export_preprocessing(str(root / "1"))
  pre = preprocessing.Preprocessor(prep)
  return model.predict(np.stack([pre(b) for b in images]), verbose=0)


def test_photos_as_b64_jpeg_give_the_keras_models_labels(served, photos):
  _, port, root, model, _ = served
  assert all(b[:3] == b"\xff\xd8\xff" for b in photos)  # real JPEG files, sent as they are
  ref = keras_top(model, root, photos)
  names = exported_labels(root)
  status, out = predict(port, b64_request(photos))
  assert status == 200, out
  got = out["predictions"]
  assert len(got) == len(photos)
  assert [p["labels"][0] for p in got] == [names[k] for k in ref.argmax(1)]
  np.testing.assert_allclose([p["probabilities"] for p in got], ref, atol=1e-5)
  assert [p["classes"][0] for p in got] == ref.argmax(1).tolist()
  # One photo per request (joined by the batcher), and curl's default form content type.
  for i in (0, 7):
    status, one = predict(port, json.dumps(b64_request([photos[i]])).encode(), content_type=FORM)
    assert status == 200 and one["predictions"][0]["labels"][0] == names[int(ref[i].argmax())]
  # Columnar form on the pixel signature: {"inputs": ...} -> {"outputs": ...}.
  prep = verify.export_preprocessing(str(root / "1"))
  crops = np.stack([preprocessing.resize_and_crop_tf(preprocessing.decode_image_tf(b), prep).numpy()
                    for b in photos[:3]])
  status, col = predict(port, {"inputs": crops.tolist()})
  assert status == 200 and set(col["outputs"]) == {"probabilities", "classes", "scores", "labels"}
  np.testing.assert_allclose(col["outputs"]["probabilities"], ref[:3], atol=1e-4)


def test_status_metadata_and_metrics(served):
  _, port, _, _, _ = served
  status, body = call(port, "GET", f"/v1/models/{NAME}")
  assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
  status, meta = call(port, "GET", f"/v1/models/{NAME}/metadata")
  sigs = meta["metadata"]["signature_def"]["signature_def"]
  assert status == 200 and set(sigs) == {"serving_default", "serving_uint8", "serving_bytes"}
  assert set(sigs["serving_bytes"]["inputs"]) == {"image_bytes"}
  assert call(port, "GET", "/v1/models/nope")[0] == 404
  predict(port, b64_request([serving.synthetic_jpeg(40, 48)]))
  status, text = call(port, "GET", "/metrics")
  assert status == 200
  line = next(l for l in text.splitlines() if l.startswith(f'request_predict_seconds_count{{model_name="{NAME}"}}'))
  assert float(line.split()[-1]) >= 1


BAD = [
    ("not an image", b64_request([b"hello, not an image"]), 400, "is not a JPEG, PNG, GIF or BMP image"),
    ("truncated JPEG", b64_request([serving.synthetic_jpeg(40, 40)[:300]]), 400, "truncated image"),
    ("not base64", {"signature_name": "serving_bytes", "instances": [{"b64": "***"}]}, 400, "not base64"),
    ("wrong shape", {"instances": [[1.0, 2.0, 3.0]]}, 400, "images must be a batch [N, 32, 32, 3]"),
    ("wrong image size", {"instances": np.zeros((1, 24, 24, 3)).tolist()}, 400, "got shape] [1 24 24 3]"),
    ("unknown signature", {"signature_name": "serving_nope", "instances": [[1]]}, 400,
     'Serving signature name: "serving_nope" not found'),
    ("empty instance list", {"instances": []}, 400, "empty list"),
    ("no instances", {"signature_name": "serving_bytes"}, 400, "Missing 'inputs' or 'instances' key"),
    ("both forms", {"instances": [[1]], "inputs": [[1]]}, 400, "not both"),
    ("not an object", [1, 2, 3], 400, "must be a JSON object"),
    ("malformed JSON", b'{"instances": [1, 2', 400, "Unrecognized request format"),
]


@pytest.mark.parametrize("what,body,code,message", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_and_the_next_request_is_answered(served, what, body, code, message):
  _, port, _, _, _ = served
  del what
  status, out = predict(port, body)
  assert status == code and message in out["error"], out
  status, ok = predict(port, b64_request([serving.synthetic_jpeg(40, 48)]))
  assert status == 200 and len(ok["predictions"]) == 1


def test_unknown_model_malformed_form_body_and_over_large_body(served):
  _, port, _, _, _ = served
  status, out = call(port, "POST", "/v1/models/nope:predict", {"instances": [[1]]})
  assert status == 404 and "nope" in out["error"]
  status, out = predict(port, b'{"instances": [', content_type=FORM)  # curl -d's content type
  assert status == 400 and "Malformed JSON" in out["error"]
  # A body over --max_request_bytes is refused from its Content-Length, before it is read.
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
  conn.putrequest("POST", f"/v1/models/{NAME}:predict")
  conn.putheader("Content-Type", "application/json")
  conn.putheader("Content-Length", str(MAX_BODY + 1))
  conn.endheaders()
  r = conn.getresponse()
  body = json.loads(r.read())
  conn.close()
  assert r.status == 413 and f"limit of {MAX_BODY} bytes" in body["error"]
  assert predict(port, b64_request([serving.synthetic_jpeg(40, 48)]))[0] == 200


def test_load_500_requests_8_at_a_time_has_no_failures(served):
  _, port, _, _, log = served
  images = [serving.synthetic_jpeg(32 + i, 40 + 2 * i) for i in range(10)]
  expected = [predict(port, b64_request([b]))[1]["predictions"][0]["labels"][0] for b in images]

  def one(i):
    status, out = predict(port, b64_request([images[i % 10]]))
    return status == 200 and out["predictions"][0]["labels"][0] == expected[i % 10]

  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    results = list(pool.map(one, range(500)))
  assert sum(results) == 500, f"{500 - sum(results)} of 500 failed:\n{log.read_text()[-2000:]}"


def test_a_new_version_is_served_and_a_broken_one_skipped(served, tmp_path):
  proc, port, root, model, log = served
  names = exported_labels(root)
  labels = tmp_path / "labels.txt"
  labels.write_text("".join(f"v2 {n}\n" for n in names))
  _, info = sqznet_tf.load_model("cifar10")
  exporter.export(model, info, "cifar10", exporter.ExportConfig(export_dir=str(root), labels=str(labels)))
  assert serving.versions(str(root)) == [1, 2]
  deadline = time.monotonic() + 60
  while call(port, "GET", f"/v1/models/{NAME}")[1]["model_version_status"][0]["version"] != "2":
    assert time.monotonic() < deadline, "version 2 not served within 60 s"
    time.sleep(0.25)
  status, out = predict(port, b64_request([serving.synthetic_jpeg(40, 48)]))
  assert status == 200 and out["predictions"][0]["labels"][0].startswith("v2 ")
  # A version that does not load is skipped: version 2 keeps serving.
  (root / "3").mkdir()
  (root / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
  deadline = time.monotonic() + 60
  while "version 3 not served" not in log.read_text():
    assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
    time.sleep(0.25)
  assert call(port, "GET", f"/v1/models/{NAME}")[1]["model_version_status"][0]["version"] == "2"
  assert predict(port, b64_request([serving.synthetic_jpeg(40, 48)]))[0] == 200


def test_bad_flags_are_one_line_errors(served, tmp_path):
  proc, port, root, _, _ = served
  r = run_tool("serve", f"--export_dir={tmp_path / 'none'}", timeout=120)
  assert r.returncode == 1 and "is not a folder" in r.stderr and "Traceback" not in r.stderr
  r = run_tool("serve", f"--export_dir={root / '1'}", timeout=120)
  assert r.returncode == 1 and "is a version folder" in r.stderr and "Traceback" not in r.stderr
  assert proc.poll() is None
  r = run_tool("serve", f"--export_dir={root}", f"--rest_api_port={port}", timeout=120)  # the running server's port
  assert r.returncode == 1 and f"port={port} cannot be used" in r.stderr and "Traceback" not in r.stderr


def test_sigterm_answers_running_requests_and_exits_0(served):
  proc, port, _, _, log = served
  images = [serving.synthetic_jpeg(48, 48)] * 32
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    running = [pool.submit(predict, port, b64_request(images)) for _ in range(8)]
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    answered = []
    for f in running:
      try:
        answered.append(f.result()[0])
      except OSError:
        pass  # not yet accepted when the server stopped listening
  assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
  assert all(s == 200 for s in answered), answered
  assert "stopped" in log.read_text()


def test_readme_curl_line(release_path, sample_dir, tmp_path):
  """The README's export and curl lines: the release served, the curl line run as written (only the
  port is this test's), and the Persian cat comes back first."""
  readme = (REPO / "README.md").read_text(encoding="utf-8")
  section = readme[readme.index("## Serving"):]
  curl = next(l for l in section.splitlines() if l.startswith("curl "))
  assert "localhost:8501/v1/models/squeezenet:predict" in curl and "Persian_cat.JPEG" in curl
  if not (shutil.which("curl") and shutil.which("base64")):
    pytest.skip("curl and base64 are needed to run the README's curl line")
  root = tmp_path / "squeezenet"
  model, info = sqznet_tf.load_model(str(release_path))
  labels = sample_dir.parent / "synset_words.txt"
  exporter.export(model, info, str(release_path), exporter.ExportConfig(export_dir=str(root), labels=str(labels)))
  with server(root, tmp_path / "server.log") as (proc, port):
    out = subprocess.run(["bash", "-c", curl.replace("localhost:8501", f"127.0.0.1:{port}")], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, S=str(sample_dir.parent.parent)))
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)["predictions"][0]
    assert first["labels"][0] == "Persian cat" and first["classes"][0] == 283
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
