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

import io
from typing import Tuple

import numpy as np

from sqznet_tf.errors import SqznetError
# The description itself is plain data (it travels in weights metadata); re-exported here.
from sqznet_tf.formats.metadata import (METHODS, PRESETS, RESIZE_MODES, Preprocessing,  # noqa: F401
                                        get_preprocessing, with_crop)

BACKENDS = ("tf", "pil")


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
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top  (TensorFlow only when images are decoded: binaries parse flags first)
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


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def pil_to_rgb(pil_image):
  """An RGB PIL image decoded as TensorFlow's decoders do.

  16-bit greyscale PNGs (mode I;16) keep their top 8 bits, as `tf.io.decode_png` does (Pillow's
  own convert("RGB") clips them to 255); 16-bit RGB PNGs, palette images (transparency dropped),
  grey + alpha, RGBA and CMYK JPEGs convert as TensorFlow decodes them, up to the few levels JPEG
  decoders differ by. EXIF orientation is not applied, by either back-end: TensorFlow's decoders
  ignore it.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only for the Pillow back-end and generated images)
  if pil_image.mode in _SIXTEEN_BIT_MODES:
    top = np.asarray(pil_image).astype(np.uint32) >> 8
    pil_image = Image.fromarray(np.clip(top, 0, 255).astype(np.uint8), "L")
  return pil_image.convert("RGB")


def preprocess_pil(pil_image, p: Preprocessing) -> np.ndarray:
  """Resize (Pillow, antialiased), centre crop and normalise one PIL image; returns float32."""
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only for the Pillow back-end and generated images)
  img = pil_to_rgb(pil_image)
  h, w = _resized_size(img.height, img.width, p)
  img = img.resize((w, h), getattr(Image.Resampling, _PIL_METHODS[p.method]))
  top, left = (h - p.crop_size) // 2, (w - p.crop_size) // 2
  img = img.crop((left, top, left + p.crop_size, top + p.crop_size))
  return normalise(np.asarray(img, dtype=np.float32), p).astype(np.float32)


class ImageDecodeError(SqznetError):
  """The bytes are not an image that can be decoded."""


def decode_image_tf(data: bytes):
  """Decodes JPEG/PNG/GIF/BMP bytes to an RGB uint8 tensor (HxWx3); ImageDecodeError if not."""
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top  (TensorFlow only when images are decoded: binaries parse flags first)
  try:
    return tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ImageDecodeError(f"not a decodable image: {first[:200]}") from None


def decode_image_pil(data: bytes) -> np.ndarray:
  """Decodes image bytes with Pillow to RGB uint8 (HxWx3) as `pil_to_rgb` says; ImageDecodeError if not."""
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top  (only for the Pillow back-end)
  try:
    img = Image.open(io.BytesIO(data))
    img.load()
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise ImageDecodeError(f"not a decodable image: {e}") from None
  return np.asarray(pil_to_rgb(img))


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
      from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top  (only for the Pillow back-end and generated images)
      try:
        img = Image.open(io.BytesIO(data))
        img.load()
      except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageDecodeError(f"not a decodable image: {e}") from None
      return preprocess_pil(img, self.p)
    from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top  (TensorFlow only when images are decoded: binaries parse flags first)
    if self._fn is None:
      p = self.p
      # Decoding and preprocessing as one traced function, called directly: one dispatch per image
      # instead of an eager decode, a tf.function's argument matching and a second dispatch
      # (3,000 CIFAR-10 photos: 0.75 s against 1.6 s on the AVX2-only CPU, BENCHMARKS.md "make
      # demo"). autograph=False: its branches are on the preset (Python values).
      self._fn = tf.function(
          lambda data: preprocess_tf(tf.io.decode_image(data, channels=3, expand_animations=False), p),
          autograph=False, input_signature=[tf.TensorSpec([], tf.string)]).get_concrete_function()
    try:
      return self._fn(tf.constant(data, tf.string)).numpy()
    except tf.errors.InvalidArgumentError:
      decode_image_tf(data)  # raises ImageDecodeError with the decoder's own message
      raise
