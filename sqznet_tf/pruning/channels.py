"""Channel dependency groups: which filters, batch-norm entries and input slices go together.

Removing one output channel of a convolution means removing its filter, its bias, the entry of
every per-channel layer behind it (batch norm) and the matching input slice of every layer that
reads it. In a Fire module the expand outputs are concatenated, so expand3x3 filter j is input
channel (expand1x1 filters + j) of the next squeeze; a bypass addition ties channel c of both its
inputs, so they can only go together; a Flatten before a Dense layer spreads channel c over every
spatial position. `channel_units` follows the Keras graph of any registry network and returns the
units that can be removed, each a set of such coupled parameters.

Channels that cannot be removed exactly are left out: the classifier's outputs (they are the
classes), channels that pass through local response normalisation (LRN sums over neighbouring
channels, so removing one changes the others) and the inputs and outputs of grouped convolutions
(their groups must stay equal).
"""

import dataclasses
import math
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from sqznet_tf._keras import keras
from sqznet_tf.errors import SqznetError
from sqznet_tf.models import configs

# Layers whose output channel c depends only on their input channel c.
_PER_CHANNEL = ("ReLU", "Activation", "Dropout", "MaxPooling2D", "AveragePooling2D", "CeilMaxPool2D",
                "ZeroPadding2D", "BatchNormalization")
_READERS = ("Conv2D", "Dense")

Label = Tuple[str, int]  # (producing layer, filter index)


@dataclasses.dataclass
class ChannelUnit:
  """One removable channel with everything coupled to it.

  Attributes:
    filters: (layer, filter index) of each producing convolution (more than one when a bypass
      addition ties them).
    per_channel: (layer, channel) of per-channel layers with parameters behind them (batch norm).
    inputs: (layer, input channel, period) of each layer reading the channel: a convolution's
      kernel slice [..., channel, :] (period 0), or a Dense kernel's rows channel + k * period
      after a Flatten of `period` channels.
  """
  filters: List[Label]
  per_channel: List[Label] = dataclasses.field(default_factory=list)
  inputs: List[Tuple[str, int, int]] = dataclasses.field(default_factory=list)


class _Union:
  def __init__(self):
    self.parent: Dict[Label, Label] = {}

  def find(self, a: Label) -> Label:
    self.parent.setdefault(a, a)
    while self.parent[a] != a:
      self.parent[a] = self.parent[self.parent[a]]
      a = self.parent[a]
    return a

  def join(self, a: Label, b: Label) -> None:
    ra, rb = self.find(a), self.find(b)
    if ra != rb:
      self.parent[max(ra, rb)] = min(ra, rb)


def _inbound(layer) -> List:
  nodes = layer.inbound_nodes
  if not nodes:
    return []
  inbound = nodes[0].inbound_layers
  return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def channel_units(model: "keras.Model") -> List[ChannelUnit]:
  """The removable channel units of a functional `model`, in layer order (see the module doc)."""
  union = _Union()
  labels: Dict[str, List[Optional[Label]]] = {}  # per layer output: the label of each channel
  flat_period: Dict[str, int] = {}  # Flatten layers: channels per spatial position
  per_channel: List[Tuple[str, Label, int]] = []
  reads: List[Tuple[str, Label, int, int]] = []
  fixed = set()
  for layer in model.layers:
    kind = type(layer).__name__
    if kind == "Activation" and layer.get_config().get("activation") == "softmax":
      kind = "Softmax"  # mixes the channels: not per-channel (below)
    inbound = _inbound(layer)
    if not inbound:  # the input
      labels[layer.name] = [None] * int(layer.output_shape[0][-1] if isinstance(layer.output_shape, list)
                                       else layer.output_shape[-1])
      continue
    ins = [labels[l.name] for l in inbound]
    if kind in _READERS:
      source = inbound[0].name
      period = flat_period.get(source, 0)
      grouped = getattr(layer, "groups", 1) > 1
      for c, label in enumerate(ins[0]):
        if label is not None:
          reads.append((layer.name, label, c, period))
          if grouped:
            fixed.add(label)
      filters = layer.filters if kind == "Conv2D" else layer.units
      labels[layer.name] = [(layer.name, j) for j in range(filters)]
      if grouped:
        fixed.update(labels[layer.name])
    elif kind == "Concatenate":
      labels[layer.name] = [label for part in ins for label in part]
    elif kind == "Add":
      for column in zip(*ins):
        for other in column[1:]:
          if column[0] is not None and other is not None:
            union.join(column[0], other)
      labels[layer.name] = list(ins[0])
    elif kind == "Flatten":
      flat_period[layer.name] = len(ins[0])
      labels[layer.name] = list(ins[0])  # channel c of every position: see `period`
    elif kind in _PER_CHANNEL:
      if inbound[0].name in flat_period:  # e.g. a Dropout between the Flatten and the Dense layer
        flat_period[layer.name] = flat_period[inbound[0].name]
      if kind == "BatchNormalization":
        per_channel.extend((layer.name, label, c) for c, label in enumerate(ins[0]) if label is not None)
      labels[layer.name] = list(ins[0])
    else:  # global pooling passes channels; anything else (LRN, softmax) may mix them: they stay
      if kind not in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        fixed.update(label for label in ins[0] if label is not None)
      labels[layer.name] = list(ins[0])
  for output in model.outputs:
    name = output.node.layer.name
    fixed.update(label for label in labels[name] if label is not None)
  units: Dict[Label, ChannelUnit] = {}
  order: List[Label] = []
  for layer in model.layers:
    if type(layer).__name__ in _READERS:
      for label in labels[layer.name]:
        root = union.find(label)
        if root not in units:
          units[root] = ChannelUnit(filters=[])
          order.append(root)
        units[root].filters.append(label)
  blocked = {union.find(label) for label in fixed}
  for name, label, c in per_channel:
    units[union.find(label)].per_channel.append((name, c))
  for name, label, c, period in reads:
    units[union.find(label)].inputs.append((name, c, period))
  return [units[root] for root in order if root not in blocked]


