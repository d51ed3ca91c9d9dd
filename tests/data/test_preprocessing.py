"""Preprocessing presets against hand-computed values."""

import io

import numpy as np
import pytest
from PIL import Image

from sqznet_tf.data import preprocessing as P
from sqznet_tf.errors import SqznetError


def _jpeg(array, fmt="PNG"):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format=fmt)
  return buf.getvalue()


def test_caffe_preset_is_bgr_minus_mean():
  img = np.zeros((300, 400, 3), np.uint8) + np.array([10, 20, 30], np.uint8)  # RGB
  for backend in P.BACKENDS:
    x = P.Preprocessor(P.PRESETS["caffe"], backend)(_jpeg(img))
    assert x.shape == (227, 227, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[100, 100], [30 - 104, 20 - 117, 10 - 123], atol=1e-4)


def test_torch_preset_resizes_shorter_side_and_normalises():
  img = np.zeros((300, 400, 3), np.uint8) + np.array([255, 0, 128], np.uint8)
  x = P.Preprocessor(P.PRESETS["torch"], "tf")(_jpeg(img))
  assert x.shape == (224, 224, 3)
  expected = (np.array([255, 0, 128]) / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  np.testing.assert_allclose(x[50, 50], expected, atol=1e-4)
  assert P._resized_size(300, 400, P.PRESETS["torch"]) == (256, 341)


def test_centre_crop_takes_the_middle():
  img = np.zeros((256, 256, 3), np.uint8)
  img[:, 128:] = 255  # right half white
  p = P.PRESETS["tf"].replace(resize="square", resize_size=256, crop_size=128)
  x = P.Preprocessor(p, "tf")(_jpeg(img))
  # A centred 128 crop of a 256 image spans columns 64..191: left half -1, right half +1.
  np.testing.assert_allclose(x[10, :64, 0], -1.0, atol=1e-5)
  np.testing.assert_allclose(x[10, 64:, 0], 1.0, atol=1e-5)


def test_backends_agree_on_a_smooth_photo():
  yy, xx = np.mgrid[0:320, 0:480]
  img = np.stack([xx * 255 // 480, yy * 255 // 320, (xx + yy) * 255 // 800], -1).astype(np.uint8)
  data = _jpeg(img)
  a = P.Preprocessor(P.PRESETS["caffe"], "tf")(data)
  b = P.Preprocessor(P.PRESETS["caffe"], "pil")(data)
  assert np.abs(a - b).mean() < 1.0


def test_crop_options_and_bad_values():
  p = P.get_preprocessing("caffe", crop_size=113)
  assert p.crop_size == 113 and p.resize_size == round(113 * 256 / 227)
  assert P.get_preprocessing("torch", crop_fraction=0.5).resize_size == 448
  with pytest.raises(SqznetError, match="preprocessing 'keras' is not accepted"):
    P.get_preprocessing("keras")
  with pytest.raises(SqznetError, match="crop_size=300 is larger than resize_size=256"):
    P.PRESETS["caffe"].replace(crop_size=300)
  with pytest.raises(P.ImageDecodeError, match="not a decodable image"):
    P.Preprocessor(P.PRESETS["caffe"], "tf")(b"this is not an image")
  with pytest.raises(P.ImageDecodeError, match="not a decodable image"):
    P.Preprocessor(P.PRESETS["caffe"], "pil")(b"this is not an image")


def test_round_trip_dict():
  p = P.PRESETS["torch"]
  assert P.Preprocessing.from_dict(p.to_dict()) == p
