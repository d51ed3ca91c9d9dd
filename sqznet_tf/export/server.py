"""An export root served over HTTP with TF Serving's REST API, on KServe's Python ModelServer.

`serve(cfg)` loads the highest integer version of a TF Serving model folder (as `sqznet-export`
writes it) into a session the way TF Serving runs it (`check.ServingSession`: the signatures, the
graph's own checks and messages), replays the version's warm-up requests, and only then starts
KServe's ModelServer (FastAPI on uvicorn) with one model, `cfg.model_name`. KServe's V1 protocol
is TF Serving's REST API; the HTTP side is KServe's, this module adds the TF Serving parts:

  POST /v1/models/<name>:predict    {"instances": [...]} (row format) or {"inputs": ...} (columnar),
                                    {"b64": "..."} for bytes, "signature_name" (default
                                    serving_default); answers {"predictions": [...]} or
                                    {"outputs": {...}}. Errors are {"error": "..."}: 400 for a bad
                                    request (the graph's message), 404 for an unknown model, 413
                                    for a body over `max_request_bytes`.
  GET  /v1/models/<name>            TF Serving's status body ({"model_version_status": [...]})
  GET  /v1/models/<name>/metadata   the served version's signature defs, as TF Serving's
  GET  /metrics                     KServe's Prometheus metrics (latency per request stage)

Versions, as TF Serving: every `poll_seconds` the root is listed; when its highest version is not
the one served (a new one was written, or the served one removed), that version is loaded and
warmed up beside the old one, requests switch to it, and the old session is closed once its last
request has finished. A version that fails to load or warm up is reported and skipped; the old
one keeps serving.

Batching (off by default, as in TF Serving): concurrent requests to one signature with the same
item shape join one session run of at most `max_batch_size` items, waiting at most
`batch_timeout_micros` for the batch to fill. When a joined run fails, its requests run one by one,
so only a bad request gets the error.

Shutdown: SIGTERM or SIGINT stops accepting connections, lets running requests finish (up to
`grace_period` seconds), closes the sessions and returns.
"""

import asyncio
import dataclasses
import json
import logging
import os
import re
import socket
import sys
import threading
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from sqznet_tf.errors import SqznetError
from sqznet_tf.export import check, serving

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass
class ServeConfig:
  """What `serve` serves and how (sqznet-serve's flags)."""
  export_dir: str
  model_name: Optional[str] = None  # default: the export root's folder name
  port: int = 8501  # TF Serving's REST port
  version: Optional[int] = None  # serve this version only; None: the highest, followed while running
  poll_seconds: float = 1.0  # how often the root is looked at for new versions; 0: never
  enable_batching: bool = False
  max_batch_size: int = 32
  batch_timeout_micros: int = 1000
  max_request_bytes: int = 32 << 20
  grace_period: int = 30  # seconds running requests get to finish on SIGTERM
  threads: Optional[int] = None  # request threads running sessions (KServe's default: cores + 4, at most 32)

  def __post_init__(self):
    self.export_dir = os.path.abspath(self.export_dir)
    if self.model_name is None:
      self.model_name = os.path.basename(self.export_dir.rstrip(os.sep))

  def validate(self) -> None:
    if not os.path.isdir(self.export_dir):
      raise SqznetError(f"export_dir={self.export_dir!r} is not a folder; expected a TF Serving model folder "
                        "(integer version folders, as sqznet-export writes)")
    if os.path.exists(os.path.join(self.export_dir, "saved_model.pb")):
      raise SqznetError(f"export_dir={self.export_dir!r} is a version folder; give the folder above it "
                        f"({os.path.dirname(self.export_dir)}), as TF Serving's --model_base_path")
    have = servable_versions(self.export_dir)
    if not have:
      raise SqznetError(f"export_dir={self.export_dir!r} holds no SavedModel version (integer folders with "
                        "saved_model.pb); write one with sqznet-export")
    if self.version is not None and self.version not in have:
      raise SqznetError(f"version={self.version} is not in {self.export_dir}; it has {', '.join(map(str, have))}")
    if not NAME.match(self.model_name or ""):
      raise SqznetError(f"model_name={self.model_name!r} is not accepted; expected letters, digits, '_', '.' "
                        "or '-' (it is a URL path segment)")
    checks = [("port", self.port, 1, 65535), ("max_batch_size", self.max_batch_size, 1, 1 << 16),
              ("batch_timeout_micros", self.batch_timeout_micros, 0, 10_000_000),
              ("max_request_bytes", self.max_request_bytes, 1024, 1 << 31), ("grace_period", self.grace_period, 0, 3600)]
    for name, value, lo, hi in checks:
      if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SqznetError(f"{name}={value!r} is not accepted; expected an integer in [{lo}, {hi}]")
    if not 0 <= self.poll_seconds <= 86400:
      raise SqznetError(f"poll_seconds={self.poll_seconds!r} is not accepted; expected 0 (never) to 86400")
    if self.threads is not None and not 1 <= self.threads <= 256:
      raise SqznetError(f"threads={self.threads!r} is not accepted; expected 1 to 256")