# ---------------------------------------------------------------------------------------------
# Removing units: a smaller network of the same family with the surviving weights.


@dataclasses.dataclass
class Removal:
  """What removing a set of units takes from each layer: output filters, per-channel entries (batch
  norm) and input rows (a Dense layer behind a Flatten loses every row of the channel)."""
  filters: Dict[str, Set[int]] = dataclasses.field(default_factory=dict)
  per_channel: Dict[str, Set[int]] = dataclasses.field(default_factory=dict)
  inputs: Dict[str, Set[Tuple[int, int]]] = dataclasses.field(default_factory=dict)

  @classmethod
  def of(cls, units: Sequence[ChannelUnit], drop: Iterable[int]) -> "Removal":
    r = cls()
    for i in drop:
      u = units[i]
      for name, j in u.filters:
        r.filters.setdefault(name, set()).add(j)
      for name, c in u.per_channel:
        r.per_channel.setdefault(name, set()).add(c)
      for name, c, period in u.inputs:
        r.inputs.setdefault(name, set()).add((c, period))
    return r

  def input_rows(self, name: str, size: int) -> List[int]:
    """Input indices of layer `name` (of `size` inputs) that go."""
    rows = set()
    for c, period in self.inputs.get(name, ()):
      rows.update(range(c, size, period) if period else (c,))
    return sorted(rows)


def _width(model, removal: Removal, name: str) -> int:
  layer = model.get_layer(name)
  n = layer.filters if hasattr(layer, "filters") else layer.units
  return n - len(removal.filters.get(name, ()))


def pruned_config(config, model, removal: Removal):
  """`config` with the widths that remain after `removal` as explicit config data (SqueezeNet: conv1_filters,
  fires and, with a bypass, bypass_kinds; AlexNet: conv_filters and fc_units)."""
  return config.replace(**channel_overrides(config, model, removal))


def channel_overrides(config, model, removal: Removal) -> dict:
  """The config fields that `removal` changes (see `pruned_config`), as overrides."""
  names = [layer.name for layer in model.layers]
  if config.family == "alexnet":
    out = {"conv_filters": tuple(_width(model, removal, f"conv{i}") for i in range(1, 6))}
    if "fc6" in names:
      out["fc_units"] = (_width(model, removal, "fc6"), _width(model, removal, "fc7"))
    return out
  fires = tuple(tuple(_width(model, removal, f"{c.name}_{part}") for part in ("squeeze1x1", "expand1x1", "expand3x3"))
                for c in configs.fire_channels(config))
  out = {"conv1_filters": _width(model, removal, "conv1"), "fires": fires}
  if config.bypass != "none" or config.bypass_kinds is not None:
    out["bypass_kinds"] = tuple(configs.bypass_kind(config, i) for i in range(configs.NUM_FIRE_MODULES))
  return out


WIDTH_FIELDS = ("conv1_filters", "fires", "bypass_kinds", "conv_filters", "fc_units")


def width_overrides(config) -> dict:
  """The width fields of a pruned config (as `pruned_config` sets them), as overrides."""
  fields = configs.config_fields(config)
  return {k: getattr(config, k) for k in WIDTH_FIELDS if k in fields and getattr(config, k) is not None}


