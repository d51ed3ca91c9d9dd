"""TFLite: conversion of a Keras classifier (float32, float16, dynamic-range, int8) and running it.

The one TFLite converter of the package (exports and the compression pipeline both use it).

Kinds:
  float32   the model as it is.
  float16   weights stored as float16 (half the size), computed in float32 on CPUs.
  dynamic   dynamic-range quantization: int8 weights, float activations.
  int8      full integer: int8 weights and activations calibrated on representative images;
            float32 input and output (QUANTIZE/DEQUANTIZE at the edges).
With `sparse=True` (pruned models) the converter's sparsity optimization stores kernels that are
mostly zeros in a sparse format; not for dynamic-range models, which XNNPACK (TFLite's default CPU
delegate) then refuses to load ("failed to delegate CONV_2D", ai-edge-litert 2.3.0).
CeilMaxPool2D pads with -inf; it is converted through an edge-repeating equivalent that gives
the same outputs and keeps infinities out of every converted graph.
"""

import warnings
from typing import List, Optional

import numpy as np

from sqznet_tf._keras import keras, tf
from sqznet_tf.errors import SqznetError
from sqznet_tf.models.layers import CUSTOM_OBJECTS, ceil_pool_padding, copy_layer

KINDS = ("float32", "float16", "dynamic", "int8")

class _EdgeCeilMaxPool2D(keras.layers.Layer):
  """CeilMaxPool2D computed without -inf: the bottom/right edge row/column is repeated instead.

  The last window always holds the last real row, so repeating it changes no maximum and the
  output equals CeilMaxPool2D's exactly. The -inf padding of CeilMaxPool2D is fine in float but
  breaks int8 calibration: the converter records -inf as the range of the padded tensor (scale
  ~1e36), and the flatbuffer then outputs NaN or fails to load in XNNPACK.
  """

  def __init__(self, pool_size: int = 3, strides: int = 2, **kwargs):
    super().__init__(**kwargs)
    self.pool_size = int(pool_size)
    self.strides = int(strides)

  def _edge_pad(self, x, axis: int):
    n = x.shape[axis]
    if n is not None:
      pad = ceil_pool_padding(n, self.pool_size, self.strides)
      if not pad:
        return x
      return tf.gather(x, np.minimum(np.arange(n + pad), n - 1).astype(np.int32), axis=axis)
    n = tf.shape(x)[axis]
    pad = ceil_pool_padding(n, self.pool_size, self.strides)
    return tf.gather(x, tf.minimum(tf.range(n + pad), n - 1), axis=axis)

  def call(self, inputs):
    x = self._edge_pad(self._edge_pad(inputs, 1), 2)
    return tf.nn.max_pool2d(x, self.pool_size, self.strides, "VALID")

  def get_config(self):
    cfg = super().get_config()
    cfg.update(pool_size=self.pool_size, strides=self.strides)
    return cfg


def _for_conversion(model):
  """A copy of `model` (weights copied) whose CeilMaxPool2D layers are _EdgeCeilMaxPool2D."""
  ceil_pool = CUSTOM_OBJECTS["CeilMaxPool2D"]
  if not any(isinstance(l, ceil_pool) for l in model.layers):
    return model

  def clone(layer):
    if isinstance(layer, ceil_pool):
      return _EdgeCeilMaxPool2D.from_config(layer.get_config())
    return copy_layer(layer)  # reusing `layer` would add inbound nodes to `model`'s layers

  with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
    return keras.models.clone_model(model, clone_function=clone)


def keras_converter(model):
  """A TFLiteConverter for a tf_keras model, made from one concrete function over its variables.

  `TFLiteConverter.from_keras_model` first saves the model as a Keras SavedModel, which traces
  every layer's call functions: about three quarters of a conversion (measured: 11.4 s against
  2.7 s for squeezenet_v1_1_cifar, the same flatbuffer). The signature keeps the model's input
  and output names.
  """
  names = [t.name.split(":")[0] for t in model.inputs]
  specs = [tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=n) for t, n in zip(model.inputs, names)]
  holder = tf.Module()
  holder.model_variables = list(model.variables)  # tracked, so the converter freezes their values

  @tf.function(input_signature=specs)
  def serve(*xs):
    ys = model(list(xs) if len(xs) > 1 else xs[0], training=False)
    return dict(zip(model.output_names, ys if isinstance(ys, (list, tuple)) else [ys]))

  holder.serve = serve
  return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], holder)


