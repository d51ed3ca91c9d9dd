"""Which channel units to remove: importance criteria, the cost of what remains, and budgets.

Criteria (a score per unit; low scores go first):
  l1, l2     the norm of the unit's filters (kernel and bias), mean over its filters' weights so that
             a 3x3 filter and a 1x1 filter compare; summed over the filters a bypass ties together.
  bn_scale   |gamma| of the unit's batch-norm entries (network slimming, Liu et al. 2017).
  taylor     first-order Taylor estimate of the loss change when the unit goes, from a few batches:
             (sum over the unit's parameters of gradient * weight)^2, averaged over the batches
             (Molchanov et al. 2019).
Scores are divided by the mean score of their layer before a global ranking, so that layers of
different fan-in compete on equal terms.

Budgets: the multiply-adds (MACs) or parameters of the network that remains, as a count or as a
fraction of the original. Two ways to spend them:
  global     one ranking over all units; the lowest go until the target is met.
  uniform    every layer loses the same share of its units (its lowest), the smallest share that
             meets the target.
Every layer keeps at least `min_keep` of its units (and at least one).

`CostModel` counts what a set of removed units leaves, layer by layer, as `analysis.analyze_model`
counts a built network (parameters: every weight, batch-norm statistics included; MACs: the
convolutions and dense layers), without building anything.
"""

import dataclasses
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from sqznet_tf._keras import keras, tf
from sqznet_tf.errors import SqznetError
from sqznet_tf.pruning.channels import ChannelUnit

CRITERIA = ("l1", "l2", "bn_scale", "taylor")
METRICS = ("macs", "params")
MODES = ("global", "uniform")


def _layer(model, name):
  return model.get_layer(name)


def unit_layer(unit: ChannelUnit) -> str:
  """The layer a unit is ranked with: that of its first filter."""
  return unit.filters[0][0]


# ---------------------------------------------------------------------------------------------
# Criteria


def _norm_scores(model, units: Sequence[ChannelUnit], p: int) -> np.ndarray:
  weights = {}
  scores = np.zeros(len(units))
  for i, u in enumerate(units):
    for name, j in u.filters:
      if name not in weights:
        weights[name] = _layer(model, name).get_weights()
      w = np.concatenate([weights[name][0][..., j].ravel()] + [weights[name][1][j:j + 1]
                                                                for _ in range(len(weights[name]) > 1)])
      scores[i] += np.mean(np.abs(w)) if p == 1 else np.sqrt(np.mean(np.square(w)))
  return scores


def _bn_scores(model, units: Sequence[ChannelUnit]) -> np.ndarray:
  gammas = {}
  scores = np.zeros(len(units))
  for i, u in enumerate(units):
    if not u.per_channel:
      raise SqznetError(f"criterion bn_scale needs batch norm behind every channel; {unit_layer(u)} has none "
                        f"in {model.name}: use l1, l2 or taylor")
    for name, c in u.per_channel:
      if name not in gammas:
        gammas[name] = _layer(model, name).get_weights()[0]
      scores[i] += abs(gammas[name][c])
  return scores


def _from_logits(model) -> bool:
  try:
    return model.get_layer("predictions").get_config().get("activation") != "softmax"
  except ValueError:
    return True


