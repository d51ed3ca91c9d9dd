"""Inference on the fastest runtime the package has for the batch size: TF, TFLite or ONNX Runtime.

At batch 1 SqueezeNet is a string of small kernels, and TensorFlow's per-op cost shows: on the
2-core AVX-512 CPU of BENCHMARKS.md ("Runtimes by batch size") v1.1 answers in about 8.5 ms in TF,
4.6 ms as a TFLite float32 model under XNNPACK and 4.0 ms in ONNX Runtime; from batch 16 up TF is
as fast or faster per image. `Predictor(model, runtime="auto")` therefore runs one image on the
fastest of the three *measured once on this machine at batch 1*, batches of 2 to `small_batch` (8)
on the fastest measured at batch 8 (for AlexNet TF can win there), and larger batches in TF
(`sqznet_tf.inference.Predictor`).

TF itself has two forms for small batches: its traced function, and the same graph with the weights
frozen into constants in a session with one inter-op thread ("tf-frozen", a snapshot like the
converted models; `inference.Predictor(freeze=True)`). Which is faster depends on the CPU (frozen:
25-33% less time at batch 1 on the AVX2-only machine; BENCHMARKS.md), so both "auto" and "tf"
measure them for batches up to `small_batch`, once per machine and model, and keep the faster;
larger batches run the traced function.

The converted models and the measured choice are cached by content: the file name carries a
hash of the model's architecture, weights and the TensorFlow version, so a retrained model never
meets a stale conversion. The cache is `$SQZNET_CACHE_DIR`, else `$XDG_CACHE_HOME/sqznet_tf`,
else `~/.cache/sqznet_tf` (not next to the weights: the shipped weights live inside the
installed package, which need not be writable). Without a writable cache the conversion is
done in memory, once per process.

Outputs agree with TF's to float tolerance (the same float32 weights; XNNPACK and oneDNN sum in
different orders): tests/test_runtimes.py checks probabilities to 1e-4 and top-1 on real photos.
"""

import hashlib
import json
import os
from typing import Callable, Dict, Optional

import numpy as np

from sqznet_tf import reporting
from sqznet_tf._keras import tf
from sqznet_tf.errors import SqznetError
from sqznet_tf.inference import Predictor as TFPredictor
from sqznet_tf.io import write_atomic

RUNTIMES = ("auto", "tf", "tflite", "onnx")
PORTABLE = ("tflite", "onnx")
TF_FROZEN = "tf-frozen"  # what runtime_for answers when the frozen form of TF measured faster
SMALL_BATCH = 8  # "auto": up to here a measured choice, above it TF (bench/results/crossover.json)
_CHOICE_CALLS = 12  # timed calls per runtime at batch 1 when "auto" measures (half as many at small_batch)


def cache_dir() -> str:
  """Where converted models and runtime choices are kept (see the module docstring)."""
  if os.environ.get("SQZNET_CACHE_DIR"):
    return os.environ["SQZNET_CACHE_DIR"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "sqznet_tf")


def model_key(model) -> str:
  """A hash of the model's architecture, weights and the TensorFlow version (hex, 16 digits)."""
  h = hashlib.sha256()
  h.update(tf.__version__.encode())
  h.update(model.to_json().encode())
  for w in model.weights:
    h.update(np.ascontiguousarray(w.numpy()).tobytes())
  return h.hexdigest()[:16]


class _Cache:
  """Files under cache_dir() named by the model's key; reads and atomic writes, never fatal."""

  def __init__(self, model, folder: Optional[str]):
    self.folder = folder or cache_dir()
    self.stem = f"{model.name}-{model_key(model)}"

  def path(self, suffix: str) -> str:
    return os.path.join(self.folder, f"{self.stem}.{suffix}")

  def read(self, suffix: str) -> Optional[bytes]:
    try:
      with open(self.path(suffix), "rb") as f:
        return f.read()
    except OSError:
      return None

  def write(self, suffix: str, data: bytes) -> None:
    try:
      write_atomic(self.path(suffix), data)
    except OSError as e:
      reporting.progress(f"runtime cache {self.folder!r} not writable ({e.strerror}); converting in memory")


