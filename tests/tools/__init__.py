"""The binaries in tools/ run as a user runs them: processes with real flags, argv and exit status.

`run_tool` / `run_script` / `start_script` fork them from a server that has already imported
TensorFlow (tests/tools/forkserver.py, one per pytest worker), which spares every run the same 4-10 s
of imports; with an environment that changes how Python or TensorFlow import (PYTHONPATH, TF_*), a
`preexec_fn`, or SQZNET_TEST_FORK=0, they run a plain `python SCRIPT` subprocess instead.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading

from tests.conftest import REPO

_IMPORT_TIME_ENV = ("PYTHONPATH", "PYTHONHOME", "TF_ENABLE_ONEDNN_OPTS", "TF_USE_LEGACY_KERAS", "CUDA_VISIBLE_DEVICES",
                    "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")


class _ForkServer:
  """One server per process (an xdist worker); a reader thread collects the exit statuses."""

  def __init__(self):
    self._proc = None
    self._lock = threading.Lock()
    self._cond = threading.Condition()
    self._pids = []  # answers to requests, in order
    self._exits = {}  # pid -> exit status
    self._dead = False

  def _start(self):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    self._proc = subprocess.Popen([sys.executable, "-m", "tests.tools.forkserver"], cwd=str(REPO), env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, bufsize=1)
    if json.loads(self._proc.stdout.readline() or "{}").get("ready") is not True:
      raise RuntimeError("the fork server of the tests did not start")
    self._dead = False
    threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()

  def _read(self, proc):
    for line in proc.stdout:
      msg = json.loads(line)
      with self._cond:
        if "rc" in msg:
          self._exits[msg["pid"]] = msg["rc"]
        else:
          self._pids.append(msg["pid"])
        self._cond.notify_all()
    with self._cond:
      self._dead = True
      self._cond.notify_all()

  def fork(self, argv, env, cwd, stdout, stderr) -> int:
    with self._lock:
      if self._proc is None or self._proc.poll() is not None:
        self._start()
      req = {"argv": argv, "env": env, "cwd": cwd, "stdout": stdout, "stderr": stderr}
      self._proc.stdin.write(json.dumps(req) + "\n")
      self._proc.stdin.flush()
      with self._cond:
        self._cond.wait_for(lambda: self._pids or self._dead)
        if not self._pids:
          raise RuntimeError("the fork server of the tests died")
        return self._pids.pop(0)

  def wait(self, pid, timeout=None):
    """The exit status of `pid`, or None after `timeout` seconds."""
    with self._cond:
      self._cond.wait_for(lambda: pid in self._exits or self._dead, timeout)
      if pid not in self._exits and self._dead:
        raise RuntimeError("the fork server of the tests died")
      return self._exits.get(pid)


_SERVER = _ForkServer()


class Forked:
  """A binary forked from the server, used as a `subprocess.Popen` with stdout and stderr captured."""

  def __init__(self, argv, env, stdout=None, stderr=None):
    self.args = [sys.executable, *argv]
    self._tmp = tempfile.TemporaryDirectory(prefix="sqznet-tool-")  # pylint: disable=consider-using-with
    self._out, self._err = (str(given) if given else os.path.join(self._tmp.name, n)
                            for given, n in ((stdout, "stdout"), (stderr, "stderr")))
    self.pid = _SERVER.fork(argv, env, os.getcwd(), self._out, self._err)
    self.returncode = None

  def poll(self):
    if self.returncode is None:
      self.returncode = _SERVER.wait(self.pid, 0)
    return self.returncode

  def wait(self, timeout=None):
    if self.returncode is None:
      self.returncode = _SERVER.wait(self.pid, timeout)
      if self.returncode is None:
        raise subprocess.TimeoutExpired(self.args, timeout)
    return self.returncode

  def send_signal(self, sig):
    if self.poll() is None:
      try:
        os.kill(self.pid, sig)
      except ProcessLookupError:
        pass

  def kill(self):
    """SIGKILL to the binary and every process it started (its own process group)."""
    if self.poll() is None:
      for kill in (os.killpg, os.kill):  # os.kill: before the child has made its group
        try:
          kill(self.pid, signal.SIGKILL)
          break
        except ProcessLookupError:
          pass

  def communicate(self, timeout=None):
    """Waits for the exit; returns (stdout, stderr) as text."""
    self.wait(timeout)
    outs = []
    for path in (self._out, self._err):
      with open(path, encoding="utf-8", errors="replace") as f:
        outs.append(f.read())
    self._tmp.cleanup()
    return tuple(outs)


def _forkable(env) -> bool:
  return os.environ.get("SQZNET_TEST_FORK", "1") != "0" and not any(k in (env or {}) for k in _IMPORT_TIME_ENV)


def start_script(script, *args, env=None, stdout=None, stderr=None):
  """Starts the Python script `script` with `args`; a Popen-like handle. Its stdout/stderr go to the
  files `stdout`/`stderr` when given, else they are captured as text (`communicate()`)."""
  e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
  argv = [str(script), *map(str, args)]
  if _forkable(env):
    return Forked(argv, e, stdout, stderr)
  files = [open(f, "w", encoding="utf-8") if f else subprocess.PIPE for f in (stdout, stderr)]  # noqa: SIM115
  try:
    # SIGINT at its default, as at a terminal (a shell's background job, as CI may be, would start
    # the process with SIGINT ignored, and Python then installs no KeyboardInterrupt handler).
    return subprocess.Popen([sys.executable, *argv], stdout=files[0], stderr=files[1], text=True, env=e,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  finally:
    for f in files:
      if f is not subprocess.PIPE:
        f.close()


def run_script(script, *args, env=None, timeout=900):
  """Runs the Python script `script` with `args` as a user would; returns the CompletedProcess."""
  proc = start_script(script, *args, env=env)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
    raise subprocess.TimeoutExpired(proc.args, timeout, output=out, stderr=err)  # pylint: disable=raise-missing-from
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def tool_path(tool):
  return REPO / "tools" / f"{tool}.py"


def run_tool(tool, *args, env=None, timeout=900):
  """Runs tools/<tool>.py with `args`; returns the CompletedProcess (text stdout/stderr)."""
  return run_script(tool_path(tool), *args, env=env, timeout=timeout)


def start_tool(tool, *args, env=None, stdout=None, stderr=None):
  """Starts tools/<tool>.py with `args` (see `start_script`)."""
  return start_script(tool_path(tool), *args, env=env, stdout=stdout, stderr=stderr)


def last_json(stdout):
  """The JSON object a binary prints as the last line of stdout (--format=json)."""
  return json.loads(stdout.strip().splitlines()[-1])


_HANDED_OUT = set()  # ports free_ports gave in this process: never given twice


def _port_range():
  """The ports this pytest worker draws from: below the kernel's ephemeral range (where bind(0) and
  outgoing connections take theirs, so no other process is handed one of these) and split between
  the xdist workers (so two workers' servers never meet on one port). None where there is no room."""
  try:
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
      low = int(f.read().split()[0])
  except (OSError, ValueError, IndexError):
    return None
  first, last = 20000, min(low, 40000) - 1
  if last - first < 2000:
    return None
  count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
  index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0) % count
  size = (last - first + 1) // count
  return range(first + index * size, first + (index + 1) * size)


def free_ports(n=1):
  """`n` distinct TCP ports on 127.0.0.1 that were free a moment ago (all held open while chosen).

  Drawn from this worker's own range (`_port_range`) where there is one: a port from bind(0) goes
  back to the kernel's pool when closed, and another process (another test's server, an outgoing
  connection) could take it before the test's server binds it; gRPC servers would even share a port
  silently (SO_REUSEPORT), a keras-tuner chief and another server among them.
  """
  socks = []
  try:
    own = _port_range() or range(0)
    for port in random.sample(own, len(own)):
      if len(socks) == n:
        break
      if port in _HANDED_OUT:
        continue
      s = socket.socket()
      try:
        s.bind(("127.0.0.1", port))
      except OSError:
        s.close()
        continue
      socks.append(s)
    while len(socks) < n:  # no range of our own (or it is full): the kernel's choice
      s = socket.socket()
      s.bind(("127.0.0.1", 0))
      socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    _HANDED_OUT.update(ports)
    return ports
  finally:
    for s in socks:
      s.close()
