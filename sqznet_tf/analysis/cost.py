"""Per-layer cost of a Keras model: parameters, compute and memory traffic.

For each layer: output shape, parameters, multiply-accumulates (MACs), weight bytes, activation
bytes (its output), input bytes, and arithmetic intensity = MACs / (input + weight + output
bytes), i.e. MACs per byte moved if each tensor crosses memory once. All counts are per image.

MACs count conv and dense layers only (a KxK conv with Cin inputs, G groups and an HxWxCout
output costs H*W*Cout*K*K*Cin/G); biases, pooling and element-wise layers add no MACs. This is
the convention behind torchvision's "GFLOPS" column and the figures of REFERENCE.md.
"""

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from sqznet_tf._keras import keras
from sqznet_tf.analysis import storage
from sqznet_tf.errors import SqznetError
from sqznet_tf.models import build, get_config

# Layers that real runtimes fuse into the op before them; listed only with all_layers=True.
FUSED_TYPES = ("InputLayer", "ReLU", "Activation", "Dropout")


@dataclasses.dataclass
class LayerCost:
  """Cost of one layer, per image. Bytes assume `bytes_per_element` per value."""
  name: str
  type: str
  output_shape: Tuple[Optional[int], ...]
  params: int
  macs: int
  weight_bytes: int
  input_bytes: int
  activation_bytes: int
  kernel_zeros: int = 0  # kernel weights that are exactly zero (pruned), conv and dense layers

  @property
  def intensity(self) -> float:
    moved = self.input_bytes + self.weight_bytes + self.activation_bytes
    return self.macs / moved if moved else 0.0

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["output_shape"] = list(self.output_shape)
    d["intensity"] = round(self.intensity, 3)
    return d

  def sparsity(self, kernel_size: int) -> float:
    return self.kernel_zeros / kernel_size if kernel_size else 0.0


@dataclasses.dataclass
class CostReport:
  """Per-layer costs and totals of one model at one input size."""
  model: str
  input_size: Tuple[Optional[int], ...]
  params: int
  macs: int
  weight_bytes: int
  activation_bytes: int
  layers: List[LayerCost]
  kernel_and_bias: List[Tuple[str, int, int]]  # (layer, kernel weights, biases) of weighted layers
  bytes_per_element: int = 4

  @property
  def intensity(self) -> float:
    moved = self.weight_bytes + self.activation_bytes
    return self.macs / moved if moved else 0.0

  def sizes(self, density: Optional[float] = None, bits: Optional[int] = None, index_bits: int = 4) -> Dict:
    """Model size in bytes at fp32 / fp16 / int8, and Deep Compression's size if asked."""
    out = {"fp32": storage.size_bytes(self.params, 32), "fp16": storage.size_bytes(self.params, 16),
           "int8": storage.size_bytes(self.params, 8)}
    if density is not None or bits is not None:
      d = 1.0 if density is None else density
      b = 32 if bits is None else bits
      dc = storage.deep_compression_bytes([(k, b_) for _, k, b_ in self.kernel_and_bias], d, b, index_bits)
      out["deep_compression"] = dict(dc, density=d, bits=b, index_bits=index_bits)
    return out

  @property
  def kernel_weights(self) -> int:
    return sum(k for _, k, _ in self.kernel_and_bias)

  @property
  def kernel_zeros(self) -> int:
    return sum(l.kernel_zeros for l in self.layers)

  def sparsity_rows(self) -> List[dict]:
    """Per weighted layer: kernel weights, zeros and sparsity (the pruning report's layout)."""
    zeros = {l.name: l.kernel_zeros for l in self.layers}
    return [{"layer": n, "weights": k, "zeros": zeros[n], "sparsity": zeros[n] / k if k else 0.0}
            for n, k, _ in self.kernel_and_bias]

  def to_dict(self, density=None, bits=None, index_bits=4, all_layers=False) -> dict:
    return {
        "model": self.model,
        "input_size": list(self.input_size),
        "params": self.params,
        "macs": self.macs,
        "weight_bytes": self.weight_bytes,
        "activation_bytes": self.activation_bytes,
        "intensity": round(self.intensity, 3),
        "kernel_sparsity": round(self.kernel_zeros / self.kernel_weights, 4) if self.kernel_weights else 0.0,
        "sizes": self.sizes(density, bits, index_bits),
        "layers": [l.to_dict() for l in self.layers if all_layers or l.type not in FUSED_TYPES],
    }


def _elements(shape) -> int:
  dims = list(shape[1:])
  if any(d is None for d in dims):
    raise SqznetError(f"cost analysis needs static shapes; a layer has shape {tuple(shape)} "
                      "(give the model a fixed input size)")
  return math.prod(dims)


def _shapes(tensors) -> List[Tuple]:
  if not isinstance(tensors, (list, tuple)):
    tensors = [tensors]
  return [tuple(t.shape) for t in tensors]


def layer_macs(layer) -> int:
  """Multiply-accumulates of one layer per image (conv and dense layers; 0 otherwise)."""
  out_shape = _shapes(layer.output)[0]
  if isinstance(layer, keras.layers.DepthwiseConv2D):
    kh, kw = layer.kernel_size
    return _elements(out_shape) * kh * kw
  if isinstance(layer, keras.layers.Conv2D):
    kh, kw = layer.kernel_size
    in_ch = _shapes(layer.input)[0][-1]
    return _elements(out_shape) * kh * kw * in_ch // layer.groups
  if isinstance(layer, keras.layers.Dense):
    in_features = _shapes(layer.input)[0][-1]
    return _elements(out_shape) * in_features
  return 0


