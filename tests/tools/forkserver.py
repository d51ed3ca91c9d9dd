"""Runs the binaries in tools/ as processes forked from one that has already imported TensorFlow.

Importing TensorFlow, tf_keras and tfmot is 4-10 s of every binary's run and the same in every run,
so the suite pays it once per pytest worker: a server process imports them (and nothing runs a
TensorFlow op there, so no thread pool exists yet) and forks one child per binary run. The child is
the binary as a user runs it from there on: `sys.argv`, the environment and the working directory
are the caller's, the script runs as `__main__`, its stdout/stderr are real file descriptors, its
exit status is what the interpreter would return (SystemExit, a traceback and 1 on an uncaught
exception), and atexit handlers run.

What a preloaded import cannot show (a binary that fails before importing TensorFlow, an
environment that changes how TensorFlow imports) runs as a plain subprocess: `run_tool` decides.

Protocol on the server's stdin/stdout, one JSON object per line: request {"argv", "env", "cwd",
"stdout", "stderr"} (the last two are file paths), answered at once with {"pid": N}; when a child
exits, {"pid": N, "rc": N}. Children run concurrently (a chief and its workers).
"""

import atexit
import json
import os
import runpy
import signal
import sys
import tempfile
import traceback

# sqznet_tf._keras first, as in the binaries: it picks Keras 2 before TensorFlow is imported.
PRELOAD = ("sqznet_tf._keras", "sqznet_tf.flags", "tensorflow", "tf_keras", "tensorflow_model_optimization", "numpy",
           "PIL.Image", "absl.app", "absl.flags", "absl.logging", "sqznet_tf.loading", "sqznet_tf.evaluation",
           "sqznet_tf.training", "sqznet_tf.compression", "sqznet_tf.pruning",
           # Imported by the binaries' own code later on, each 1-3 s of a run: keras-tuner (after
           # sqznet_tf._keras, so that it takes Keras 2, as in the binaries) and pyplot (the package
           # picks the Agg backend before drawing, which still works after this import).
           "keras_tuner", "matplotlib.pyplot")


_PRELOAD_ENV = {}  # what importing PRELOAD set in os.environ (sqznet_tf._keras: TF_USE_LEGACY_KERAS=1)


def _child(req):
  """In the forked process: become the binary; never returns."""
  code, interrupted = 1, False
  try:
    os.setsid()
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    for path, target in ((req["stdout"], 1), (req["stderr"], 2)):
      out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
      os.dup2(out, target)
      os.close(out)
    sys.stdin = open(0, "r", closefd=False)  # pylint: disable=consider-using-with
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # pylint: disable=consider-using-with
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # pylint: disable=consider-using-with
    os.environ.clear()
    os.environ.update(_PRELOAD_ENV)  # as the binary's own imports would have set them
    os.environ.update(req["env"])
    tempfile.tempdir = None  # as a fresh process: $TMPDIR is read again
    os.chdir(req["cwd"])
    script = req["argv"][0]
    sys.argv = list(req["argv"])
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    try:
      runpy.run_path(script, run_name="__main__")
      code = 0
    except SystemExit as e:
      if e.code is None:
        code = 0
      elif isinstance(e.code, int):
        code = e.code
      else:
        print(e.code, file=sys.stderr)
        code = 1
    except BaseException as e:  # pylint: disable=broad-except  (the interpreter's own behaviour)
      sys.excepthook(*sys.exc_info())
      code, interrupted = 1, isinstance(e, KeyboardInterrupt)
    try:
      atexit._run_exitfuncs()  # pylint: disable=protected-access
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except Exception:  # pylint: disable=broad-except
        pass
  finally:
    if interrupted:  # as CPython: an uncaught KeyboardInterrupt ends the process by SIGINT
      signal.signal(signal.SIGINT, signal.SIG_DFL)
      os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)  # pylint: disable=protected-access


def serve():
  """Forks a child per request line as soon as it arrives; reports each child's exit as it happens."""
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  # Children inherit it: SIGINT raises KeyboardInterrupt, as at a terminal, even where this server
  # was started with SIGINT ignored (a shell's background job).
  signal.signal(signal.SIGINT, signal.default_int_handler)
  import importlib  # pylint: disable=g-import-not-at-top
  import select  # pylint: disable=g-import-not-at-top
  before = dict(os.environ)
  for name in PRELOAD:
    importlib.import_module(name)
  _PRELOAD_ENV.update({k: v for k, v in os.environ.items() if before.get(k) != v})
  # What the imports made is never garbage: kept out of the collector's passes in every child (a
  # collection no longer walks the ~300,000 objects of TensorFlow's modules; 1.5 -> 0.8 s of GC in a
  # 34 s DSD run) and out of its writes to them, so the children share those pages with the server.
  import gc  # pylint: disable=g-import-not-at-top
  gc.collect()
  gc.freeze()
  reply = sys.stdout
  print(json.dumps({"ready": True}), file=reply, flush=True)
  children, requests = set(), sys.stdin.fileno()
  pending = b""
  try:
    while True:
      if select.select([requests], [], [], 0.02)[0]:
        chunk = os.read(requests, 65536)
        if not chunk:
          return  # the tests are over (or their process died): the finally clause ends the children
        pending += chunk
        while b"\n" in pending:
          line, pending = pending.split(b"\n", 1)
          pid = os.fork()
          if pid == 0:
            _child(json.loads(line))
          children.add(pid)
          print(json.dumps({"pid": pid}), file=reply, flush=True)
      for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
          children.discard(pid)
          print(json.dumps({"pid": pid, "rc": os.waitstatus_to_exitcode(status)}), file=reply, flush=True)
  finally:  # each child leads its own process group: end them with the server (Ctrl-C included)
    for pid in children:
      try:
        os.killpg(pid, signal.SIGKILL)
      except OSError:
        pass


if __name__ == "__main__":
  serve()
