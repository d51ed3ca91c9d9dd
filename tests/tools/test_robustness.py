"""Careless input as a user gives it: outputs that cannot be written, bad images, Ctrl-C, lost peers.

Every case ends in one line on stderr (no traceback) and a non-zero exit, before any long work
where the mistake is in the arguments.
"""

import io
import json
import signal
import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_data_dir
from tests.tools import free_ports, last_json, run_tool, start_tool

TINY_TRAIN = ["--batch_norm", "--image_size=24", "--batch_size=8", "--histogram_freq=0", "--nosave_model",
              "--verbose=2", "--format=json"]


def _one_line_error(r, fragment):
  assert r.returncode != 0, r.stdout[-500:]
  assert "Traceback" not in r.stderr, r.stderr[-2000:]
  errors = [l for l in r.stderr.splitlines() if ": error: " in l]
  assert len(errors) == 1 and fragment in errors[0], r.stderr[-2000:]


@pytest.fixture(scope="module")
def a_file(tmp_path_factory):
  """A regular file: every output path under it is impossible."""
  path = tmp_path_factory.mktemp("outputs") / "a_file"
  path.write_text("x")
  return path


@pytest.fixture(scope="module")
def no_tensorflow(tmp_path_factory):
  """A folder whose `tensorflow` package fails to import: put first on PYTHONPATH, it shows that a
  binary got as far as it did without TensorFlow."""
  root = tmp_path_factory.mktemp("no_tensorflow")
  (root / "tensorflow").mkdir()
  (root / "tensorflow" / "__init__.py").write_text('raise ImportError("tensorflow imported")\n')
  return root


@pytest.mark.parametrize("tool, args, fragment", [
    ("evaluate", ["--data_dir={cifar}", "--output={f}/r.json"], "cannot write --output"),
    ("analyze", ["--output={f}/r.json"], "cannot write --output"),
    ("sensitivity", ["--data_dir={cifar}", "--output_dir={f}/sens"], "cannot create --output_dir"),
    ("compress", ["--weights={release}", "--output={f}/m.sqz"], "cannot write --output"),
    ("export", ["--weights={release}", "--export_dir={f}/models"], "cannot create --export_dir"),
    ("train", ["--data=embedded", "--model_dir={f}/run"], "cannot create --model_dir"),
    ("dsd", ["--data=embedded", "--model_dir={f}/run"], "cannot create --model_dir"),
    ("tune", ["--data=embedded", "--directory={f}/search"], "cannot create --directory"),
])
def test_unwritable_outputs_fail_before_the_work(tool, args, fragment, a_file, no_tensorflow, release_path):
  """Before any work and before TensorFlow is imported (a stand-in tensorflow package that fails to
  import is first on the path): a bad output path is answered in well under a second."""
  cifar = shared_data_dir("cifar10_subset", "test")
  r = run_tool(tool, *(a.format(f=a_file, cifar=cifar, release=release_path) for a in args),
               env={"PYTHONPATH": str(no_tensorflow)})
  _one_line_error(r, fragment)
  assert "evaluating [" not in r.stderr and "measuring" not in r.stderr and "Epoch 1" not in r.stdout


def _jpeg(rng, size=24) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (size, size, 3)).astype(np.uint8)).save(buf, "JPEG")
  return buf.getvalue()


def _png(rng, size=24) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (size, size, 3)).astype(np.uint8)).save(buf, "PNG")
  return buf.getvalue()


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
  """Two classes of 8 good images, plus a text file, a truncated JPEG and a truncated PNG."""
  root = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(3)
  for cls in ("cats", "dogs"):
    (root / cls).mkdir()
    for i in range(8):
      (root / cls / f"{i}.jpg").write_bytes(_jpeg(rng))
  (root / "cats" / "notes.jpg").write_text("not an image\n")
  (root / "cats" / "cut.jpg").write_bytes(_jpeg(rng)[:300])
  (root / "dogs" / "cut.png").write_bytes(_png(rng)[:500])
  return root


def test_every_unreadable_image_is_counted_and_named(bad_folder, tmp_path):
  r = run_tool("train", f"--data={bad_folder}", "--val_split=0.25", "--epochs=1", f"--model_dir={tmp_path}",
               *TINY_TRAIN)
  assert r.returncode == 0, r.stderr[-2000:]
  d = last_json(r.stdout)
  assert d["skipped"] == 3 and d["train_size"] + d["val_size"] == 16
  named = "\n".join(d["skipped_files"])
  for name, why in (("notes.jpg", "not a JPEG, PNG, GIF or BMP"), ("cut.jpg", "truncated JPEG"),
                    ("cut.png", "truncated PNG")):
    assert f"{name}: {why}" in named and name in r.stderr


def test_strict_data_names_the_first_bad_file(bad_folder, tmp_path):
  r = run_tool("train", f"--data={bad_folder}", "--strict_data", "--epochs=1", f"--model_dir={tmp_path}",
               *TINY_TRAIN)
  _one_line_error(r, "unreadable image")
  assert any(n in r.stderr for n in ("notes.jpg", "cut.jpg", "cut.png"))