def _kernel_and_bias(layer) -> Optional[Tuple[int, int]]:
  kernel = getattr(layer, "kernel", None)
  if kernel is None:
    kernel = getattr(layer, "depthwise_kernel", None)
  if kernel is None:
    return None
  bias = getattr(layer, "bias", None)
  return int(kernel.shape.num_elements()), int(bias.shape.num_elements()) if bias is not None else 0


def analyze_model(model, bytes_per_element: int = 4) -> CostReport:
  """Cost of every layer of a built Keras model with a static input size.

  Args:
    model: a tf_keras Model (functional or sequential) with static input shapes.
    bytes_per_element: bytes per weight and activation value (4 for fp32).
  """
  layers, kb = [], []
  for layer in model.layers:
    out_shape = _shapes(layer.output)[0]
    params = int(layer.count_params())
    in_bytes = 0 if isinstance(layer, keras.layers.InputLayer) else sum(
        _elements(s) for s in _shapes(layer.input)) * bytes_per_element
    layers.append(LayerCost(
        name=layer.name, type=type(layer).__name__, output_shape=tuple(out_shape[1:]), params=params,
        macs=int(layer_macs(layer)), weight_bytes=params * bytes_per_element, input_bytes=in_bytes,
        activation_bytes=_elements(out_shape) * bytes_per_element))
    pair = _kernel_and_bias(layer)
    if pair:
      kb.append((layer.name, *pair))
      kernel = getattr(layer, "kernel", None)
      if kernel is None:
        kernel = layer.depthwise_kernel
      layers[-1].kernel_zeros = int(np.count_nonzero(kernel.numpy() == 0))
  shown = [l for l in layers if l.type not in FUSED_TYPES]
  return CostReport(
      model=model.name, input_size=tuple(_shapes(model.inputs[0])[0][1:]),
      params=int(model.count_params()), macs=sum(l.macs for l in layers),
      weight_bytes=sum(l.weight_bytes for l in layers),
      activation_bytes=sum(l.activation_bytes for l in shown) + sum(
          l.activation_bytes for l in layers if l.type == "InputLayer"),
      layers=layers, kernel_and_bias=kb, bytes_per_element=bytes_per_element)


def analyze(name: str, input_size: Optional[int] = None, classes: int = 1000, weights=None,
            **overrides) -> CostReport:
  """Builds the registered model `name` at a square `input_size` and analyses it.

  Args:
    name: a registry name (see `sqznet_tf.list_models()`).
    input_size: input side in pixels; default: the variant's own (224 or 227).
    classes: number of classes of the classifier.
    weights: optional weights to load ("imagenet", a .net file, Keras weights), so that the
      report counts their zero (pruned) kernel weights.
    **overrides: metaparameter overrides (squeeze_ratio=0.75, ...).
  """
  config = get_config(name, **overrides)
  if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int)
                                 or input_size < 1):
    raise SqznetError(f"input_size={input_size!r} is not accepted; expected a positive integer")
  size = input_size or config.default_input_size
  model = build(config, input_shape=(size, size, 3), classes=classes, weights=weights)
  report = analyze_model(model)
  keras.backend.clear_session()
  return report


def five_by_five_vs_two_3x3(c: int, c_prime: int, n: int) -> Dict[str, int]:
  """Closed-form counts of REFERENCE.md section 6: one 5x5 conv vs two stacked 3x3 convs.

  A 5x5 conv with 1 input channel and `c` outputs on an n x n output costs 25*c*n*n multiplies;
  two stacked 3x3 convs (1 -> c -> c_prime), same padding, cost 9*c*n*n + 9*c*c_prime*n*n =
  9*c*(1 + c_prime)*n*n. Weights (no biases): 25*c vs 9*c + 9*c*c_prime.
  """
  for nm, v in (("c", c), ("c_prime", c_prime), ("n", n)):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise SqznetError(f"{nm}={v!r} is not accepted; expected a positive integer")
  return {
      "conv5x5_macs": 25 * c * n * n,
      "two_3x3_macs": 9 * c * (1 + c_prime) * n * n,
      "conv5x5_weights": 25 * c,
      "two_3x3_weights": 9 * c + 9 * c * c_prime,
  }


def kernel_example_models(c: int, c_prime: int, n: int):
  """The two Keras models of `five_by_five_vs_two_3x3` (no biases), for checking the formula."""
  x = keras.Input((n, n, 1))
  one = keras.Model(x, keras.layers.Conv2D(c, 5, padding="same", use_bias=False)(x), name="conv5x5")
  y = keras.layers.Conv2D(c, 3, padding="same", use_bias=False)(x)
  y = keras.layers.Conv2D(c_prime, 3, padding="same", use_bias=False)(y)
  two = keras.Model(x, y, name="two_3x3")
  return one, two


def compare(names: Sequence[str], input_size: Optional[int] = None, classes: int = 1000,
            **overrides) -> List[CostReport]:
  """Analyses several registered models (each at its own default size unless given)."""
  return [analyze(n, input_size=input_size, classes=classes, **overrides) for n in names]