def _classifier_activation(model) -> Optional[str]:
  try:
    layer = model.get_layer("predictions")
  except ValueError:
    return None
  return layer.get_config().get("activation")


def _relu_gaussian_mean(mu: float, sigma: float) -> float:
  """E[max(0, x)] for x ~ N(mu, sigma^2)."""
  if sigma <= 0:
    return max(mu, 0.0)
  z = mu / sigma
  return mu * 0.5 * (1 + math.erf(z / math.sqrt(2))) + sigma * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def expected_values(model, units: Sequence[ChannelUnit], drop: Iterable[int]) -> Dict[int, float]:
  """The mean value each dropped unit feeds its readers, where it can be known without data: a filter
  behind batch norm and a ReLU gives max(0, x) with x ~ N(beta, gamma^2) (batch norm's output
  distribution); the filters a bypass ties add up. Filters without batch norm count 0."""
  bn_of, relu_after = {}, set()
  for layer in model.layers:
    inbound = _inbound(layer)
    if len(inbound) != 1:
      continue
    kind = type(layer).__name__
    if kind == "BatchNormalization":
      bn_of[inbound[0].name] = layer
    elif kind == "ReLU":
      relu_after.add(inbound[0].name)
  out = {}
  for i in drop:
    total = 0.0
    for name, j in units[i].filters:
      bn = bn_of.get(name)
      if bn is None or bn.name not in relu_after:
        continue
      gamma, beta = bn.get_weights()[:2]
      total += _relu_gaussian_mean(float(beta[j]), abs(float(gamma[j])))
    if total:
      out[i] = total
  return out


def shrink(model, config, units: Sequence[ChannelUnit], drop: Iterable[int], compensate: bool = True):
  """(smaller config, smaller model): `model` (built from `config` by the registry, classifier included)
  without the units `drop` (indices into `units`), the surviving weights copied in.

  A unit whose filters are zero (bias and batch-norm scale and shift included) changes nothing when
  removed: the smaller model then computes the same outputs. With `compensate`, what a removed
  channel fed its readers on average (`expected_values`) moves into their biases, so that the
  next batch norm still sees inputs centred as before (without it, one-shot pruning of a batch-norm
  network shifts every later layer).
  """
  from sqznet_tf.models import build  # pylint: disable=g-import-not-at-top  (the builders need TensorFlow)
  drop = list(drop)
  removal = Removal.of(units, drop)
  bias_shift: Dict[str, np.ndarray] = {}
  if compensate:
    for i, value in expected_values(model, units, drop).items():
      for name, c, period in units[i].inputs:
        layer = model.get_layer(name)
        if not getattr(layer, "use_bias", False):
          continue
        kernel = layer.kernel.numpy()
        rows = range(c, kernel.shape[-2], period) if period else (c,)
        taps = sum(kernel[..., r, :].reshape(-1, kernel.shape[-1]).sum(axis=0) for r in rows)
        bias_shift[name] = bias_shift.get(name, 0) + value * taps
  for name, gone in removal.filters.items():
    if len(gone) >= _width(model, Removal(), name):
      raise SqznetError(f"removing every filter of {name} is not accepted; keep at least one")
  new_config = pruned_config(config, model, removal)
  new = build(new_config, input_shape=tuple(model.input_shape[1:]), classes=int(model.output_shape[-1]),
              classifier_activation=_classifier_activation(model), name=model.name)
  for layer in model.layers:
    weights = layer.get_weights()
    if not weights:
      continue
    kind = type(layer).__name__
    out = []
    for i, w in enumerate(weights):
      if kind in _READERS:
        if i == 1 and layer.name in bias_shift:
          w = w + bias_shift[layer.name].astype(w.dtype)
        gone = sorted(removal.filters.get(layer.name, ()))
        w = np.delete(w, gone, axis=-1)
        if i == 0:  # the kernel: input channels are its second-to-last axis
          w = np.delete(w, removal.input_rows(layer.name, w.shape[-2]), axis=-2)
      elif kind == "BatchNormalization":
        w = np.delete(w, sorted(removal.per_channel.get(layer.name, ())), axis=-1)
      out.append(w)
    target = new.get_layer(layer.name)
    shapes = [tuple(v.shape) for v in target.weights]
    if shapes != [w.shape for w in out]:
      raise SqznetError(f"{layer.name}: the pruned weights have shapes {[w.shape for w in out]}, the smaller "
                        f"network expects {shapes}")
    target.set_weights(out)
  return new_config, new