def servable_versions(export_dir: str) -> List[int]:
  """The integer version folders under `export_dir` that hold a SavedModel, sorted (TF Serving's)."""
  return [v for v in serving.versions(export_dir)
          if os.path.exists(os.path.join(export_dir, str(v), "saved_model.pb"))]


def check_port_free(port: int) -> None:
  """SqznetError when `port` cannot be bound (in use), before anything slow is loaded."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(("0.0.0.0", port))
    except OSError as e:
      raise SqznetError(f"port={port} cannot be used ({e.strerror}); pick a free one") from None


# ---------------------------------------------------------------------------------------------
# Versions


class LoadedVersion:
  """One version folder in a session, with a count of the requests running on it."""

  def __init__(self, version: int, path: str):
    self.version, self.path = version, path
    self.session = check.ServingSession(path)
    self.inflight = 0
    self._idle = threading.Condition()

  def release(self) -> None:
    with self._idle:
      self.inflight -= 1
      self._idle.notify_all()

  def close_when_idle(self, timeout: Optional[float] = None) -> None:
    with self._idle:
      self._idle.wait_for(lambda: self.inflight == 0, timeout)
    self.session.close()


class Servable:
  """The versions of one export root: the one served, and the switch to another (module docstring)."""

  def __init__(self, cfg: ServeConfig, log: Callable[[str], None] = lambda s: None):
    self.cfg, self.log = cfg, log
    self.current: Optional[LoadedVersion] = None
    self.warmup: dict = {}
    self._lock = threading.Lock()
    self._failed: Dict[int, float] = {}  # version -> folder mtime when it failed (retried once rewritten)
    self._stop = threading.Event()
    self._poller: Optional[threading.Thread] = None

  def target(self) -> Optional[int]:
    if self.cfg.version is not None:
      return self.cfg.version
    have = servable_versions(self.cfg.export_dir)
    return have[-1] if have else None

  def refresh(self) -> bool:
    """Loads the version that should be served if it is not the one served; True when it switched."""
    v = self.target()
    if v is None or (self.current is not None and self.current.version == v):
      return False
    path = os.path.join(self.cfg.export_dir, str(v))
    try:
      mtime = os.path.getmtime(path)
    except OSError:
      return False
    if self._failed.get(v) == mtime:
      return False
    try:
      loaded = LoadedVersion(v, path)
    except SqznetError as e:
      self._failed[v] = mtime
      self.log(f"version {v} not served: {e}")
      return False
    warm = check.replay_warmup(loaded.session, path)
    if warm["failed"]:
      loaded.session.close()
      self._failed[v] = mtime
      self.log(f"version {v} not served: {warm['failed']} of {warm['requests']} warm-up requests fail: "
               f"{warm['first_error']}")
      return False
    with self._lock:
      old, self.current, self.warmup = self.current, loaded, warm
    self.log(f"serving version {v} of {self.cfg.model_name} ({warm['requests']} warm-up requests replayed)"
             + (f"; version {old.version} retired" if old else ""))
    if old is not None:
      threading.Thread(target=old.close_when_idle, daemon=True).start()
    return True

  def acquire(self) -> LoadedVersion:
    """The version to run a request on; `release()` it when the request is done."""
    with self._lock:
      loaded = self.current
      loaded.inflight += 1
    return loaded

  def predict(self, signature: str, inputs: Dict[str, np.ndarray]) -> Tuple[int, Dict[str, np.ndarray]]:
    loaded = self.acquire()
    try:
      return loaded.version, loaded.session.predict(signature, inputs)
    finally:
      loaded.release()

  def start_polling(self) -> None:
    if self.cfg.poll_seconds <= 0 or self.cfg.version is not None:
      return

    def poll():
      while not self._stop.wait(self.cfg.poll_seconds):
        try:
          self.refresh()
        except Exception as e:  # pylint: disable=broad-except  (the poll thread must outlive a bad folder)
          self.log(f"looking for new versions failed: {type(e).__name__}: {e}")

    self._poller = threading.Thread(target=poll, name="sqznet-serve-poll", daemon=True)
    self._poller.start()

  def close(self) -> None:
    self._stop.set()
    if self._poller is not None:
      self._poller.join(timeout=5)
    if self.current is not None:
      self.current.close_when_idle(timeout=self.cfg.grace_period)


# ---------------------------------------------------------------------------------------------
# Batching


class Batcher:
  """Joins concurrent requests into one session run (module docstring); runs on the event loop."""

  def __init__(self, run: Callable, max_batch_size: int, timeout_micros: int):
    self.run, self.max, self.timeout = run, max_batch_size, timeout_micros / 1e6
    self._pending: Dict[tuple, list] = {}
    self.batches = 0  # session runs made, and requests they answered (for the logs and tests)
    self.requests = 0

  async def submit(self, signature: str, inputs: Dict[str, np.ndarray]):
    loop = asyncio.get_running_loop()
    sizes = {len(a) if np.ndim(a) else -1 for a in inputs.values()}
    n = sizes.pop() if len(sizes) == 1 else -1
    if n < 1 or n >= self.max:  # not batchable, or a full batch already
      return await loop.run_in_executor(None, self.run, signature, inputs)
    key = (signature,) + tuple((k, a.dtype.str, a.shape[1:]) for k, a in sorted(inputs.items()))
    future = loop.create_future()
    group = self._pending.setdefault(key, [])
    group.append((inputs, n, future))
    if sum(g[1] for g in group) >= self.max:
      self._flush(key, group)
    elif len(group) == 1:
      loop.call_later(self.timeout, self._flush, key, group)
    return await future

  def _flush(self, key, group) -> None:
    if self._pending.get(key) is group:
      del self._pending[key]
      asyncio.ensure_future(self._run(key[0], group))

  async def _run(self, signature: str, group: list) -> None:
    loop = asyncio.get_running_loop()
    self.batches += 1
    self.requests += len(group)
    if len(group) > 1:
      joined = {k: np.concatenate([g[0][k] for g in group]) for k in group[0][0]}
      try:
        version, out = await loop.run_in_executor(None, self.run, signature, joined)
      except check.ServingError:
        pass  # run them one by one below: only the bad request gets its error
      else:
        start = 0
        for _, n, future in group:
          if not future.done():
            future.set_result((version, {k: v[start:start + n] for k, v in out.items()}))
          start += n
        return
    for inputs, _, future in group:
      try:
        result = await loop.run_in_executor(None, self.run, signature, inputs)
      except Exception as e:  # pylint: disable=broad-except  (handed to the request that caused it)
        if not future.done():
          future.set_exception(e)
      else:
        if not future.done():
          future.set_result(result)


# ---------------------------------------------------------------------------------------------
# KServe


def import_kserve():
  """KServe, imported with sys.argv hidden: its model_server module parses the process's arguments
  at import (argparse, which takes abbreviations), and the binary's flags are not for it."""
  argv = sys.argv
  sys.argv = argv[:1]
  try:
    import kserve  # pylint: disable=g-import-not-at-top
    from kserve import model_server  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SqznetError(f"serving needs KServe ({e}); install the extra: pip install 'sqznet_tf[serve]'") from None
  finally:
    sys.argv = argv
  return kserve, model_server


