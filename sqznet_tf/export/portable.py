"""Portable exports of a Keras classifier: ONNX (and its runner), calibration photos, sparsity.

The exported graphs take the network's input (preprocessed, see the export's
sqznet_export.json) and return its probabilities; preprocessing and labels stay with the app.
TFLite conversion and its runner are `sqznet_tf.compression.tflite` (one converter for exports
and the compression pipeline).

ONNX goes through tf2onnx, which exits successfully even when it could not convert an op: its
log is read, and any op it reports as unsupported fails the export.
"""

import logging
import os
from typing import List, Optional

import numpy as np

from sqznet_tf._keras import tf
from sqznet_tf.data.preprocessing import ImageDecodeError, Preprocessor
from sqznet_tf.data.sources import IMAGE_EXTENSIONS
from sqznet_tf.errors import SqznetError

ONNX_OPSET = 17


class _Records(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages: List[str] = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def onnx(model, opset: int = ONNX_OPSET) -> bytes:
  """The ONNX model of `model` (tf2onnx), refusing one with ops tf2onnx could not convert."""
  try:
    import tf2onnx  # pylint: disable=g-import-not-at-top  (optional extra [export])
  except ImportError:
    raise SqznetError("the ONNX export needs tf2onnx: pip install 'sqznet_tf[export]'") from None
  size = [None] + [int(d) for d in model.input_shape[1:]]
  spec = (tf.TensorSpec(size, tf.float32, name="input"),)
  handler = _Records()
  log = logging.getLogger("tf2onnx")
  log.addHandler(handler)
  try:
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise SqznetError(f"ONNX conversion of {model.name} failed: {first[:200]}") from e
  finally:
    log.removeHandler(handler)
  bad = [m for m in handler.messages if "not supported" in m.lower() or "unsupported" in m.lower()
         or "failed to convert" in m.lower()]
  if bad:
    raise SqznetError(f"ONNX conversion of {model.name} left ops unconverted: {bad[0][:200]} "
                      f"({len(bad)} such messages)")
  return proto.SerializeToString()


def onnx_session(data: bytes, threads: Optional[int] = None):
  """An onnxruntime CPU session of an ONNX model (`threads`: intra-op threads, else its default)."""
  try:
    import onnxruntime  # pylint: disable=g-import-not-at-top  (optional extra [export])
  except ImportError:
    raise SqznetError("running ONNX models needs onnxruntime: pip install 'sqznet_tf[export]'") from None
  options = onnxruntime.SessionOptions()
  options.log_severity_level = 3
  if threads is not None:
    options.intra_op_num_threads = threads
  return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def onnx_predict(data: bytes, images, batch_size: int = 32) -> np.ndarray:
  """Outputs of an ONNX model (onnxruntime, CPU) on float32 network inputs."""
  session = onnx_session(data)
  name = session.get_inputs()[0].name
  images = np.asarray(images, np.float32)
  return np.concatenate([session.run(None, {name: images[i:i + batch_size]})[0]
                         for i in range(0, len(images), batch_size)])


def is_sparse(model, threshold: float = 0.5) -> bool:
  """True when at most `threshold` of the conv/dense kernel weights are non-zero (a pruned model)."""
  total = nonzero = 0
  for layer in model.layers:
    kernel = getattr(layer, "kernel", None)
    if kernel is not None:
      k = kernel.numpy()
      total += k.size
      nonzero += int(np.count_nonzero(k))
  return bool(total) and nonzero / total <= threshold


def representative_images(folder: str, preprocessing, count: int = 100) -> np.ndarray:
  """Up to `count` preprocessed images from the image files under `folder` (sorted, recursive)."""
  if not os.path.isdir(folder):
    raise SqznetError(f"representative data {folder!r} is not a folder of images")
  paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
                 if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
  # Spread the picks over the listing (sorted by class folder), not the first class only.
  if len(paths) > count:
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]
  pre = Preprocessor(preprocessing)
  out = []
  for p in paths:
    try:
      with open(p, "rb") as f:
        out.append(pre(f.read()))
    except (OSError, ImageDecodeError):
      continue
  if not out:
    raise SqznetError(f"no readable image under {folder!r} (looked for {', '.join(IMAGE_EXTENSIONS)})")
  return np.stack(out).astype(np.float32)
