"""The forked binaries (tests/tools/forkserver.py) see what a fresh `python SCRIPT` process sees."""

import json
import signal
import time

import pytest

from tests.tools import run_script, start_script

PROBE = """
import json, os, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sqznet_tf._keras import keras, tf
import keras_tuner
print(json.dumps({"argv": sys.argv[1:], "main": __name__, "legacy": os.environ.get("TF_USE_LEGACY_KERAS"),
                  "tf_keras": tf.keras.Model is keras.Model,
                  "kt_keras": keras_tuner.src.backend.keras.Model is keras.Model,
                  "keras": keras.__name__, "tmp": tempfile.gettempdir(), "cwd": os.getcwd(),
                  "probe": os.environ.get("PROBE"), "sum": float(tf.reduce_sum(tf.ones((3, 3))))}))
print("to stderr", file=sys.stderr)
if len(sys.argv) > 1 and sys.argv[1] == "raise":
  raise ValueError("from the probe")
if len(sys.argv) > 1 and sys.argv[1] == "exit":
  sys.exit(3)
if len(sys.argv) > 1 and sys.argv[1] == "wait":
  import time
  time.sleep(60)
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
  folder = tmp_path_factory.mktemp("probe") / "tools"  # a folder one level under a "repository"
  folder.mkdir()
  path = folder / "probe.py"
  path.write_text(PROBE)
  return path


def _both(monkeypatch, probe, *args, env=None):
  forked = run_script(probe, *args, env=env, timeout=300)
  monkeypatch.setenv("SQZNET_TEST_FORK", "0")
  plain = run_script(probe, *args, env=env, timeout=300)
  monkeypatch.delenv("SQZNET_TEST_FORK")
  return forked, plain


def test_a_forked_binary_sees_what_a_fresh_process_sees(monkeypatch, probe, tmp_path):
  monkeypatch.chdir(tmp_path)
  forked, plain = _both(monkeypatch, probe, "a b", "--x=1", env={"PROBE": "yes", "TMPDIR": str(tmp_path)})
  assert forked.returncode == plain.returncode == 0, (forked.stderr[-2000:], plain.stderr[-2000:])
  f, p = (json.loads(r.stdout.splitlines()[-1]) for r in (forked, plain))
  assert f == p
  assert f["argv"] == ["a b", "--x=1"] and f["main"] == "__main__" and f["probe"] == "yes"
  assert f["legacy"] == "1" and f["tf_keras"] and f["kt_keras"] and f["keras"] == "tf_keras"
  assert f["tmp"] == str(tmp_path) and f["cwd"] == str(tmp_path) and f["sum"] == 9.0
  assert forked.stderr.strip().endswith("to stderr")


def test_exit_statuses_and_tracebacks_are_the_interpreters(monkeypatch, probe):
  forked, plain = _both(monkeypatch, probe, "raise")
  assert forked.returncode == plain.returncode == 1
  for r in (forked, plain):
    assert "Traceback" in r.stderr and r.stderr.strip().endswith("ValueError: from the probe")
  # sys.exit(3): the interpreter exits 3 (no fresh process to compare: it would import TensorFlow
  # for 10-15 s of CPU to show CPython's documented behaviour).
  assert run_script(probe, "exit", timeout=300).returncode == 3


def test_signals_reach_the_forked_binary(probe, tmp_path):
  out = tmp_path / "out"
  proc = start_script(probe, "wait", stdout=out)
  deadline = time.monotonic() + 300
  while proc.poll() is None and time.monotonic() < deadline and not (out.exists() and "sum" in out.read_text()):
    time.sleep(0.05)  # until it sleeps
  assert proc.poll() is None
  proc.send_signal(signal.SIGINT)  # a KeyboardInterrupt, as at a terminal
  _, err = proc.communicate(timeout=120)
  # As CPython: the traceback, then the process ends by the signal itself.
  assert proc.returncode == -signal.SIGINT and err.strip().endswith("KeyboardInterrupt"), err[-2000:]
  proc = start_script(probe, "wait")
  proc.kill()
  assert proc.wait(timeout=60) == -signal.SIGKILL
