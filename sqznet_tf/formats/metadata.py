"""The metadata that travels with weights: how to preprocess photos, the classes, the source.

`WeightsInfo` is stored as JSON beside Keras weights (`<file>.sqznet.json`), inside a `.sqz`
container's config and in an export's `sqznet_export.json`; `read_info` / `write_info` are the
one reader and writer of the sidecar file. `Preprocessing` says how an RGB photo becomes the
network's input; the functions that apply it live in `sqznet_tf.data.preprocessing`.
Plain Python: no TensorFlow.
"""

import dataclasses
import os
from typing import Optional, Tuple

from sqznet_tf.errors import SqznetError
from sqznet_tf.io import read_json, write_json_atomic

INFO_SUFFIX = ".sqznet.json"

RESIZE_MODES = ("square", "shorter_side")
METHODS = ("bilinear", "bicubic", "nearest", "area")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How an RGB uint8 photo becomes a float32 network input.

  Attributes:
    mode: preset name this came from ("caffe", "torch", "tf" or "custom").
    crop_size: side of the centre crop fed to the network (pixels).
    resize_size: side the photo is resized to before cropping; with resize="shorter_side" the
      shorter side gets this length.
    resize: "square" (both sides to resize_size, aspect not kept; Caffe) or "shorter_side".
    method: resize interpolation ("bilinear", "bicubic", "nearest", "area").
    antialias: low-pass filter when downscaling (tf back-end; Pillow always filters).
    channel_order: "RGB" or "BGR" (the network's input order).
    scale: multiply 0-255 values by this first (1.0 keeps 0-255).
    mean: subtracted per channel (in the network's channel order), after scaling.
    std: divided per channel, after subtracting the mean.
  """
  mode: str = "caffe"
  crop_size: int = 227
  resize_size: int = 256
  resize: str = "square"
  method: str = "bilinear"
  antialias: bool = False
  channel_order: str = "BGR"
  scale: float = 1.0
  mean: Tuple[float, float, float] = (104.0, 117.0, 123.0)
  std: Tuple[float, float, float] = (1.0, 1.0, 1.0)

  def __post_init__(self):
    if self.resize not in RESIZE_MODES:
      raise SqznetError(f"resize={self.resize!r} is not accepted; expected one of {', '.join(RESIZE_MODES)}")
    if self.method not in METHODS:
      raise SqznetError(f"method={self.method!r} is not accepted; expected one of {', '.join(METHODS)}")
    if self.channel_order not in ("RGB", "BGR"):
      raise SqznetError(f"channel_order={self.channel_order!r} is not accepted; expected RGB or BGR")
    for f in ("crop_size", "resize_size"):
      v = getattr(self, f)
      if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SqznetError(f"{f}={v!r} is not accepted; expected a positive integer")
    if self.crop_size > self.resize_size:
      raise SqznetError(f"crop_size={self.crop_size} is larger than resize_size={self.resize_size}; "
                        "the centre crop must fit in the resized photo")

  @property
  def crop_fraction(self) -> float:
    return self.crop_size / self.resize_size

  def replace(self, **kw) -> "Preprocessing":
    return dataclasses.replace(self, **kw)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["mean"], d["std"] = list(self.mean), list(self.std)
    return d

  @classmethod
  def from_dict(cls, d: dict) -> "Preprocessing":
    d = dict(d)
    for k in ("mean", "std"):
      if k in d:
        d[k] = tuple(float(x) for x in d[k])
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


PRESETS = {
    "caffe": Preprocessing(),
    "torch": Preprocessing(mode="torch", crop_size=224, resize_size=256, resize="shorter_side",
                           antialias=True, channel_order="RGB", scale=1 / 255.0,
                           mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "tf": Preprocessing(mode="tf", crop_size=224, resize_size=256, resize="shorter_side", antialias=True,
                        channel_order="RGB", scale=1 / 127.5, mean=(1.0, 1.0, 1.0)),
    # 32x32 CIFAR images as they are (no resize, no crop), RGB, CIFAR-10 channel mean and std.
    "cifar": Preprocessing(mode="cifar", crop_size=32, resize_size=32, channel_order="RGB", scale=1 / 255.0,
                           mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
}


def with_crop(p: Preprocessing, crop_size: Optional[int] = None,
              crop_fraction: Optional[float] = None) -> Preprocessing:
  """`p` with another crop size (same crop fraction) and/or crop fraction (resize = crop / fraction)."""
  if crop_size is not None:
    if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
      raise SqznetError(f"crop_size={crop_size!r} is not accepted; expected a positive integer")
    p = p.replace(crop_size=crop_size, resize_size=max(crop_size, round(crop_size / p.crop_fraction)))
  if crop_fraction is not None:
    if not 0 < crop_fraction <= 1:
      raise SqznetError(f"crop_fraction={crop_fraction!r} is not accepted; expected a number in (0, 1]")
    p = p.replace(resize_size=max(p.crop_size, round(p.crop_size / crop_fraction)))
  return p


def get_preprocessing(mode: str, crop_size: Optional[int] = None, crop_fraction: Optional[float] = None,
                      **overrides) -> Preprocessing:
  """A preset, optionally with another crop size or crop fraction, and field overrides."""
  if mode not in PRESETS:
    raise SqznetError(f"preprocessing {mode!r} is not accepted; expected one of {', '.join(PRESETS)}")
  p = with_crop(PRESETS[mode], crop_size, crop_fraction)
  return p.replace(**overrides) if overrides else p


@dataclasses.dataclass
class WeightsInfo:
  """What travels with a set of weights.

  Attributes:
    name: short name ("imagenet", a file name, ...).
    architecture: registry name of the network the weights are for.
    classes: number of output classes.
    preprocessing: how photos must be prepared for these weights.
    labels: where the class names come from (a description, a path, or the names joined by ",").
    source: where the weights come from (a URL or a file name; never an absolute local path).
    sha256: checksum of the weights file, when known.
    licence: the weights' licence.
    overrides: metaparameter overrides of the architecture (batch_norm, squeeze_ratio, ...), so
      that the weights rebuild their own network.
  """
  name: str
  architecture: str
  classes: int
  preprocessing: Preprocessing
  labels: str = ""
  source: str = ""
  sha256: str = ""
  licence: str = ""
  overrides: dict = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["preprocessing"] = self.preprocessing.to_dict()
    return d

  @classmethod
  def from_dict(cls, d: dict) -> "WeightsInfo":
    if not isinstance(d, dict):
      raise SqznetError(f"weights metadata must be a JSON object, not {type(d).__name__}")
    d = dict(d)
    d["preprocessing"] = Preprocessing.from_dict(d.get("preprocessing", {}))
    known = {f.name for f in dataclasses.fields(cls)}
    try:
      return cls(**{k: v for k, v in d.items() if k in known})
    except TypeError as e:
      raise SqznetError(f"weights metadata is incomplete: {e}") from None


def info_path(weights_path: str) -> str:
  """The sidecar metadata file of a weights file or folder."""
  return str(weights_path).rstrip("/" + os.sep) + INFO_SUFFIX


def read_info(weights_path: str) -> Optional[WeightsInfo]:
  """The metadata stored beside `weights_path`, or None when there is none."""
  path = info_path(weights_path)
  if not os.path.exists(path):
    return None
  try:
    return WeightsInfo.from_dict(read_json(path, "weights metadata"))
  except SqznetError as e:
    raise SqznetError(f"{path}: {e}") from None


def write_info(weights_path: str, info: WeightsInfo) -> None:
  """Writes the metadata beside `weights_path` (atomically)."""
  write_json_atomic(info_path(weights_path), info.to_dict())