class _OneLine(logging.Filter):
  """KServe logs every refused request with its traceback; a client's mistake is one line."""

  def __init__(self, kinds):
    super().__init__()
    self.kinds = kinds

  def filter(self, record):
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, self.kinds):
      record.msg, record.args, record.exc_info = f"request refused: {exc}", (), None
    return True


def quiet_logs() -> None:
  """One log line per refused request; no deprecation notes from FastAPI about KServe's responses."""
  from kserve import errors  # pylint: disable=g-import-not-at-top
  logging.getLogger("kserve").addFilter(_OneLine((errors.InvalidInput, errors.ModelNotFound)))
  warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")


def make_model(kserve, servable: Servable, batcher: Optional[Batcher]):
  """The KServe model that answers TF Serving REST Predict bodies from `servable`."""
  from kserve.errors import InvalidInput  # pylint: disable=g-import-not-at-top

  class TFServingModel(kserve.Model):
    """TF Serving's REST Predict on a `Servable`."""

    def load(self) -> bool:
      self.ready = servable.current is not None
      return self.ready

    async def preprocess(self, payload, headers=None):
      if isinstance(payload, (bytes, bytearray)):  # sent without a JSON content type (curl -d)
        try:
          payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
          raise InvalidInput(f"Malformed JSON: {e}") from None
      if not isinstance(payload, dict):
        raise InvalidInput(f"the request body must be a JSON object with \"instances\" or \"inputs\"; got "
                           f"{type(payload).__name__}")
      return payload

    async def predict(self, payload, headers=None):
      name = payload.get("signature_name", "serving_default")
      if not isinstance(name, str):
        raise InvalidInput(f"\"signature_name\" must be a string; got {name!r}")
      if "instances" in payload and "inputs" in payload:
        raise InvalidInput("send either \"instances\" (row format) or \"inputs\" (columnar), not both")
      signatures = servable.current.session.signatures
      sig = signatures.get(name)
      if sig is None:
        raise InvalidInput(f"Serving signature name: \"{name}\" not found in signature def; known: "
                           f"{', '.join(sorted(signatures))}")
      try:
        inputs = check.rest_body_to_inputs(payload, sig)
        if batcher is not None:
          _, outputs = await batcher.submit(name, inputs)
        else:
          _, outputs = await asyncio.get_running_loop().run_in_executor(None, servable.predict, name, inputs)
      except check.ServingError as e:
        raise InvalidInput(e.message) from None
      return check.rest_response(outputs, columnar="instances" not in payload)

  return TFServingModel(servable.cfg.model_name)


