"""Model configurations as data: the paper's metaparameters and a registry of named variants.

This module imports no TensorFlow, so channel counts and shapes of any design-space point can be
computed (and tested) without building a model.

References:
  SqueezeNet: Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and
  <0.5MB model size", arXiv:1602.07360 (section 5 for the metaparameters, section 6 for bypass).
  AlexNet: Krizhevsky et al., 2012 (BVLC Caffe release) and Krizhevsky, "One weird trick for
  parallelizing convolutional neural networks", arXiv:1404.5997 (torchvision's single tower).
"""

import dataclasses
import math
from typing import Dict, List, Optional, Tuple, Union

from sqznet_tf.errors import SqznetError

BYPASS_CHOICES = ("none", "simple", "complex")
BYPASS_KINDS = ("none", "identity", "conv")  # of one Fire module
NUM_FIRE_MODULES = 8  # fire2 .. fire9


def _round(x: float) -> int:
  """Rounds half up (Python's round() rounds half to even)."""
  return int(math.floor(x + 0.5))


@dataclasses.dataclass(frozen=True)
class FireChannels:
  """Filter counts of one Fire module.

  Attributes:
    name: layer-name prefix, e.g. "fire2".
    squeeze: s1x1, filters of the 1x1 squeeze conv.
    expand1x1: e1x1, filters of the 1x1 expand conv.
    expand3x3: e3x3, filters of the 3x3 expand conv (padding 1).
  """
  name: str
  squeeze: int
  expand1x1: int
  expand3x3: int

  @property
  def out_channels(self) -> int:
    return self.expand1x1 + self.expand3x3

  def as_tuple(self) -> Tuple[int, int, int]:
    return (self.squeeze, self.expand1x1, self.expand3x3)


@dataclasses.dataclass(frozen=True)
class SqueezeNetConfig:
  """A point of SqueezeNet's design space (paper section 5) plus training options.

  Expand filters of Fire module i (i = 0..7, fire2..fire9) are
  e_i = base_e + incr_e * floor(i / freq); e3x3 = e_i * pct3x3; s1x1 = e_i * squeeze_ratio.

  Attributes:
    name: registry name.
    conv1_filters, conv1_kernel, conv1_stride: the first conv.
    conv1_padding: zero padding of the first conv: 0 in the published networks; 1 with a 3x3
      stride-1 conv1 keeps a 32x32 CIFAR image at full resolution (the small-image stem).
    pool_after: layers followed by a 3x3 stride-2 max pool with Caffe's ceil rounding.
    base_e, incr_e, freq, pct3x3, squeeze_ratio: the paper's metaparameters.
    bypass: "none", "simple" (identity around fire3, 5, 7, 9) or "complex" (plus a 1x1 conv
      bypass around fire2, 4, 6, 8).
    dropout: dropout rate before conv10.
    batch_norm: put BatchNormalization (momentum 0.9) after every conv, conv10 included, before
      its ReLU (for training from scratch on small data; not in the published networks).
    conv10_padding: zero padding of the final 1x1 conv: 0 (torchvision, v1.1) or 1 (the Caffe
      v1.0 deploy file).
    default_input_size: input side used when the builder is given no input shape.
    fires: explicit filter counts ((s1x1, e1x1, e3x3) of fire2..fire9) instead of those of the
      metaparameters: a channel-pruned network (sqznet_tf.pruning.channels). None: the formula.
    bypass_kinds: explicit bypass of fire2..fire9 ("none", "identity" or "conv") instead of the
      rule of `bypass` (which compares channel counts, so pruned counts could change it). None:
      the rule.
  """
  name: str = "squeezenet"
  conv1_filters: int = 96
  conv1_kernel: int = 7
  conv1_stride: int = 2
  conv1_padding: int = 0
  pool_after: Tuple[str, ...] = ("conv1", "fire4", "fire8")
  base_e: int = 128
  incr_e: int = 128
  freq: int = 2
  pct3x3: float = 0.5
  squeeze_ratio: float = 0.125
  bypass: str = "none"
  dropout: float = 0.5
  batch_norm: bool = False
  conv10_padding: int = 0
  default_input_size: int = 224
  fires: Optional[Tuple[Tuple[int, int, int], ...]] = None
  bypass_kinds: Optional[Tuple[str, ...]] = None

  family = "squeezenet"

  def __post_init__(self):
    validate_squeezenet_config(self)

  def replace(self, **overrides) -> "SqueezeNetConfig":
    return replace_config(self, **overrides)


