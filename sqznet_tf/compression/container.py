"""A Keras model's weights as `.sqz` container tensors: kernels coded (weight-shared), the rest raw.

The codec itself (bytes <-> tensors) is `sqznet_tf.formats.sqz`; loading a container into a
model is `sqznet_tf.weights.load_container`, building one from it `sqznet_tf.loading.load_model`.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from sqznet_tf.compression import sharing
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats.sqz import Coded


def _is_kernel(layer, index: int) -> bool:
  kernel = getattr(layer, "kernel", None)
  return kernel is not None and index < len(layer.weights) and layer.weights[index] is kernel


def model_tensors(model, bits: Union[int, Dict[str, int]], shared: Optional[Dict[str, sharing.Shared]] = None,
                  coded_layers: Optional[Sequence[str]] = None) -> List[Tuple[str, int, Union[np.ndarray, Coded]]]:
  """The tensors of `model` for `encode`: kernels of Conv2D/Dense layers coded, the rest raw.

  Args:
    model: a Keras model whose kernels are already weight-shared (at most 2^bits - 1 distinct
      non-zero values each), unless `shared` gives their codebooks.
    bits: code width, or a dict of layer name -> code width (layers not in it: the "*" entry).
    shared: per layer name, the `sharing.Shared` form of its kernel.
    coded_layers: kernels to code (default: every Conv2D and Dense kernel); others stay raw.
  """
  widths = dict(bits) if isinstance(bits, dict) else {"*": bits}
  for w in widths.values():
    sharing.check_bits(w)
  shared = shared or {}
  out = []
  for layer in model.layers:
    values = layer.get_weights()
    for i, value in enumerate(values):
      if _is_kernel(layer, i) and (coded_layers is None or layer.name in coded_layers):
        width = widths.get(layer.name, widths.get("*"))
        if width is None:
          raise SqznetError(f"no code width for layer {layer.name}")
        s = shared.get(layer.name) or sharing.codebook_of(value, width, f"layer {layer.name}")
        if s.codes.shape != value.shape:
          raise SqznetError(f"layer {layer.name}: shared codes {s.codes.shape} do not fit kernel {value.shape}")
        out.append((layer.name, i, Coded(s.codebook, s.codes, width)))
      else:
        out.append((layer.name, i, value))
  return out


def model_config(model_name: str, build: Optional[dict] = None, info=None, **extra) -> dict:
  """The config a container carries: registry name, builder arguments, weights metadata."""
  conf = {"architecture": model_name, "build": dict(build or {})}
  if info is not None:
    conf["info"] = info.to_dict()
  conf.update(extra)
  return conf