class BodyLimit:
  """ASGI middleware: a request body over `max_bytes` gets 413 and {"error": ...}, unread."""

  def __init__(self, app, max_bytes: int):
    self.app, self.max = app, max_bytes

  async def _reject(self, send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    length = dict(scope["headers"]).get(b"content-length")
    too_big = f"the request body is over the server's limit of {self.max} bytes (--max_request_bytes)"
    if length is not None:
      try:
        n = int(length)
      except ValueError:
        return await self._reject(send, 400, f"Content-Length {length.decode(errors='replace')!r} is not a number")
      if n > self.max:
        return await self._reject(send, 413, f"{too_big}: Content-Length is {n}")
      return await self.app(scope, receive, send)
    # No length (chunked): read up to the limit, then hand the body on.
    chunks, size, more = [], 0, True
    while more:
      message = await receive()
      if message["type"] == "http.disconnect":
        return None
      chunk = message.get("body", b"")
      size += len(chunk)
      if size > self.max:
        return await self._reject(send, 413, too_big)
      chunks.append(chunk)
      more = message.get("more_body", False)
    data, given = b"".join(chunks), False

    async def replay():
      nonlocal given
      if not given:
        given = True
        return {"type": "http.request", "body": data, "more_body": False}
      return await receive()

    return await self.app(scope, replay, send)


def add_routes(app, servable: Servable) -> None:
  """TF Serving's model status and metadata calls (registered before KServe's own routes)."""
  from fastapi.responses import JSONResponse  # pylint: disable=g-import-not-at-top
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  name = servable.cfg.model_name

  def unknown(model_name):
    return JSONResponse(status_code=404, content={"error": f"Servable not found for request: Latest({model_name}); "
                                                           f"this server serves {name!r}"})

  async def status(model_name: str):
    if model_name != name:
      return unknown(model_name)
    v = servable.current.version
    return {"model_version_status": [{"version": str(v), "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}

  async def metadata(model_name: str):
    if model_name != name:
      return unknown(model_name)
    current = servable.current
    sigs = {k: json_format.MessageToDict(v) for k, v in current.session.signatures.items()}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(current.version)},
            "metadata": {"signature_def": {"signature_def": sigs}}}

  app.add_api_route("/v1/models/{model_name}", status, methods=["GET"])
  app.add_api_route("/v1/models/{model_name}/metadata", metadata, methods=["GET"])


def serve(cfg: ServeConfig, log: Callable[[str], None] = lambda s: None) -> None:
  """Serves `cfg.export_dir` until SIGTERM/SIGINT (module docstring). Bad settings: SqznetError."""
  cfg.validate()
  check_port_free(cfg.port)
  kserve, model_server = import_kserve()
  quiet_logs()
  servable = Servable(cfg, log)
  servable.refresh()
  if servable.current is None:
    raise SqznetError(f"no version of {cfg.export_dir} could be served (see the lines above)")
  batcher = Batcher(servable.predict, cfg.max_batch_size, cfg.batch_timeout_micros) if cfg.enable_batching else None
  model = make_model(kserve, servable, batcher)
  model.load()
  app = model_server.app
  app.add_middleware(BodyLimit, max_bytes=cfg.max_request_bytes)
  add_routes(app, servable)
  servable.start_polling()
  log(f"REST API on http://0.0.0.0:{cfg.port}/v1/models/{cfg.model_name} (:predict, /metadata; /metrics)"
      + (f"; batching up to {cfg.max_batch_size} items, {cfg.batch_timeout_micros} us" if batcher else ""))
  server = model_server.ModelServer(http_port=cfg.port, enable_grpc=False, workers=1, grace_period=cfg.grace_period,
                                    enable_latency_logging=False, max_asyncio_workers=cfg.threads)
  try:
    server.start([model])
  finally:
    servable.close()
    log("stopped" + (f"; {batcher.requests} requests in {batcher.batches} session runs" if batcher else ""))