def _convert(model, runtime: str) -> bytes:
  if runtime == "tflite":
    from sqznet_tf.compression import tflite  # pylint: disable=g-import-not-at-top
    return tflite.convert(model, "float32")
  from sqznet_tf.export import portable  # pylint: disable=g-import-not-at-top
  return portable.onnx(model)


class _TFLiteRunner:
  """A float32 flatbuffer under XNNPACK, one interpreter per batch size seen."""

  def __init__(self, data: bytes):
    from sqznet_tf.compression import tflite  # pylint: disable=g-import-not-at-top
    self._make = lambda: tflite.make_interpreter(data, reporting.machine()["cores"])
    self._by_batch: Dict[int, tuple] = {}

  def __call__(self, x: np.ndarray) -> np.ndarray:
    entry = self._by_batch.get(len(x))
    if entry is None:
      it = self._make()
      inp = it.get_input_details()[0]
      it.resize_tensor_input(inp["index"], list(x.shape))
      it.allocate_tensors()
      entry = self._by_batch[len(x)] = (it, inp["index"], it.get_output_details()[0]["index"])
    it, i, o = entry
    it.set_tensor(i, x)
    it.invoke()
    return it.get_tensor(o).copy()


class _ONNXRunner:
  """An ONNX model in ONNX Runtime's CPU provider."""

  def __init__(self, data: bytes):
    from sqznet_tf.export import portable  # pylint: disable=g-import-not-at-top
    self._session = portable.onnx_session(data, reporting.machine()["cores"])
    self._name = self._session.get_inputs()[0].name

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return self._session.run(None, {self._name: x})[0]


_RUNNERS = {"tflite": (_TFLiteRunner, "ai_edge_litert", "float32.tflite"),
            "onnx": (_ONNXRunner, "onnxruntime", "onnx")}


def _available(runtime: str) -> bool:
  import importlib.util  # pylint: disable=g-import-not-at-top
  if runtime == "onnx" and importlib.util.find_spec("tf2onnx") is None:
    return False
  return importlib.util.find_spec(_RUNNERS[runtime][1]) is not None