def _taylor_scores(model, units: Sequence[ChannelUnit], batches: Iterable[Tuple]) -> np.ndarray:
  """(sum over each unit's parameters of g * w)^2, averaged over `batches` of (images, one-hot labels)."""
  entries: Dict[str, List[Tuple[int, str, int]]] = {}  # layer -> (unit, "filter" | "channel", index)
  for i, u in enumerate(units):
    for name, j in u.filters:
      entries.setdefault(name, []).append((i, "filter", j))
    for name, c in u.per_channel:
      entries.setdefault(name, []).append((i, "channel", c))
  layers = [_layer(model, name) for name in entries]
  variables = [(layer.name, k, v) for layer in layers for k, v in enumerate(layer.trainable_weights)]
  loss_fn = keras.losses.CategoricalCrossentropy(from_logits=_from_logits(model))
  total, n = np.zeros(len(units)), 0
  for x, y in batches:
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=False))
    grads = tape.gradient(loss, [v for _, _, v in variables])
    per_unit = np.zeros(len(units))
    for (name, _, v), g in zip(variables, grads):
      if g is None:
        continue
      gw = (g * v).numpy()
      for i, kind, j in entries[name]:
        per_unit[i] += gw[..., j].sum()  # a kernel's output axis, or a bias / batch-norm vector's entry
    total += per_unit ** 2
    n += 1
  if not n:
    raise SqznetError("criterion taylor needs at least one batch of training data")
  return total / n


def scores(model, units: Sequence[ChannelUnit], criterion: str, batches: Optional[Iterable[Tuple]] = None
           ) -> np.ndarray:
  """The importance of each unit under `criterion` (see the module doc), before normalisation."""
  if criterion not in CRITERIA:
    raise SqznetError(f"criterion={criterion!r} is not accepted; expected one of {', '.join(CRITERIA)}")
  if criterion in ("l1", "l2"):
    return _norm_scores(model, units, 1 if criterion == "l1" else 2)
  if criterion == "bn_scale":
    return _bn_scores(model, units)
  if batches is None:
    raise SqznetError("criterion taylor needs training data (a few batches)")
  return _taylor_scores(model, units, batches)


def normalise(units: Sequence[ChannelUnit], raw: np.ndarray) -> np.ndarray:
  """Each score divided by the mean score of its layer's units (a layer of zeros stays zero)."""
  out = np.array(raw, dtype=np.float64)
  groups: Dict[str, List[int]] = {}
  for i, u in enumerate(units):
    groups.setdefault(unit_layer(u), []).append(i)
  for idx in groups.values():
    mean = float(np.mean(out[idx]))
    if mean > 0:
      out[idx] /= mean
  return out


# ---------------------------------------------------------------------------------------------
# Cost


@dataclasses.dataclass
class _Reader:
  """A convolution or dense layer: MACs = spatial * kernel * (in_channels * rows / groups) * out."""
  spatial: int
  kernel: int
  rows: int  # inputs per input channel (the positions of a Flatten before a Dense layer; else 1)
  groups: int
  bias: bool
  in_channels: int
  out: int