@dataclasses.dataclass(frozen=True)
class AlexNetConfig:
  """AlexNet: the BVLC Caffe network (groups 2, LRN) or torchvision's single tower.

  Attributes:
    name: registry name.
    conv_filters: filters of conv1..conv5.
    conv1_padding: zero padding of conv1 (0 in Caffe, 2 in torchvision).
    groups: groups of conv1..conv5 (BVLC: 1, 2, 1, 2, 2).
    lrn: local response normalisation after conv1 and conv2 (BVLC only; size 5, alpha 1e-4,
      beta 0.75, k 1).
    fc_units: units of fc6 and fc7: one number for both, or (fc6, fc7) (a channel-pruned network).
    dropout: dropout rate of the two dropout layers.
    dropout_before_fc: dropout before fc6 and fc7 (torchvision) instead of after them (BVLC).
    batch_norm: BatchNormalization after every conv (not in the published networks).
    default_input_size: 227 (BVLC) or 224 (torchvision).
  """
  name: str = "alexnet"
  conv_filters: Tuple[int, ...] = (96, 256, 384, 384, 256)
  conv1_padding: int = 0
  groups: Tuple[int, ...] = (1, 2, 1, 2, 2)
  lrn: bool = True
  fc_units: Union[int, Tuple[int, int]] = 4096
  dropout: float = 0.5
  dropout_before_fc: bool = False
  batch_norm: bool = False
  default_input_size: int = 227

  family = "alexnet"

  def __post_init__(self):
    validate_alexnet_config(self)

  def replace(self, **overrides) -> "AlexNetConfig":
    return replace_config(self, **overrides)

  @property
  def fc_widths(self) -> Tuple[int, int]:
    """Units of fc6 and fc7."""
    return (self.fc_units, self.fc_units) if isinstance(self.fc_units, int) else tuple(self.fc_units)


ModelConfig = Union[SqueezeNetConfig, AlexNetConfig]


def _check_int(name: str, value, low: int, model: str):
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise SqznetError(f"{name}={value!r} is not accepted for {model}; expected an integer >= {low}")


def _check_rate(name: str, value, model: str):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
    raise SqznetError(f"{name}={value!r} is not accepted for {model}; expected a number in [0, 1)")


