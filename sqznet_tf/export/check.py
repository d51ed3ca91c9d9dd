"""Runs an exported SavedModel the way TF Serving's Predict API does, without the server.

TF Serving loads a version folder into a session (tag "serve"), looks a request's signature up
in the MetaGraph, checks the input keys and dtypes against it, feeds the tensors to the
signature's input names and fetches its outputs. `ServingSession` does the same with TensorFlow's
own session API, so the graph that runs here is the graph a server runs, errors included: a bad
request comes back as a `ServingError` with the gRPC status name (INVALID_ARGUMENT, ...) and
the message a client would read, and the session keeps serving afterwards.

`rest_body_to_inputs` turns a TF Serving REST body ({"signature_name", "instances"} or
{"inputs"}, with {"b64": ...} for bytes) into input arrays, as the REST front end does.
"""

import base64
import logging
import os
import re
from typing import Dict, Optional

import numpy as np
from tensorflow.core.framework.tensor_pb2 import TensorProto

from sqznet_tf._keras import tf
from sqznet_tf.errors import SqznetError
from sqznet_tf.export import serving

_NODE_LINE = re.compile(r"\s*\[\[\{\{node .*\}\}\]\]")


class ServingError(Exception):
  """A request the server would answer with an error status."""

  def __init__(self, code: str, message: str):
    super().__init__(f"{code}: {message}")
    self.code = code
    self.message = message


def _readable(message: str) -> str:
  """The op error's text without TensorFlow's "Graph execution error" banner and node lines."""
  lines = [l for l in message.splitlines() if l.strip() and not _NODE_LINE.match(l)
           and l.strip() != "Graph execution error:" and not l.startswith("Detected at node")]
  return " ".join(l.strip() for l in lines)


_CODES = {tf.errors.InvalidArgumentError: "INVALID_ARGUMENT", tf.errors.OutOfRangeError: "OUT_OF_RANGE",
          tf.errors.ResourceExhaustedError: "RESOURCE_EXHAUSTED", tf.errors.FailedPreconditionError:
          "FAILED_PRECONDITION", tf.errors.UnimplementedError: "UNIMPLEMENTED", tf.errors.NotFoundError: "NOT_FOUND"}


class ServingSession:
  """A loaded version folder answering Predict requests (see the module docstring)."""

  def __init__(self, version_dir: str):
    self.graph = tf.Graph()
    self.session = tf.compat.v1.Session(graph=self.graph)
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)  # the session loader is TF Serving's path, "deprecated" for Python users
    try:
      meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], version_dir)
    except (OSError, RuntimeError, tf.errors.OpError) as e:
      raise SqznetError(f"cannot load SavedModel {version_dir!r}: {str(e).strip().splitlines()[0][:200]}") from None
    finally:
      tf_log.setLevel(level)
    self.signatures = {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}

  def close(self):
    self.session.close()

  def predict(self, signature_name: str, inputs: Dict[str, object]) -> Dict[str, np.ndarray]:
    """Outputs of one request; `inputs` maps input keys to arrays or TensorProtos."""
    sig = self.signatures.get(signature_name or "serving_default")
    if sig is None:
      raise ServingError("INVALID_ARGUMENT", f"Serving signature name: \"{signature_name}\" not found in "
                         f"signature def; known: {', '.join(sorted(self.signatures))}")
    want, got = set(sig.inputs), set(inputs)
    if want != got:
      raise ServingError("INVALID_ARGUMENT", f"input keys {sorted(got)} do not match the signature's "
                         f"{sorted(want)}")
    feed = {}
    for key, value in inputs.items():
      array = tf.make_ndarray(value) if isinstance(value, TensorProto) else np.asarray(value)
      expected = tf.dtypes.as_dtype(sig.inputs[key].dtype)
      try:
        actual = tf.dtypes.as_dtype(array.dtype if array.dtype != object else np.bytes_)
      except TypeError:
        actual = None
      if actual != expected:
        raise ServingError("INVALID_ARGUMENT", f"Expects arg[0] to be {expected.name} but "
                           f"{actual.name if actual else array.dtype} is provided")
      feed[sig.inputs[key].name] = array
    fetch = {k: v.name for k, v in sig.outputs.items()}
    try:
      return self.session.run(fetch, feed)
    except tf.errors.OpError as e:
      raise ServingError(_CODES.get(type(e), type(e).__name__), _readable(e.message)) from None

  def predict_request(self, request) -> Dict[str, np.ndarray]:
    """Runs a tensorflow_serving.apis PredictRequest (as in a warm-up record)."""
    return self.predict(request.model_spec.signature_name, dict(request.inputs))


