"""Per-layer code widths chosen to a byte budget: measured cost and measured sensitivity.

For each coded layer and each candidate width, two numbers:
- bytes: the layer's record in the `.sqz` file at that width (k-means sharing, then the
  container's own encoder: the exact bytes, Huffman coding and layout choice included);
- sensitivity: the divergence from the teacher (KL of the predictions on a few photos) when that
  layer alone is shared at that width and every other layer keeps its weights.
`choose_widths` then solves the multiple-choice knapsack exactly (dynamic programme over byte
units): the widths whose summed sensitivity is least among those whose records fit the budget.
The sum is an estimate (errors of different layers are not exactly additive); the pipeline
measures the chosen mix afterwards and distillation trains it.
"""

import dataclasses
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from sqznet_tf.compression import sharing
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats import sqz
from sqznet_tf.formats.sqz import Coded

DEFAULT_WIDTHS = (3, 4, 5, 6, 7, 8)


@dataclasses.dataclass
class LayerCosts:
  """Bytes and sensitivity of one layer at each candidate width."""
  name: str
  nbytes: Dict[int, int]
  sensitivity: Dict[int, float] = dataclasses.field(default_factory=dict)
  shared: Dict[int, sharing.Shared] = dataclasses.field(default_factory=dict)


def check_widths(widths: Iterable[int]) -> Tuple[int, ...]:
  out = tuple(sorted(set(sharing.check_bits(w) for w in widths)))
  if not out:
    raise SqznetError("no candidate code widths given; expected some of 1..8")
  return out


def record_bytes(name: str, index: int, s: sharing.Shared, bits: int, entropy: bool = True, layout: str = "auto",
                 index_bits: int = 0) -> int:
  """Bytes of one coded tensor's record in a `.sqz` file (its header included)."""
  _, stats = sqz.encode([(name, index, Coded(s.codebook, s.codes, bits))], {}, entropy=entropy, layout=layout,
                        index_bits=index_bits)
  return stats[0].nbytes


def layer_costs(model, names: Sequence[str], widths: Sequence[int], init: str = "optimal", entropy: bool = True,
                layout: str = "auto", index_bits: int = 0,
                importance: Optional[Dict[str, np.ndarray]] = None) -> List[LayerCosts]:
  """Sharing of each kernel at each width (weighted by `importance` where given), and the bytes of its record."""
  widths = check_widths(widths)
  by_name = {l.name: l for l in model.layers}
  out = []
  for name in names:
    layer = by_name[name]
    kernel = layer.get_weights()[0]
    index = next(i for i, w in enumerate(layer.weights) if w is layer.kernel)
    costs = LayerCosts(name, {})
    for bits in widths:
      s = sharing.share(kernel, bits, init, importance=(importance or {}).get(name))
      costs.shared[bits] = s
      costs.nbytes[bits] = record_bytes(name, index, s, bits, entropy, layout, index_bits)
    out.append(costs)
  return out


def measure_sensitivity(model, costs: List[LayerCosts], divergence_fn: Callable[[object], float],
                        log: Callable[[str], None] = lambda s: None) -> None:
  """Fills each `LayerCosts.sensitivity`: `divergence_fn(model)` with that layer alone shared at
  that width (its kernel is put back afterwards)."""
  by_name = {l.name: l for l in model.layers}
  total = sum(len(c.shared) for c in costs)
  done = 0
  for c in costs:
    layer = by_name[c.name]
    original = layer.get_weights()
    index = next(i for i, w in enumerate(layer.weights) if w is layer.kernel)
    try:
      for bits, s in sorted(c.shared.items()):
        values = list(original)
        values[index] = s.kernel
        layer.set_weights(values)
        c.sensitivity[bits] = float(divergence_fn(model))
        done += 1
      log(f"sensitivity {done}/{total}: {c.name} " + ", ".join(f"{b} bits {v:.4f}" for b, v in
                                                                 sorted(c.sensitivity.items())))
    finally:
      layer.set_weights(original)


def check_fits(costs: List[LayerCosts], budget: int) -> None:
  """Raises SqznetError if the coded layers exceed `budget` bytes even at their narrowest widths."""
  least = sum(min(c.nbytes.values()) for c in costs)
  if least > budget:
    raise SqznetError(f"the coded layers need at least {least:,} bytes at the narrowest widths "
                      f"({min(min(c.nbytes) for c in costs)} bits); the budget leaves them {budget:,}")


def choose_widths(costs: List[LayerCosts], budget: int, units: int = 4000) -> Dict[str, int]:
  """The widths of least summed sensitivity whose records total at most `budget` bytes.

  Exact multiple-choice knapsack over byte units of ceil(budget / units) bytes (each layer's bytes
  rounded up, so the choice never exceeds the budget).

  Raises:
    SqznetError: if even the narrowest widths do not fit.
  """
  if not costs:
    return {}
  check_fits(costs, budget)
  unit = max(1, -(-budget // units))
  cap = budget // unit
  inf = np.inf
  best = np.zeros(cap + 1)  # best[u]: least sensitivity of the layers so far within u units
  choices = []
  for c in costs:
    options = sorted(c.nbytes)
    new = np.full(cap + 1, inf)
    arg = np.full(cap + 1, -1, dtype=np.int64)
    for k, bits in enumerate(options):
      w = -(-c.nbytes[bits] // unit)
      if w > cap:
        continue
      cand = np.full(cap + 1, inf)
      cand[w:] = best[:cap + 1 - w] + c.sensitivity.get(bits, 0.0)
      better = cand < new
      new[better], arg[better] = cand[better], k
    best = new
    choices.append((options, arg))
  if not np.isfinite(best[cap]):
    raise SqznetError(f"no combination of widths fits {budget:,} bytes")
  out, u = {}, cap
  for c, (options, arg) in zip(reversed(costs), reversed(choices)):
    bits = options[int(arg[u])]
    out[c.name] = bits
    u -= -(-c.nbytes[bits] // unit)
  return {c.name: out[c.name] for c in costs}