def validate_squeezenet_config(c: SqueezeNetConfig) -> None:
  """Raises SqznetError naming the first impossible metaparameter of `c`."""
  m = c.name
  for field in ("conv1_filters", "conv1_kernel", "conv1_stride", "base_e", "freq"):
    _check_int(field, getattr(c, field), 1, m)
  _check_int("incr_e", c.incr_e, 0, m)
  _check_int("conv1_padding", c.conv1_padding, 0, m)
  if isinstance(c.squeeze_ratio, bool) or not isinstance(c.squeeze_ratio, (int, float)) or not c.squeeze_ratio > 0:
    raise SqznetError(f"squeeze_ratio={c.squeeze_ratio!r} is not accepted for {m}; expected a number > 0 "
                      "(the paper sweeps 0.125 to 1.0)")
  if isinstance(c.pct3x3, bool) or not isinstance(c.pct3x3, (int, float)) or not 0 < c.pct3x3 < 1:
    raise SqznetError(f"pct3x3={c.pct3x3!r} is not accepted for {m}; expected a number strictly between 0 "
                      "and 1 (the share of 3x3 expand filters)")
  if c.bypass not in BYPASS_CHOICES:
    raise SqznetError(f"bypass={c.bypass!r} is not accepted for {m}; expected one of {', '.join(BYPASS_CHOICES)}")
  _check_rate("dropout", c.dropout, m)
  if c.conv10_padding not in (0, 1) or isinstance(c.conv10_padding, bool):
    raise SqznetError(f"conv10_padding={c.conv10_padding!r} is not accepted for {m}; expected 0 or 1")
  _check_int("default_input_size", c.default_input_size, 1, m)
  layer_names = ["conv1"] + [f"fire{i + 2}" for i in range(NUM_FIRE_MODULES)]
  for p in c.pool_after:
    if p not in layer_names:
      raise SqznetError(f"pool_after entry {p!r} is not accepted for {m}; expected names among "
                        f"{', '.join(layer_names)}")
  if c.fires is not None:
    if (not isinstance(c.fires, tuple) or len(c.fires) != NUM_FIRE_MODULES
        or any(not isinstance(f, tuple) or len(f) != 3 for f in c.fires)):
      raise SqznetError(f"fires={c.fires!r} is not accepted for {m}; expected {NUM_FIRE_MODULES} "
                        "(squeeze, expand1x1, expand3x3) filter counts, fire2..fire9")
    for i, f in enumerate(c.fires):
      for what, n in zip(("squeeze", "expand1x1", "expand3x3"), f):
        _check_int(f"fires[{i}] ({layer_names[i + 1]} {what})", n, 1, m)
  if c.bypass_kinds is not None:
    if (not isinstance(c.bypass_kinds, tuple) or len(c.bypass_kinds) != NUM_FIRE_MODULES
        or any(k not in BYPASS_KINDS for k in c.bypass_kinds)):
      raise SqznetError(f"bypass_kinds={c.bypass_kinds!r} is not accepted for {m}; expected "
                        f"{NUM_FIRE_MODULES} entries (fire2..fire9) among {', '.join(BYPASS_KINDS)}")
  chans = fire_channels(c)  # raises if a module would get zero filters
  for i, f in enumerate(chans):
    in_ch = c.conv1_filters if i == 0 else chans[i - 1].out_channels
    if bypass_kind(c, i) == "identity" and in_ch != f.out_channels:
      raise SqznetError(f"{f.name} has an identity bypass but {in_ch} input and {f.out_channels} output "
                        f"channels for {m}; an identity bypass needs them equal")


def validate_alexnet_config(c: AlexNetConfig) -> None:
  """Raises SqznetError naming the first impossible field of `c`."""
  m = c.name
  if len(c.conv_filters) != 5 or len(c.groups) != 5:
    raise SqznetError(f"conv_filters={c.conv_filters!r} / groups={c.groups!r} not accepted for {m}; "
                      "expected 5 entries each (conv1..conv5)")
  for i, (f, g) in enumerate(zip(c.conv_filters, c.groups)):
    _check_int(f"conv_filters[{i}]", f, 1, m)
    _check_int(f"groups[{i}]", g, 1, m)
    if f % g:
      raise SqznetError(f"conv{i + 1}: {f} filters do not split into groups={g} for {m}")
  if isinstance(c.fc_units, tuple):
    if len(c.fc_units) != 2:
      raise SqznetError(f"fc_units={c.fc_units!r} is not accepted for {m}; expected one number or (fc6, fc7)")
    for n, units in zip((6, 7), c.fc_units):
      _check_int(f"fc_units (fc{n})", units, 1, m)
  else:
    _check_int("fc_units", c.fc_units, 1, m)
  _check_int("conv1_padding", c.conv1_padding, 0, m)
  _check_rate("dropout", c.dropout, m)