def rest_body_to_inputs(body: dict, signature) -> Dict[str, np.ndarray]:
  """Input arrays from a TF Serving REST Predict body, for a SignatureDef `signature`.

  Row format: {"instances": [...]} (one item per example; a dict per example when the signature
  has several inputs). Columnar format: {"inputs": ...}. Binary values are {"b64": "..."}.
  """
  def decode(v):
    if isinstance(v, dict):
      if set(v) != {"b64"}:
        raise ServingError("INVALID_ARGUMENT", f"JSON object {sorted(v)} is not accepted; binary values are {{\"b64\": ...}}")
      try:
        return base64.b64decode(v["b64"], validate=True)
      except (ValueError, TypeError) as e:
        raise ServingError("INVALID_ARGUMENT", f"not base64: {e}") from None
    if isinstance(v, list):
      return [decode(x) for x in v]
    return v

  keys = list(signature.inputs)
  if "instances" in body:
    rows = body["instances"]
    if not isinstance(rows, list):
      raise ServingError("INVALID_ARGUMENT", "\"instances\" must be a list")
    if not rows:
      raise ServingError("INVALID_ARGUMENT", "\"instances\" is an empty list; send at least one instance")
    if len(keys) == 1 and not (rows and isinstance(rows[0], dict) and keys[0] in rows[0]):
      columns = {keys[0]: [decode(r) for r in rows]}
    else:
      columns = {k: [decode(r[k]) for r in rows] for k in keys}
  elif "inputs" in body:
    value = body["inputs"]
    columns = {k: decode(value[k]) for k in keys} if isinstance(value, dict) else {keys[0]: decode(value)}
  else:
    raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
  out = {}
  for k, v in columns.items():
    dtype = tf.dtypes.as_dtype(signature.inputs[k].dtype)
    try:
      out[k] = np.array(v, dtype=object) if dtype == tf.string else np.array(v, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError) as e:
      raise ServingError("INVALID_ARGUMENT", f"input {k!r}: cannot be read as {dtype.name} ({e})") from None
  return out


def rest_response(outputs: Dict[str, np.ndarray], columnar: bool = False) -> dict:
  """A REST Predict answer from a signature's outputs: {"predictions": [...]} (row format, one dict
  per example) or {"outputs": {...}} (columnar, for a request with "inputs"); strings as text."""
  def plain(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

  def listed(v):
    v = np.asarray(v)
    if v.dtype.kind not in "OSU":
      return v.tolist()  # numbers: one C-level pass (each answer holds every class's probability)
    return [listed(x) for x in v] if v.ndim else plain(v.item())

  if columnar:
    return {"outputs": {k: listed(v) for k, v in outputs.items()}}
  n = len(next(iter(outputs.values())))
  return {"predictions": [{k: listed(v[i]) for k, v in outputs.items()} for i in range(n)]}


def rest_predict(session: ServingSession, body: dict, signature_name: Optional[str] = None) -> dict:
  """A REST Predict call: {"predictions": [...]} (one dict per example) or raises ServingError."""
  name = body.get("signature_name", signature_name or "serving_default")
  sig = session.signatures.get(name)
  if sig is None:
    raise ServingError("INVALID_ARGUMENT", f"Serving signature name: \"{name}\" not found in signature def")
  outputs = session.predict(name, rest_body_to_inputs(body, sig))
  return rest_response(outputs, columnar="instances" not in body)


def replay_warmup(session: ServingSession, version_dir: str) -> dict:
  """Runs the version's warm-up requests (assets.extra/tf_serving_warmup_requests) through `session`,
  as TF Serving does before it serves a version: {"requests", "failed", "signatures", "first_error"}."""
  path = os.path.join(version_dir, "assets.extra", serving.WARMUP_FILE)
  if not os.path.exists(path):
    return {"requests": 0, "failed": 0, "signatures": [], "first_error": None}
  logs = serving.read_warmup(path)
  failed, first, sigs = 0, None, set()
  for log in logs:
    request = log.predict_log.request
    sigs.add(request.model_spec.signature_name)
    try:
      session.predict_request(request)
    except ServingError as e:
      failed += 1
      first = first or str(e)
  return {"requests": len(logs), "failed": failed, "signatures": sorted(sigs), "first_error": first}
