"""Weight clustering, quantization-aware training and int8 TFLite export on tfmot.

- `cluster_model` / `strip_clusters`: tfmot weight clustering of the Conv2D and Dense kernels,
  to fine-tune the shared values (Deep Compression's trained quantization). With
  `preserve_sparsity`, weights that are zero (pruned) stay exactly zero.
- `quantize_aware`: a quantization-aware training (QAT) model; layers that tfmot cannot quantize
  (this package's CeilMaxPool2D and LRN) are kept in float through a no-op QuantizeConfig.
- `int8_tflite` / `tflite_predict`: post-training int8 quantization to a TFLite flatbuffer, and
  running one.

Codebook sizes follow Deep Compression: `bits` bits index 2**bits codes, one of which is reserved
for exact zero, so a clustered kernel holds at most 2**bits - 1 distinct non-zero values. bits
is 2..8: tfmot refuses fewer than 3 clusters with preserve_sparsity (2 without).
"""

import warnings
from typing import Iterable, List, Optional

import numpy as np

from sqznet_tf._keras import keras, tf, tfmot
from sqznet_tf.errors import SqznetError

MIN_BITS, MAX_BITS = 2, 8


def _cluster_inits() -> dict:
  CentroidInitialization = tfmot().clustering.keras.CentroidInitialization  # pylint: disable=invalid-name
  return {"linear": CentroidInitialization.LINEAR,
          "density": CentroidInitialization.DENSITY_BASED,
          "random": CentroidInitialization.RANDOM,
          "kmeans_plus_plus": CentroidInitialization.KMEANS_PLUS_PLUS}


# Flag name -> tfmot CentroidInitialization member.
CLUSTER_INITS = _cluster_inits()


def _clusterable(layer) -> bool:
  return isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))


def _copy_layer(layer):
  """A fresh, built copy of `layer` holding its current weights (no variables shared)."""
  new = layer.__class__.from_config(layer.get_config())
  if layer.weights:
    new.build(layer.input_shape)
    new.set_weights(layer.get_weights())
  return new


def number_of_clusters(bits: int, preserve_sparsity: bool = True) -> int:
  """tfmot's `number_of_clusters` for a `bits`-bit codebook with one code reserved for zero.

  With preserve_sparsity tfmot counts its zero centroid among the clusters, so it gets
  2**bits (2**bits - 1 non-zero values plus zero); without, 2**bits - 1 (all may be non-zero).
  """
  return 2 ** bits if preserve_sparsity else 2 ** bits - 1


def _check_bits(bits) -> int:
  if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
    raise SqznetError(f"bits={bits!r} is not accepted; expected an integer in {MIN_BITS}..{MAX_BITS} "
                      "(tfmot clustering needs at least 2 non-zero clusters)")
  return int(bits)


def cluster_model(model, bits: int, init: str = "linear", preserve_sparsity: bool = True,
                  layers: Optional[Iterable[str]] = None):
  """Wraps the Conv2D and Dense layers of `model` in tfmot's ClusterWeights, from their weights.

  Every wrapped layer is a copy built with the layer's current weights before it is wrapped,
  so its centroids are initialised from the trained kernel and the returned model computes
  (up to the clustering) what `model` computes; `model` itself is left untouched. Layers that
  are not wrapped are copied with their weights. Conv2D kernels with no more weights than
  clusters are left unwrapped (tfmot skips them).

  Args:
    model: a functional or Sequential tf_keras model.
    bits: index width, 2..8: each kernel gets at most 2**bits - 1 distinct non-zero values.
    init: centroid initialisation, a key of CLUSTER_INITS.
    preserve_sparsity: keep zero weights exactly zero (one centroid is pinned to 0).
    layers: names of the layers to cluster (default: every Conv2D and Dense layer).

  Returns:
    The model with ClusterWeights wrappers (named "cluster_<layer>"); train it, then call
    `strip_clusters`.

  Raises:
    SqznetError: for bits outside 2..8, an unknown init, or a name in `layers` that is not a
      Conv2D/Dense layer of `model`.
  """
  bits = _check_bits(bits)
  if init not in CLUSTER_INITS:
    raise SqznetError(f"cluster init {init!r} is not accepted; expected one of {', '.join(CLUSTER_INITS)}")
  candidates = [l.name for l in model.layers if _clusterable(l)]
  if layers is None:
    chosen = set(candidates)
  else:
    chosen = set(layers) if not isinstance(layers, str) else {layers}
    unknown = sorted(chosen - set(candidates))
    if unknown:
      raise SqznetError(f"layers {', '.join(map(repr, unknown))} are not accepted for clustering; expected "
                        f"Conv2D/Dense layers of {model.name}: {', '.join(candidates)}")
  mot = tfmot()
  n = number_of_clusters(bits, preserve_sparsity)

  def clone(layer):
    new = _copy_layer(layer)
    if layer.name in chosen:
      return mot.clustering.keras.cluster_weights(new, number_of_clusters=n, cluster_centroids_init=CLUSTER_INITS[init],
                                                  preserve_sparsity=preserve_sparsity)
    return new

  from sqznet_tf.models import CUSTOM_OBJECTS  # pylint: disable=g-import-not-at-top
  with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
    return keras.models.clone_model(model, clone_function=clone)