def fire_channels(config: SqueezeNetConfig) -> List[FireChannels]:
  """Per-Fire-module filter counts from the metaparameters (paper section 5).

  Returns:
    Eight FireChannels, fire2..fire9.

  Raises:
    SqznetError: if a metaparameter gives a module zero filters of some kind.
  """
  if config.fires is not None:
    return [FireChannels(f"fire{i + 2}", *f) for i, f in enumerate(config.fires)]
  out = []
  for i in range(NUM_FIRE_MODULES):
    e = config.base_e + config.incr_e * (i // config.freq)
    e3 = _round(e * config.pct3x3)
    e1 = e - e3
    s = _round(e * config.squeeze_ratio)
    name = f"fire{i + 2}"
    for what, n, field, value in (("squeeze", s, "squeeze_ratio", config.squeeze_ratio),
                                  ("expand 1x1", e1, "pct3x3", config.pct3x3),
                                  ("expand 3x3", e3, "pct3x3", config.pct3x3)):
      if n < 1:
        raise SqznetError(f"{field}={value!r} gives {name} {n} {what} filters (e={e}); "
                          "every conv needs at least 1 filter")
    out.append(FireChannels(name, s, e1, e3))
  return out


def bypass_kind(config: SqueezeNetConfig, fire_index: int) -> str:
  """Bypass around fire module `fire_index` (0..7): "none", "identity" or "conv".

  Simple bypass adds the module input to its output where the channel counts match (fire3, 5,
  7, 9 in the paper's layout); complex bypass also puts a 1x1 conv on the other modules. An
  explicit `bypass_kinds` (a pruned network's) decides instead.
  """
  if config.bypass_kinds is not None:
    return config.bypass_kinds[fire_index]
  if config.bypass == "none":
    return "none"
  chans = fire_channels(config)
  in_ch = config.conv1_filters if fire_index == 0 else chans[fire_index - 1].out_channels
  if in_ch == chans[fire_index].out_channels:
    return "identity"
  return "conv" if config.bypass == "complex" else "none"


# ---------------------------------------------------------------------------------------------
# Shapes without TensorFlow.


def conv_out(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
  """Output side of a convolution (floor rounding, as in Caffe and Keras)."""
  return (size + 2 * pad - kernel) // stride + 1


def pool_out_ceil(size: int, kernel: int = 3, stride: int = 2) -> int:
  """Output side of a Caffe max pool without padding (ceil rounding)."""
  return -(-(size - kernel) // stride) + 1


def squeezenet_feature_sizes(config: SqueezeNetConfig, input_size: int) -> Dict[str, int]:
  """Spatial side of each main layer's output for a square input, by Caffe's rules."""
  sizes = {}
  s = conv_out(input_size, config.conv1_kernel, config.conv1_stride, config.conv1_padding)
  sizes["conv1"] = s
  names = ["conv1"] + [f"fire{i + 2}" for i in range(NUM_FIRE_MODULES)]
  for n in names:
    if n != "conv1":
      sizes[n] = s
    if n in config.pool_after:
      s = max(0, pool_out_ceil(s))
      sizes["pool" + n.replace("conv", "").replace("fire", "")] = s
  sizes["conv10"] = s + 2 * config.conv10_padding
  return sizes


def alexnet_feature_sizes(config: AlexNetConfig, input_size: int) -> Dict[str, int]:
  """Spatial side of each conv and pool output for a square input."""
  sizes = {}
  s = conv_out(input_size, 11, 4, config.conv1_padding)
  sizes["conv1"] = s
  s = max(0, pool_out_ceil(s))
  sizes["pool1"] = s
  sizes["conv2"] = s
  s = max(0, pool_out_ceil(s))
  sizes["pool2"] = s
  sizes["conv3"] = sizes["conv4"] = sizes["conv5"] = s
  s = max(0, pool_out_ceil(s))
  sizes["pool5"] = s
  return sizes


def min_input_size(config: ModelConfig) -> int:
  """Smallest square input side for which every layer of the model has a non-empty output."""
  if isinstance(config, AlexNetConfig):
    fn = alexnet_feature_sizes
  else:
    fn = squeezenet_feature_sizes
  size = 1
  while min(fn(config, size).values()) < 1:
    size += 1
  return size


def check_input_size(config: ModelConfig, height: Optional[int], width: Optional[int]) -> None:
  """Raises SqznetError when a static input side is too small for `config`."""
  smallest = min_input_size(config)
  for side in (height, width):
    if side is not None and side < smallest:
      raise SqznetError(f"input size {height}x{width} is too small for {config.name}; "
                        f"the smallest accepted is {smallest}x{smallest}")


# ---------------------------------------------------------------------------------------------
# Registry.

_V1_0 = SqueezeNetConfig(name="squeezenet_v1_0")
_V1_1 = SqueezeNetConfig(name="squeezenet_v1_1", conv1_filters=64, conv1_kernel=3,
                         pool_after=("conv1", "fire3", "fire5"))

MODEL_CONFIGS: Dict[str, ModelConfig] = {
    # 1,248,424 parameters (torchvision squeezenet1_0; conv10 without pad).
    "squeezenet_v1_0": _V1_0,
    # Same weights as above; conv10 pad 1 as in the Caffe deploy file, 227 input.
    "squeezenet_v1_0_caffe": dataclasses.replace(_V1_0, name="squeezenet_v1_0_caffe",
                                                 conv10_padding=1, default_input_size=227),
    "squeezenet_v1_0_simple_bypass": dataclasses.replace(_V1_0, name="squeezenet_v1_0_simple_bypass",
                                                         bypass="simple"),
    "squeezenet_v1_0_complex_bypass": dataclasses.replace(_V1_0, name="squeezenet_v1_0_complex_bypass",
                                                          bypass="complex"),
    # 1,235,496 parameters (torchvision squeezenet1_1).
    "squeezenet_v1_1": _V1_1,
    "squeezenet_v1_1_simple_bypass": dataclasses.replace(_V1_1, name="squeezenet_v1_1_simple_bypass",
                                                         bypass="simple"),
    "squeezenet_v1_1_complex_bypass": dataclasses.replace(_V1_1, name="squeezenet_v1_1_complex_bypass",
                                                          bypass="complex"),
    # SqueezeNet v1.1 for 32x32 images (CIFAR-10): a 3x3 stride-1 conv1 with padding 1 instead of
    # stride 2, so the 32x32 image is not halved before the first pool; two pools, after conv1 and
    # fire5 (32 -> 16 -> 8: fire2-5 on 16x16, fire6-9 and conv10 on 8x8; v1.1's third pool would
    # leave fire6-9 on 4x4); batch norm after every conv. The kernels of squeezenet_v1_1 (same shapes).
    "squeezenet_v1_1_cifar": dataclasses.replace(_V1_1, name="squeezenet_v1_1_cifar", conv1_stride=1,
                                                 conv1_padding=1, pool_after=("conv1", "fire5"), batch_norm=True,
                                                 default_input_size=32),
    # 60,965,224 parameters (BVLC Caffe release: groups 2, LRN, 227 input).
    "alexnet": AlexNetConfig(name="alexnet"),
    # 61,100,840 parameters (torchvision alexnet, "one weird trick" single tower, 224 input).
    "alexnet_owt": AlexNetConfig(name="alexnet_owt", conv_filters=(64, 192, 384, 256, 256),
                                 conv1_padding=2, groups=(1, 1, 1, 1, 1), lrn=False,
                                 dropout_before_fc=True, default_input_size=224),
}


def list_models() -> List[str]:
  """Names of the registered model variants."""
  return list(MODEL_CONFIGS)


def get_config(name: str, **overrides) -> ModelConfig:
  """The registered config `name`, with metaparameter overrides applied and validated."""
  if name not in MODEL_CONFIGS:
    raise SqznetError(f"Unknown model {name!r}; known: {', '.join(MODEL_CONFIGS)}")
  return replace_config(MODEL_CONFIGS[name], **overrides)


def config_fields(config: ModelConfig) -> List[str]:
  return [f.name for f in dataclasses.fields(config)]


def replace_config(config: ModelConfig, **overrides) -> ModelConfig:
  """dataclasses.replace with a clear error for fields the config does not have."""
  if not overrides:
    return config
  fields = config_fields(config)
  unknown = [k for k in overrides if k not in fields]
  if unknown:
    raise SqznetError(f"{unknown[0]!r} is not a metaparameter of {config.name} ({config.family} "
                      f"config); accepted: {', '.join(f for f in fields if f != 'name')}")
  if "pool_after" in overrides and isinstance(overrides["pool_after"], (list, str)):
    value = overrides["pool_after"]  # from JSON metadata or a flag: a list, or "conv1,fire5"
    overrides = dict(overrides, pool_after=tuple(value.split(",") if isinstance(value, str) else value))
  overrides = {k: _tuples(v) if k in _SEQUENCE_FIELDS else v for k, v in overrides.items()}  # JSON: lists
  return dataclasses.replace(config, **overrides)


_SEQUENCE_FIELDS = ("fires", "bypass_kinds", "conv_filters", "groups", "fc_units")


def _tuples(value):
  """Lists (as JSON metadata stores them) to tuples, nested; anything else unchanged."""
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def config_to_dict(config: ModelConfig) -> dict:
  d = dataclasses.asdict(config)
  d["family"] = config.family
  return d