class Predictor:
  """`model`'s forward pass on the runtime that suits the batch size; `predict_on_batch`-compatible.

  Args:
    model: a single-input tf_keras classifier.
    runtime: "auto" (one image on the fastest runtime measured at batch 1, up to `small_batch` on
      the fastest at that batch, larger batches in TF), or one runtime for every batch: "tf", "tflite" (float32, XNNPACK) or
      "onnx" (ONNX Runtime). The portable runtimes need the [export] extra.
    small_batch: the largest batch "auto" sends to a measured choice (above it: TF).
    cache: folder for converted models and the measured choice (default: `cache_dir()`).
  """

  def __init__(self, model, runtime: str = "auto", small_batch: int = SMALL_BATCH, cache: Optional[str] = None):
    if runtime not in RUNTIMES:
      raise SqznetError(f"runtime={runtime!r} is not accepted; expected one of {', '.join(RUNTIMES)}")
    if runtime in PORTABLE and not _available(runtime):
      raise SqznetError(f"runtime={runtime!r} needs {_RUNNERS[runtime][1]}"
                        f"{' and tf2onnx' if runtime == 'onnx' else ''}: pip install 'sqznet_tf[export]'")
    self.model = model
    self.runtime = runtime
    self.small_batch = small_batch
    self.input_shape = model.input_shape
    self.output_shape = model.output_shape
    self._cache_folder = cache
    self._cache = None
    self._tf = TFPredictor(model)
    self._runners: Dict[str, Callable] = {"tf": self._tf}
    self.choice: Optional[dict] = None  # "auto", "tf": what was measured at batch 1 and small_batch, once

  def _files(self) -> _Cache:
    if self._cache is None:
      self._cache = _Cache(self.model, self._cache_folder)
    return self._cache

  def _runner(self, runtime: str) -> Callable:
    if runtime == TF_FROZEN and runtime not in self._runners:
      self._runners[runtime] = self._tf.frozen()  # the same fold and trace, frozen
    if runtime not in self._runners:
      cls, _, suffix = _RUNNERS[runtime]
      data = self._files().read(suffix)
      if data is None:
        reporting.progress(f"converting {self.model.name} for {runtime} (once; cached in {self._files().folder})")
        data = _convert(self.model, runtime)
        self._files().write(suffix, data)
      self._runners[runtime] = cls(data)
    return self._runners[runtime]

  def _choose(self) -> dict:
    """What "auto" (or "tf") uses for small batches, measured once per machine: {"runtime": the
    fastest at batch 1, "runtime_small": the fastest at batch `small_batch` (for batches
    2..small_batch), the milliseconds per call of each, the candidates, the machine}."""
    machine = reporting.machine()
    candidates = self._candidates()
    suffix = "runtime.json" if self.runtime == "auto" else f"runtime-{self.runtime}.json"
    stored = self._files().read(suffix)
    if stored:
      try:
        choice = json.loads(stored)
        if (choice.get("machine") == machine and choice.get("small_batch") == self.small_batch
            and choice.get("candidates") == candidates):
          return choice
      except ValueError:
        pass
    runners = {}
    for runtime in candidates:
      try:
        runners[runtime] = self._runner(runtime)
      except (SqznetError, ImportError, ValueError, RuntimeError) as e:
        reporting.progress(f"runtime {runtime} unavailable for {self.model.name}: {str(e).splitlines()[0][:160]}")
    choice = {"small_batch": self.small_batch, "candidates": candidates, "machine": machine}
    reporting.progress(f"measuring {', '.join(runners)} for {self.model.name} at batch 1 and {self.small_batch} "
                       f"(once on this machine; the choice is cached in {self._files().folder})")
    for batch, calls, key in ((1, _CHOICE_CALLS, "runtime"), (self.small_batch, _CHOICE_CALLS // 2, "runtime_small")):
      x = np.zeros((batch, *self.input_shape[1:]), np.float32)
      ms = {r: round(1e3 * reporting.median_seconds(lambda run=run: run(x), calls), 3) for r, run in runners.items()}
      choice[key], choice[f"batch_{batch}_ms"] = min(ms, key=ms.get), ms
    self._files().write(suffix, json.dumps(choice, indent=1).encode())
    return choice

  def _candidates(self):
    tf_forms = ["tf", TF_FROZEN]
    return tf_forms if self.runtime == "tf" else tf_forms + [r for r in PORTABLE if _available(r)]

  def runtime_for(self, batch: int) -> str:
    """The runtime a batch of `batch` images runs on ("tf-frozen": TF with its weights frozen)."""
    if self.runtime in PORTABLE:
      return self.runtime
    if batch > self.small_batch:
      return "tf"
    if self.choice is None:
      self.choice = self._choose()
    return self.choice["runtime" if batch <= 1 else "runtime_small"]

  def for_batch(self, batch: int) -> Callable[[np.ndarray], np.ndarray]:
    """One runtime's function for batches of about `batch` images (also the last, smaller one)."""
    run = self._runner(self.runtime_for(batch))
    return lambda x: np.asarray(run(np.ascontiguousarray(x, dtype=np.float32)))

  def __call__(self, x) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.asarray(self._runner(self.runtime_for(len(x)))(x))

  predict_on_batch = __call__

  def predict(self, x, batch_size: int = 32) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    run = self.for_batch(min(batch_size, len(x)))
    return np.concatenate([run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def predictor(model, runtime: str = "auto", **kwargs):
  """A Predictor for a single-input Keras model; anything else (a TFLite runner...) as it is.

  runtime="tf" gives TF alone: its traced function (`sqznet_tf.inference.Predictor`), for batches up to
  `small_batch` the faster of that and its frozen form, measured.
  """
  from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
  if not isinstance(model, keras.Model) or isinstance(model.input_shape, list):
    return model
  return Predictor(model, runtime, **kwargs)