def convert(model, kind: str = "float32", representative_images=None, sparse: bool = False,
            converter=None) -> bytes:
  """The TFLite flatbuffer of `model` for one of KINDS.

  Args:
    model: a tf_keras model. Its CeilMaxPool2D layers are converted through an equivalent
      that pads by repeating the edge instead of with -inf (see _EdgeCeilMaxPool2D).
    kind: one of KINDS (see the module docstring).
    representative_images: for int8, a float32 array (n, h, w, c) of preprocessed inputs; the
      converter calibrates activation ranges on them, one image at a time. int8 asks for int8
      builtin ops only (TFLITE_BUILTINS_INT8); input and output stay float32. The converter
      still leaves ops that have no int8 kernel (e.g. LRN) in float between QUANTIZE/DEQUANTIZE
      pairs; `float_ops` lists them.
    sparse: the converter's sparsity optimization (not for dynamic-range models).
    converter: a TFLiteConverter to configure instead of one made from `model` (a QAT model's).

  Raises:
    SqznetError: for an unknown kind, a missing, empty or non-4D image batch for int8, or when
      the converter fails (with the converter's first error message).
  """
  if kind not in KINDS:
    raise SqznetError(f"TFLite kind {kind!r} is not accepted; expected one of {', '.join(KINDS)}")
  if converter is None:
    converter = keras_converter(_for_conversion(model))
  optimizations = []
  if kind in ("float16", "dynamic", "int8"):
    optimizations.append(tf.lite.Optimize.DEFAULT)
  if kind == "float16":
    converter.target_spec.supported_types = [tf.float16]
  if kind == "int8":
    if representative_images is None:
      raise SqznetError("the int8 TFLite conversion needs representative images (--representative_data)")
    images = np.asarray(representative_images, dtype=np.float32)
    if images.ndim != 4 or not len(images):
      raise SqznetError(f"representative_images of shape {images.shape} are not accepted; "
                        "expected a non-empty float32 batch (n, height, width, channels)")
    converter.representative_dataset = lambda: ([images[i:i + 1]] for i in range(len(images)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  if sparse and kind != "dynamic":
    optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
  converter.optimizations = optimizations
  try:
    with warnings.catch_warnings():
      # Float input/output are asked for on purpose: there are no input statistics to give.
      warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
      return bytes(converter.convert())
  except Exception as e:  # pylint: disable=broad-except
    raise SqznetError(f"{kind} TFLite conversion of {model.name} failed: {_first_error_line(e)}") from e


def int8_tflite(model, representative_images) -> bytes:
  """Post-training int8 quantization of `model` (see `convert`)."""
  return convert(model, "int8", representative_images)


def _first_error_line(e: Exception) -> str:
  """The converter's first "error: ..." message (without MLIR locations), else its first line."""
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  for line in lines:
    if "error: " in line:
      return line.rsplit("error: ", 1)[1]
  return lines[0] if lines else type(e).__name__


def make_interpreter(tflite_bytes: bytes, num_threads: Optional[int] = None):
  """A TFLite interpreter (LiteRT's; TF's deprecated one without the [export] extra); `num_threads`
  for XNNPACK, else the runtime's default."""
  threads = {} if num_threads is None else {"num_threads": num_threads}
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top  (optional extra [export])
  except ImportError:
    with warnings.catch_warnings():
      # The fallback is deliberate: silence "tf.lite.Interpreter is deprecated ... use ai_edge_litert".
      warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
      return tf.lite.Interpreter(model_content=tflite_bytes, **threads)
  return Interpreter(model_content=tflite_bytes, **threads)


def float_ops(tflite_bytes: bytes) -> List[str]:
  """Names of the ops of a flatbuffer that compute in float32 (QUANTIZE/DEQUANTIZE excluded).

  Empty for a fully integer model. The converter keeps ops that have no int8 kernel (LRN, for
  one) in float between QUANTIZE/DEQUANTIZE pairs even when only int8 builtins are requested.
  """
  interpreter = make_interpreter(tflite_bytes)
  tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
  out = []
  for op in interpreter._get_ops_details():  # pylint: disable=protected-access
    if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
      continue
    ids = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and i in tensors]
    if any(tensors[i]["dtype"] == np.float32 for i in ids):
      out.append(op["op_name"])
  return out


def predict(tflite_bytes: bytes, images, batch_size: Optional[int] = None) -> np.ndarray:
  """Runs a TFLite flatbuffer on images, `batch_size` at a time (default all); (n, ...) float32.

  Int8 inputs/outputs are (de)quantized with the tensors' scale and zero point.
  """
  images = np.asarray(images, dtype=np.float32)
  interpreter = make_interpreter(tflite_bytes)
  step = batch_size or max(len(images), 1)
  outputs, shape = [], None
  for start in range(0, len(images), step):
    chunk = images[start:start + step]
    if chunk.shape != shape:
      inp = interpreter.get_input_details()[0]
      interpreter.resize_tensor_input(inp["index"], list(chunk.shape))
      interpreter.allocate_tensors()
      inp = interpreter.get_input_details()[0]
      out = interpreter.get_output_details()[0]
      shape = chunk.shape
    x = chunk
    if inp["dtype"] != np.float32:
      scale, zero = inp["quantization"]
      info = np.iinfo(inp["dtype"])
      x = np.clip(np.round(chunk / scale + zero), info.min, info.max).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"])
    if out["dtype"] != np.float32:
      scale, zero = out["quantization"]
      y = (y.astype(np.float32) - zero) * scale
    outputs.append(np.array(y, dtype=np.float32))
  return np.concatenate(outputs)
