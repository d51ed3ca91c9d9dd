"""The two decoding back-ends agree on every common image format (generated files).

TensorFlow's decoders are the reference (they run in tf.data and in exported graphs); the Pillow
back-end must give the same pixels. JPEG decoders differ by a few levels even on plain RGB files,
so JPEGs are compared within JPEG_LEVELS; lossless formats must be equal.
"""

import io

import numpy as np
import pytest
from PIL import Image

from sqznet_tf.data import preprocessing as P

JPEG_LEVELS = 10  # measured: plain RGB JPEG 6, CMYK JPEG 7 (TF vs Pillow, libjpeg-turbo both)


def _png(img, **kw) -> bytes:
  buf = io.BytesIO()
  img.save(buf, "PNG", **kw)
  return buf.getvalue()


def _jpeg(img, **kw) -> bytes:
  buf = io.BytesIO()
  img.save(buf, "JPEG", quality=95, **kw)
  return buf.getvalue()


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (16, 24, 3)).astype(np.uint8)
G16 = RNG.integers(0, 65536, (16, 24)).astype(np.uint16)


def _palette_with_transparency() -> bytes:
  img = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
  return _png(img, transparency=0)


def _exif_rotated() -> bytes:
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 CW to display"
  return _jpeg(Image.fromarray(RGB), exif=exif.tobytes())


CASES = {
    "16-bit grey PNG": (lambda: _png(Image.fromarray(G16)), 0),
    "palette PNG with transparency": (_palette_with_transparency, 0),
    "RGBA PNG": (lambda: _png(Image.fromarray(np.dstack([RGB, RGB[..., :1]]), "RGBA")), 0),
    "grey + alpha PNG": (lambda: _png(Image.fromarray(np.dstack([RGB[..., 0], RGB[..., 1]]), "LA")), 0),
    "CMYK JPEG": (lambda: _jpeg(Image.fromarray(RGB).convert("CMYK")), JPEG_LEVELS),
    "RGB JPEG with EXIF orientation": (_exif_rotated, JPEG_LEVELS),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pil_decodes_as_tensorflow(name):
  make, tolerance = CASES[name]
  data = make()
  ref = P.decode_image_tf(data).numpy()
  got = P.decode_image_pil(data)
  assert got.shape == ref.shape and got.dtype == np.uint8  # EXIF orientation: applied by neither
  assert int(np.abs(got.astype(int) - ref.astype(int)).max()) <= tolerance


def test_sixteen_bit_png_keeps_its_top_byte():
  """Pillow's own convert("RGB") clips a 16-bit grey PNG to white; the back-end keeps the top 8 bits."""
  data = _png(Image.fromarray(G16))
  assert np.array_equal(P.decode_image_pil(data)[..., 0], (G16 >> 8).astype(np.uint8))
  assert (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) == 255).mean() > 0.9  # what it was before


def test_both_back_ends_preprocess_a_16_bit_png_alike():
  """Through the whole preprocessing (each back-end resizes with its own filter, so pixels differ at
  the block edges) the two inputs have the same brightness; clipped to white they were 120 apart."""
  data = _png(Image.fromarray(np.kron(G16, np.ones((16, 16), np.uint16))))
  p = P.get_preprocessing("caffe", crop_size=64)
  a, b = P.Preprocessor(p, "tf")(data), P.Preprocessor(p, "pil")(data)
  assert abs(float(a.mean()) - float(b.mean())) < 1.0
