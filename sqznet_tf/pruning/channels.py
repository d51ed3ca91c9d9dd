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
from typing import Dict, List, Optional, Tuple

from sqznet_tf._keras import keras

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