class CostModel:
  """Parameters and MACs of `model` with units removed, as `analysis.analyze_model` counts them."""

  def __init__(self, model, units: Sequence[ChannelUnit]):
    self.units = units
    self.readers: Dict[str, _Reader] = {}
    self.bn: Dict[str, Tuple[int, int]] = {}  # name -> (channels, values per channel)
    for layer in model.layers:
      if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and not isinstance(
          layer, keras.layers.DepthwiseConv2D):
        kernel = layer.kernel.shape
        in_dim = int(layer.input_shape[-1])
        if isinstance(layer, keras.layers.Conv2D):
          spatial = int(np.prod(layer.output_shape[1:3]))
          k, groups = int(np.prod(kernel[:2])), layer.groups
        else:
          spatial, k, groups = 1, 1, 1
        self.readers[layer.name] = _Reader(spatial, k, 1, groups, layer.use_bias, in_dim, int(kernel[-1]))
      elif isinstance(layer, keras.layers.BatchNormalization):
        n = int(layer.input_shape[-1])
        self.bn[layer.name] = (n, len(layer.get_weights()))
    for u in units:  # a Dense layer behind a Flatten: rows per channel
      for name, _, period in u.inputs:
        r = self.readers[name]
        if period and r.rows == 1:
          r.rows = r.in_channels // period
          r.in_channels = period
    tracked = sum(self._params(r) for r in self.readers.values()) + sum(n * v for n, v in self.bn.values())
    self.other_params = int(model.count_params()) - tracked

  @staticmethod
  def _params(r: _Reader, d_in: int = 0, d_out: int = 0) -> int:
    out = r.out - d_out
    return r.kernel * ((r.in_channels - d_in) * r.rows // r.groups) * out + (out if r.bias else 0)

  @staticmethod
  def _macs(r: _Reader, d_in: int = 0, d_out: int = 0) -> int:
    return r.spatial * r.kernel * ((r.in_channels - d_in) * r.rows // r.groups) * (r.out - d_out)

  def cost(self, drop: Iterable[int]) -> Dict[str, int]:
    """{"params", "macs"} of the network without the units `drop`."""
    d_in: Dict[str, int] = {}
    d_out: Dict[str, int] = {}
    d_bn: Dict[str, int] = {}
    for i in drop:
      u = self.units[i]
      for name, _ in u.filters:
        d_out[name] = d_out.get(name, 0) + 1
      for name, _, _ in u.inputs:
        d_in[name] = d_in.get(name, 0) + 1
      for name, _ in u.per_channel:
        d_bn[name] = d_bn.get(name, 0) + 1
    params = self.other_params + sum(self._params(r, d_in.get(n, 0), d_out.get(n, 0)) for n, r in self.readers.items())
    params += sum((c - d_bn.get(n, 0)) * v for n, (c, v) in self.bn.items())
    macs = sum(self._macs(r, d_in.get(n, 0), d_out.get(n, 0)) for n, r in self.readers.items())
    return {"params": int(params), "macs": int(macs)}


# ---------------------------------------------------------------------------------------------
# Budgets


def resolve_target(value: float, metric: str, full: int) -> int:
  """A target given as a fraction of the original (0 < value < 1) or as a count (value >= 1)."""
  if metric not in METRICS:
    raise SqznetError(f"target metric {metric!r} is not accepted; expected one of {', '.join(METRICS)}")
  if not value > 0 or value == 1:  # (NaN fails the first test)
    raise SqznetError(f"target {metric}={value!r} is not accepted; expected a fraction in (0, 1) of the "
                      f"original {full:,}, or a count below it")
  target = int(round(value * full)) if value < 1 else int(value)
  if target >= full:
    raise SqznetError(f"target {metric}={value!r} ({target:,}) is not accepted: the network has {full:,} "
                      f"{metric}; expected fewer (a fraction in (0, 1), or a smaller count)")
  return target


def _groups(units: Sequence[ChannelUnit], scores: np.ndarray) -> Dict[str, List[int]]:
  """Per ranking layer: its unit indices, lowest score first."""
  groups: Dict[str, List[int]] = {}
  for i, u in enumerate(units):
    groups.setdefault(unit_layer(u), []).append(i)
  return {k: sorted(v, key=lambda i: (scores[i], i)) for k, v in groups.items()}


def _floor(n: int, min_keep: float) -> int:
  return max(1, int(np.ceil(min_keep * n)))


def _chunks(order: List[int], n: int, floor: int, round_to: int) -> List[List[int]]:
  """A layer's removable units (`order`: lowest score first, `n` units in all) in the chunks it may lose
  so that what it keeps stays a multiple of `round_to` (the first chunk takes the remainder) and at
  least `floor` (rounded up to a multiple)."""
  if n <= round_to:
    return [[i] for i in order[:n - floor]] if round_to == 1 else []
  keep_min = -(-max(floor, round_to) // round_to) * round_to
  first = n % round_to
  out, i = [], 0
  size = first or round_to
  while i + size <= len(order) and n - (i + size) >= keep_min:
    out.append(order[i:i + size])
    i += size
    size = round_to
  return out


def smallest(units: Sequence[ChannelUnit], scores: np.ndarray, min_keep: float = 0.1, round_to: int = 1
             ) -> List[int]:
  """The units `select` removes for the smallest network its floors allow."""
  groups = _groups(units, scores)
  return sorted(i for k, v in groups.items() for chunk in _chunks(v, len(v), _floor(len(v), min_keep), round_to)
                for i in chunk)


def select(units: Sequence[ChannelUnit], scores: np.ndarray, cost: CostModel, metric: str, target: int,
           mode: str = "global", min_keep: float = 0.1, round_to: int = 1,
           progress: Callable[[str], None] = lambda s: None) -> List[int]:
  """Unit indices to remove so that `metric` of what remains is at most `target` (see the module doc).

  With `round_to` > 1 every layer keeps a multiple of that many channels (or all of them): kernels
  of CPU libraries (oneDNN, XNNPACK) run odd channel counts slower, enough to cancel the saving.

  Raises:
    SqznetError: when even the smallest network the floors allow is above the target.
  """
  if mode not in MODES:
    raise SqznetError(f"mode={mode!r} is not accepted; expected one of {', '.join(MODES)}")
  if not 0 <= min_keep < 1:
    raise SqznetError(f"min_keep={min_keep!r} is not accepted; expected a fraction in [0, 1)")
  if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
    raise SqznetError(f"round_to={round_to!r} is not accepted; expected an integer >= 1")
  groups = _groups(units, scores)
  chunks = {k: _chunks(v, len(v), _floor(len(v), min_keep), round_to) for k, v in groups.items()}
  smallest = cost.cost([i for c in chunks.values() for chunk in c for i in chunk])[metric]
  if smallest > target:
    raise SqznetError(f"target {metric}={target:,} is below the smallest network that keeps {min_keep:.0%} of "
                      f"every layer{f' in multiples of {round_to}' if round_to > 1 else ''} ({smallest:,} "
                      f"{metric}); lower --min_keep{' or --round_to' if round_to > 1 else ''}, or aim higher")
  if mode == "global":
    # Chunks in order of their mean score; within a layer they come lowest first.
    order = sorted((chunk for c in chunks.values() for chunk in c),
                   key=lambda chunk: (float(np.mean([scores[i] for i in chunk])), chunk[0]))
    lo, hi = 0, len(order)  # the fewest lowest-ranked chunks that meet the target (cost falls with each)
    while lo < hi:
      mid = (lo + hi) // 2
      if cost.cost([i for chunk in order[:mid] for i in chunk])[metric] <= target:
        hi = mid
      else:
        lo = mid + 1
    drop = [i for chunk in order[:lo] for i in chunk]
    progress(f"global ranking: {len(drop)} of {len(units)} units go")
    return sorted(drop)

  def take(share):
    out = []
    for k, c in chunks.items():
      want = int(share * len(groups[k]))
      got = 0
      for chunk in c:
        if got + len(chunk) > want:
          break
        out += chunk
        got += len(chunk)
    return out
  lo, hi = 0.0, 1.0
  for _ in range(40):
    mid = (lo + hi) / 2
    if cost.cost(take(mid))[metric] <= target:
      hi = mid
    else:
      lo = mid
  drop = take(hi)
  # Equal shares move in steps of whole chunks in every layer at once, so they overshoot the target:
  # give chunks back (highest mean score first) while the target still holds.
  taken = set(drop)
  back = [chunk for c in chunks.values() for chunk in c if set(chunk) <= taken]
  for chunk in sorted(back, key=lambda chunk: -float(np.mean([scores[i] for i in chunk]))):
    trial = taken - set(chunk)
    if _keeps_chunks(trial, chunks) and cost.cost(trial)[metric] <= target:
      taken = trial
  progress(f"uniform: {hi:.1%} of every layer's units, {len(taken)} of {len(units)} go")
  return sorted(taken)


def _keeps_chunks(drop: set, chunks: Dict[str, List[List[int]]]) -> bool:
  """Whether every layer's removed chunks are a prefix of its chunk list (its lowest units go first)."""
  for c in chunks.values():
    gone = [set(chunk) <= drop for chunk in c]
    if gone != sorted(gone, reverse=True):
      return False
  return True