def strip_clusters(model):
  """The clustered model without its wrappers: plain layers holding the clustered kernels."""
  from sqznet_tf.models import CUSTOM_OBJECTS  # pylint: disable=g-import-not-at-top
  with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
    return tfmot().clustering.keras.strip_clustering(model)


_qk = tfmot().quantization.keras


@keras.utils.register_keras_serializable(package="sqznet_tf")
class NoOpQuantizeConfig(_qk.QuantizeConfig):
  """Quantizes nothing: the layer runs in float inside a quantization-aware model.

  Registered as "sqznet_tf>NoOpQuantizeConfig": tfmot's quantize_scope already maps the plain
  name "NoOpQuantizeConfig" to a class of its own.
  """

  def get_weights_and_quantizers(self, layer):
    return []

  def get_activations_and_quantizers(self, layer):
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    pass

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return []

  def get_config(self):
    return {}


class _KernelQuantizingLayoutTransform(_qk.default_8bit.Default8BitQuantizeLayoutTransform):
  """tfmot's default 8-bit layout transform, except that Conv2D/Dense -> ReLU keeps the kernel quantized.

  tfmot 0.8's LayerReLUQuantize gives a Conv2D or Dense layer followed by a ReLU layer a
  NoOpQuantizeConfig, to keep a fake-quant off the conv output (TFLite fuses the ReLU). That
  also drops the kernel's fake-quant, so SqueezeNet (conv -> ReLU everywhere) would train with
  float weights. Those layers get their registry config without the activation/output
  quantizers instead: the kernel is fake-quantized (per channel for Conv2D), the output is
  quantized by the ReLU after it, as tfmot already does for Conv2D -> BatchNorm -> ReLU.
  """

  def apply(self, model, layer_quantize_map):
    model, layer_quantize_map = super().apply(model, layer_quantize_map)
    registry = _qk.default_8bit.Default8BitQuantizeRegistry()
    for layer in model.layers:
      entry = layer_quantize_map.get(layer.name)
      config = (entry or {}).get("quantize_config")
      # tfmot's own NoOpQuantizeConfig (default_8bit or default_n_bit), never the one we annotate with.
      if (type(layer) in (keras.layers.Conv2D, keras.layers.Dense) and config is not None
          and type(config).__name__ == "NoOpQuantizeConfig" and not isinstance(config, NoOpQuantizeConfig)):
        default = registry.get_quantize_config(layer)
        entry["quantize_config"] = type(default).from_config(
            {**default.get_config(), "activation_attrs": [], "quantize_output": False})
    return model, layer_quantize_map


class _Scheme(_qk.default_8bit.Default8BitQuantizeScheme):

  def get_layout_transformer(self):
    return _KernelQuantizingLayoutTransform()


def quantize_scope():
  """Context in which Keras can load or clone a QAT model of this package (custom layers included)."""
  from sqznet_tf.models import CUSTOM_OBJECTS  # pylint: disable=g-import-not-at-top
  return _qk.quantize_scope({**CUSTOM_OBJECTS, "sqznet_tf>NoOpQuantizeConfig": NoOpQuantizeConfig})


