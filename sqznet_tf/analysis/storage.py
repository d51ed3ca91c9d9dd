"""Model size at a bit width, and Deep Compression's storage accounting.

Deep Compression (Han et al., arXiv:1510.00149) stores each pruned and weight-shared layer as a
codebook of 2^bits float32 centroids, one `bits`-bit code per stored weight, and one relative
index (the gap to the previous stored weight) of `index_bits` bits per stored weight; biases
stay float32. Pure Python: no TensorFlow.
"""

import math
from typing import Dict, Iterable, Tuple

from sqznet_tf.errors import SqznetError

BITS_CHOICES = (1, 2, 3, 4, 5, 6, 7, 8, 16, 32)


def size_bytes(num_params: int, bits: int = 32) -> int:
  """Bytes to store `num_params` values at `bits` bits each (dense, no index)."""
  return math.ceil(num_params * bits / 8)


def check_density(density: float) -> None:
  if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 < density <= 1:
    raise SqznetError(f"density={density!r} is not accepted; expected a fraction in (0, 1] "
                      "(the share of weights kept)")


def check_bits(bits: int, name: str = "bits") -> None:
  if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
    raise SqznetError(f"{name}={bits!r} is not accepted; expected an integer from 1 to 32")


def deep_compression_bytes(layers: Iterable[Tuple[int, int]], density: float, bits: int,
                           index_bits: int = 4, codebook_bits: int = 32, bias_bits: int = 32) -> Dict[str, int]:
  """Storage of a pruned, weight-shared model by Deep Compression's accounting.

  Args:
    layers: (kernel weights, biases) per weighted layer.
    density: share of kernel weights kept after pruning, in (0, 1].
    bits: bits per shared-weight code (codebook of 2^bits entries per layer).
    index_bits: bits of the relative index stored beside each weight (0 for a dense layout).
    codebook_bits: bits per codebook entry.
    bias_bits: bits per bias.

  Returns:
    A dict of byte counts: "codes", "index", "codebooks", "biases" and "total". Filler entries
    that bridge gaps longer than 2^index_bits - 1 are not counted, so this is a lower bound on a
    real file of that layout (the SqueezeNet release file is 1.5% larger than this count).
  """
  check_density(density)
  layers = list(layers)
  return stored_bytes([math.ceil(kernel * density) for kernel, _ in layers], sum(b for _, b in layers), bits,
                      index_bits, codebook_bits, bias_bits)


def stored_bytes(stored: Iterable[int], other: int, bits: int, index_bits: int = 4, codebook_bits: int = 32,
                 other_bits: int = 32) -> Dict[str, int]:
  """Deep Compression's accounting from the weights each layer stores: the one size model.

  Args:
    stored: kept (non-zero) kernel weights per weight-shared layer.
    other: values stored uncompressed (biases, batch-norm parameters), at `other_bits` each.
    bits, index_bits, codebook_bits: as in `deep_compression_bytes`.

  Returns:
    The dict of `deep_compression_bytes` ("biases" counts every uncompressed value).
  """
  check_bits(bits)
  if isinstance(index_bits, bool) or not isinstance(index_bits, int) or not 0 <= index_bits <= 32:
    raise SqznetError(f"index_bits={index_bits!r} is not accepted; expected an integer from 0 to 32")
  stored = [int(n) for n in stored]
  total_stored = sum(stored)
  out = {
      "stored_weights": total_stored,
      "codes": math.ceil(total_stored * bits / 8),
      "index": math.ceil(total_stored * index_bits / 8),
      "codebooks": math.ceil(len(stored) * 2 ** bits * codebook_bits / 8),
      "biases": math.ceil(other * other_bits / 8),
  }
  out["total"] = out["codes"] + out["index"] + out["codebooks"] + out["biases"]
  return out
