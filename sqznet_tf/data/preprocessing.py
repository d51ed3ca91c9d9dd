"""Image preprocessing: one description that travels with weights, exports and tools.

A `Preprocessing` says how a photo becomes the network's input: resize (to a square, Caffe's
way, or the shorter side, torchvision's way), centre crop, channel order and normalisation.
Evaluate, predict and export all call `preprocess` with the description stored beside the
weights, so they cannot disagree.

Presets:
  caffe: resize to 256x256 (aspect not kept), centre crop 227, RGB->BGR, 0-255 minus
    (104, 117, 123). The convention of the Caffe SqueezeNet and AlexNet releases.
  torch: shorter side to 256, centre crop 224, RGB / 255, minus (0.485, 0.456, 0.406),
    divided by (0.229, 0.224, 0.225). torchvision's ImageNet models.
  tf: shorter side to 256, centre crop 224, RGB scaled to [-1, 1] (x / 127.5 - 1).

Two resize back-ends: "tf" (`tf.image.resize`, usable in tf.data and in exported graphs) and
"pil" (Pillow, what the Caffe reference numbers were measured with).
"""

import dataclasses
import io
from typing import Optional, Tuple

import numpy as np

from sqznet_tf.errors import SqznetError

RESIZE_MODES = ("square", "shorter_side")
BACKENDS = ("tf", "pil")
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


def _resized_size(height: int, width: int, p: Preprocessing) -> Tuple[int, int]:
  if p.resize == "square":
    return p.resize_size, p.resize_size
  short = min(height, width)
  return (max(p.crop_size, round(height * p.resize_size / short)),
          max(p.crop_size, round(width * p.resize_size / short)))


def normalise(x, p: Preprocessing):
  """x: float32 RGB 0-255 (numpy or tensor), last axis channels."""
  if p.channel_order == "BGR":
    x = x[..., ::-1]
  return (x * p.scale - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)


def preprocess_tf(image, p: Preprocessing):
  """Resize, centre crop and normalise one RGB image tensor (HxWx3, any dtype) with TensorFlow."""
  return normalise(resize_and_crop_tf(image, p), p)


def resize_and_crop_tf(image, p: Preprocessing):
  """Resize and centre crop of `preprocess_tf`, without the normalisation: float32 RGB 0-255."""
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  image = tf.cast(image, tf.float32)
  shape = tf.shape(image)
  if p.resize == "square":
    size = tf.constant([p.resize_size, p.resize_size])
  else:
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    ratio = p.resize_size / tf.minimum(h, w)
    size = tf.maximum(tf.cast(tf.round(tf.stack([h * ratio, w * ratio])), tf.int32), p.crop_size)
  image = tf.image.resize(image, size, method=p.method, antialias=p.antialias)
  top = (size[0] - p.crop_size) // 2
  left = (size[1] - p.crop_size) // 2
  image = image[top:top + p.crop_size, left:left + p.crop_size, :]
  image.set_shape([p.crop_size, p.crop_size, 3])
  return image


_PIL_METHODS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST", "area": "BOX"}


def preprocess_pil(pil_image, p: Preprocessing) -> np.ndarray:
  """Resize (Pillow, antialiased), centre crop and normalise one PIL image; returns float32."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  img = pil_image.convert("RGB")
  h, w = _resized_size(img.height, img.width, p)
  img = img.resize((w, h), getattr(Image.Resampling, _PIL_METHODS[p.method]))
  top, left = (h - p.crop_size) // 2, (w - p.crop_size) // 2
  img = img.crop((left, top, left + p.crop_size, top + p.crop_size))
  return normalise(np.asarray(img, dtype=np.float32), p).astype(np.float32)


class ImageDecodeError(SqznetError):
  """The bytes are not an image that can be decoded."""


def decode_image_tf(data: bytes):
  """Decodes JPEG/PNG/GIF/BMP bytes to an RGB uint8 tensor (HxWx3); ImageDecodeError if not."""
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  try:
    return tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ImageDecodeError(f"not a decodable image: {first[:200]}") from None


class Preprocessor:
  """Turns encoded image bytes into network inputs with one back-end ("tf" or "pil")."""

  def __init__(self, p: Preprocessing, backend: str = "tf"):
    if backend not in BACKENDS:
      raise SqznetError(f"resize back-end {backend!r} is not accepted; expected one of {', '.join(BACKENDS)}")
    self.p = p
    self.backend = backend
    self._fn = None

  def __call__(self, data: bytes) -> np.ndarray:
    """float32 (crop, crop, 3) from encoded image bytes; raises ImageDecodeError on bad bytes."""
    if self.backend == "pil":
      from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
      try:
        img = Image.open(io.BytesIO(data))
        img.load()
      except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageDecodeError(f"not a decodable image: {e}") from None
      return preprocess_pil(img, self.p)
    if self._fn is None:
      from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
      p = self.p
      self._fn = tf.function(lambda img: preprocess_tf(img, p),
                             input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    return self._fn(decode_image_tf(data)).numpy()