def quantize_aware(model):
  """A quantization-aware training model of `model` (tfmot default 8-bit scheme), weights kept.

  Layers the default 8-bit registry supports get its configs: Conv2D [+ BatchNormalization] +
  ReLU are quantized after the ReLU only, as TFLite fuses them, and every Conv2D/Dense kernel
  is fake-quantized (see _KernelQuantizingLayoutTransform). The others (CeilMaxPool2D, LRN,
  ...) are annotated with NoOpQuantizeConfig and stay float. `model` is not changed. Load a
  saved one inside `quantize_scope()`.

  tfmot starts every quantization range at [-6, 6]; weight ranges follow the weights from the
  first training step, activation ranges move as an exponential moving average (decay 0.999),
  so predictions before fine-tuning can differ a lot from the float model's.
  """
  registry = _qk.default_8bit.Default8BitQuantizeRegistry()

  def annotate(layer):
    new = _copy_layer(layer)
    if isinstance(layer, keras.layers.InputLayer):
      return new
    # BatchNormalization is not in the registry: the layout transform folds it with its conv.
    if registry.supports(layer) or isinstance(layer, keras.layers.BatchNormalization):
      return _qk.quantize_annotate_layer(new)
    return _qk.quantize_annotate_layer(new, quantize_config=NoOpQuantizeConfig())

  with quantize_scope():
    annotated = keras.models.clone_model(model, clone_function=annotate)
    return _qk.quantize_apply(annotated, scheme=_Scheme())


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
    from sqznet_tf.models.layers import ceil_pool_padding  # pylint: disable=g-import-not-at-top
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
  from sqznet_tf.models import CUSTOM_OBJECTS  # pylint: disable=g-import-not-at-top
  ceil_pool = CUSTOM_OBJECTS["CeilMaxPool2D"]
  if not any(isinstance(l, ceil_pool) for l in model.layers):
    return model

  def clone(layer):
    if isinstance(layer, ceil_pool):
      return _EdgeCeilMaxPool2D.from_config(layer.get_config())
    return _copy_layer(layer)  # reusing `layer` would add inbound nodes to `model`'s layers

  with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
    return keras.models.clone_model(model, clone_function=clone)


def int8_tflite(model, representative_images, full_integer: bool = True) -> bytes:
  """Post-training int8 quantization of `model` into a TFLite flatbuffer.

  Args:
    model: a tf_keras model. Its CeilMaxPool2D layers are converted through an equivalent
      that pads by repeating the edge instead of with -inf (see _EdgeCeilMaxPool2D).
    representative_images: float32 array (n, h, w, c) of preprocessed inputs; the converter
      calibrates activation ranges on them, one image at a time.
    full_integer: ask for int8 builtin ops only (TFLITE_BUILTINS_INT8); input and output stay
      float32. The converter still leaves ops that have no int8 kernel (e.g. LRN) in float
      between QUANTIZE/DEQUANTIZE pairs; `tflite_float_ops` lists them. Without it, the
      converter may also keep float ops where their int8 version is less accurate.

  Returns:
    The flatbuffer bytes.

  Raises:
    SqznetError: for an empty or non-4D image batch, or when the converter fails (with the
      converter's first error message).
  """
  images = np.asarray(representative_images, dtype=np.float32)
  if images.ndim != 4 or not len(images):
    raise SqznetError(f"representative_images of shape {images.shape} are not accepted; "
                      "expected a non-empty float32 batch (n, height, width, channels)")

  def representative_dataset():
    for i in range(len(images)):
      yield [images[i:i + 1]]

  converter = tf.lite.TFLiteConverter.from_keras_model(_for_conversion(model))
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = representative_dataset
  if full_integer:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  try:
    with warnings.catch_warnings():
      # Float input/output are asked for on purpose: there are no input statistics to give.
      warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
      return bytes(converter.convert())
  except Exception as e:  # pylint: disable=broad-except
    raise SqznetError(f"int8 TFLite conversion of {model.name} failed: {_first_error_line(e)}") from e


def _first_error_line(e: Exception) -> str:
  """The converter's first "error: ..." message (without MLIR locations), else its first line."""
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  for line in lines:
    if "error: " in line:
      return line.rsplit("error: ", 1)[1]
  return lines[0] if lines else type(e).__name__


def _interpreter(tflite_bytes: bytes):
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  except ImportError:
    with warnings.catch_warnings():
      # The fallback is deliberate: silence "tf.lite.Interpreter is deprecated ... use ai_edge_litert".
      warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
      return tf.lite.Interpreter(model_content=tflite_bytes)
  return Interpreter(model_content=tflite_bytes)


def tflite_float_ops(tflite_bytes: bytes) -> List[str]:
  """Names of the ops of a flatbuffer that compute in float32 (QUANTIZE/DEQUANTIZE excluded).

  Empty for a fully integer model. The converter keeps ops that have no int8 kernel (LRN, for
  one) in float between QUANTIZE/DEQUANTIZE pairs even when only int8 builtins are requested.
  """
  interpreter = _interpreter(tflite_bytes)
  tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
  out = []
  for op in interpreter._get_ops_details():  # pylint: disable=protected-access
    if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
      continue
    ids = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and i in tensors]
    if any(tensors[i]["dtype"] == np.float32 for i in ids):
      out.append(op["op_name"])
  return out


def tflite_predict(tflite_bytes: bytes, images, batch_size: Optional[int] = None) -> np.ndarray:
  """Runs a TFLite flatbuffer on images, `batch_size` at a time (default all); (n, ...) float32.

  Int8 inputs/outputs are (de)quantized with the tensors' scale and zero point.
  """
  images = np.asarray(images, dtype=np.float32)
  interpreter = _interpreter(tflite_bytes)
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