def test_strict_data_names_an_image_damaged_inside(tmp_path):
  """Whole on the outside (signature and end marker), broken inside: found when tf.data fails to decode."""
  root = tmp_path / "data"
  rng = np.random.default_rng(4)
  for cls in ("a", "b"):
    (root / cls).mkdir(parents=True)
    for i in range(6):
      (root / cls / f"{i}.jpg").write_bytes(_jpeg(rng))
  broken = bytearray(_jpeg(rng))
  at = broken.index(b"\xff\xc0")
  broken[at + 5:at + 9] = b"\x00\x00\x00\x00"  # height and width 0 in the frame header
  (root / "b" / "zero.jpg").write_bytes(bytes(broken))
  r = run_tool("train", f"--data={root}", "--strict_data", "--val_split=0", "--epochs=1",
               f"--model_dir={tmp_path / 'run'}", *TINY_TRAIN)
  _one_line_error(r, "zero.jpg")


def test_predict_classifies_what_it_can(release_path, sample_dir, synsets, tmp_path):
  bad = tmp_path / "broken.jpg"
  bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
  r = run_tool("predict", f"--weights={release_path}", f"--labels={synsets}", "--format=json",
               str(sample_dir / "n02123394_Persian_cat.JPEG"), str(bad))
  assert r.returncode == 1 and "Traceback" not in r.stderr
  d = last_json(r.stdout)
  assert [p["top"][0]["label"] for p in d["predictions"]] == ["Persian cat"]
  assert [f["file"] for f in d["failed"]] == [str(bad)]
  assert "1 of 2 images could not be classified" in r.stderr and "broken.jpg" in r.stderr


def test_conflicting_strategy_flags_are_refused(tmp_path):
  r = run_tool("train", "--data=embedded", "--strategy=mirrored", "--tpu=local", f"--model_dir={tmp_path}")
  _one_line_error(r, "tpu='local' is given with strategy='mirrored'")


def _wait_for(predicate, proc, seconds=300):
  deadline = time.time() + seconds
  while time.time() < deadline and proc.poll() is None:
    if predicate():
      return True
    time.sleep(0.2)
  return False


def test_ctrl_c_is_one_line_that_says_how_to_resume(tmp_path):
  # As at a terminal: SIGINT at its default (start_tool's processes have it so even where a shell's
  # background job, as CI may be, would start them with SIGINT ignored).
  proc = start_tool("train", "--data=embedded", "--epochs=50", "--steps_per_epoch=20", f"--model_dir={tmp_path}",
                    *TINY_TRAIN)
  history = tmp_path / "history.json"
  assert _wait_for(lambda: history.exists() and json.load(open(history)), proc), "no epoch finished"
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
  assert err.strip().splitlines()[-1].endswith("interrupted; rerun the same command to resume from the last "
                                               "finished epoch")


def test_a_lost_peer_is_one_line_on_the_chief(tmp_path):
  ports = free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  for i in range(2):
    # TMPDIR: the killed worker cannot remove its scratch folder; keep it inside the test's folder.
    (tmp_path / "scratch").mkdir(exist_ok=True)
    env = {"TMPDIR": str(tmp_path / "scratch"),
           "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
    procs.append(start_tool("train", "--data=embedded", "--strategy=multi_worker_mirrored", "--epochs=50",
                            "--steps_per_epoch=10", f"--model_dir={tmp_path}", *TINY_TRAIN, env=env))
  chief, worker = procs
  history = tmp_path / "history.json"
  try:
    assert _wait_for(lambda: history.exists() and json.load(open(history)), chief), "no epoch finished"
    worker.kill()
    worker.wait()
    _, err = chief.communicate(timeout=240)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert chief.returncode == 1 and "Traceback" not in err, err[-3000:]
  assert "a worker of the multi-worker run stopped" in err and "resume from the last finished epoch" in err


def test_a_binary_exits_fast_but_completely(tmp_path):
  """`flags.run_main` ends without the interpreter's teardown (flags._exit) and still does what an
  exit does: a thread pool's idle workers stopped (not waited on forever), atexit handlers run,
  buffered output flushed, the exit status kept."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  script = tmp_path / "binary.py"
  script.write_text(
      "import atexit, concurrent.futures, sys\n"
      "from sqznet_tf import flags\n"
      "def main(argv):\n"
      "  pool = concurrent.futures.ThreadPoolExecutor(2)\n"
      "  pool.submit(print, 'worked', flush=True).result()\n"
      "  atexit.register(lambda: print('atexit ran'))\n"
      "  sys.stdout.write('buffered, never flushed by main')\n"
      "  return 3\n"
      "flags.run_main(main)\n")
  r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
  assert r.returncode == 3, r.stderr[-2000:]
  assert r.stdout.splitlines() == ["worked", "buffered, never flushed by mainatexit ran"], r.stdout
