"""Builders against the published networks: parameter counts, shapes, forward passes, errors."""

import numpy as np
import pytest

import sqznet_tf
from sqznet_tf._keras import keras
from sqznet_tf.errors import SqznetError
from sqznet_tf.models import configs
from sqznet_tf.models.layers import LRN, CeilMaxPool2D

# Exact totals (weights + biases): torchvision's published counts and REFERENCE.md sections 1-2.
TOTAL_PARAMS = {
    "squeezenet_v1_0": 1_248_424,
    "squeezenet_v1_0_caffe": 1_248_424,
    "squeezenet_v1_1": 1_235_496,
    "alexnet": 60_965_224,
    "alexnet_owt": 61_100_840,
}

# Per-layer counts of v1.0, REFERENCE.md section 1.
V1_0_LAYER_PARAMS = {
    "conv1": 14_208, "fire2": 11_920, "fire3": 12_432, "fire4": 45_344, "fire5": 49_440,
    "fire6": 104_880, "fire7": 111_024, "fire8": 188_992, "fire9": 197_184, "conv10": 513_000,
}


@pytest.mark.parametrize("name", sorted(TOTAL_PARAMS))
def test_total_parameters(models, name):
  assert models.get(name).count_params() == TOTAL_PARAMS[name]


def test_v1_0_per_layer_parameters(models):
  m = models.get("squeezenet_v1_0")
  counts = {}
  for layer in m.layers:
    key = layer.name.split("_")[0]
    counts[key] = counts.get(key, 0) + layer.count_params()
  assert {k: counts[k] for k in V1_0_LAYER_PARAMS} == V1_0_LAYER_PARAMS


def test_bypass_parameter_counts(models):
  vanilla = models.get("squeezenet_v1_0").count_params()
  assert models.get("squeezenet_v1_0_simple_bypass").count_params() == vanilla
  complex_ = models.get("squeezenet_v1_0_complex_bypass").count_params()
  # 1x1 bypass convs around fire2 (96->128), fire4 (128->256), fire6 (256->384), fire8 (384->512).
  assert complex_ - vanilla == (96 * 128 + 128) + (128 * 256 + 256) + (256 * 384 + 384) + (384 * 512 + 512)
  assert models.get("squeezenet_v1_1_simple_bypass").count_params() == TOTAL_PARAMS["squeezenet_v1_1"]
  assert models.get("squeezenet_v1_1_complex_bypass").count_params() > TOTAL_PARAMS["squeezenet_v1_1"]
  added = [l.name for l in models.get("squeezenet_v1_0_simple_bypass").layers if l.name.endswith("_bypass")]
  assert added == ["fire3_bypass", "fire5_bypass", "fire7_bypass", "fire9_bypass"]


# (layer, output shape without batch) at 227 (REFERENCE.md section 1) and at 224 (ceil-mode pools).
SHAPES_227 = {
    "conv1": (111, 111, 96), "pool1": (55, 55, 96), "fire2_concat": (55, 55, 128),
    "fire3_concat": (55, 55, 128), "fire4_concat": (55, 55, 256), "pool4": (27, 27, 256),
    "fire5_concat": (27, 27, 256), "fire6_concat": (27, 27, 384), "fire7_concat": (27, 27, 384),
    "fire8_concat": (27, 27, 512), "pool8": (13, 13, 512), "fire9_concat": (13, 13, 512),
    "conv10": (15, 15, 1000),  # Caffe deploy file: conv10 pad 1
}
SHAPES_224 = {
    "conv1": (109, 109, 96), "pool1": (54, 54, 96), "fire4_concat": (54, 54, 256),
    "pool4": (27, 27, 256),  # floor-mode pooling would give 26x26 here
    "fire8_concat": (27, 27, 512), "pool8": (13, 13, 512), "conv10": (13, 13, 1000),
}
SHAPES_V1_1_224 = {
    "conv1": (111, 111, 64), "pool1": (55, 55, 64), "fire3_concat": (55, 55, 128), "pool3": (27, 27, 128),
    "pool5": (13, 13, 256), "fire9_concat": (13, 13, 512), "conv10": (13, 13, 1000),
}


@pytest.mark.parametrize("name, size, expected", [
    ("squeezenet_v1_0_caffe", 227, SHAPES_227),
    ("squeezenet_v1_0", 224, SHAPES_224),
    ("squeezenet_v1_1", 224, SHAPES_V1_1_224),
])
def test_output_sizes(models, name, size, expected):
  m = models.get(name, size)
  got = {n: tuple(m.get_layer(n).output.shape[1:]) for n in expected}
  assert got == expected


def test_v1_0_at_227_without_pad_gives_13x13_conv10(models):
  assert tuple(models.get("squeezenet_v1_0", 227).get_layer("conv10").output.shape[1:]) == (13, 13, 1000)


def test_caffe_layer_names(models):
  names = {l.name for l in models.get("squeezenet_v1_0").layers}
  for i in range(2, 10):
    assert {f"fire{i}_squeeze1x1", f"fire{i}_expand1x1", f"fire{i}_expand3x3"} <= names
  assert {"conv1", "conv10", "predictions"} <= names
  alex = {l.name for l in models.get("alexnet").layers}
  assert {"conv1", "norm1", "conv2", "norm2", "conv5", "fc6", "fc7", "fc8"} <= alex
  assert models.get("alexnet").get_layer("conv2").groups == 2


def test_conv10_initialiser_is_gaussian_0_01(models):
  w = models.get("squeezenet_v1_0").get_layer("conv10").kernel.numpy()
  assert abs(w.std() - 0.01) < 0.0005 and abs(w.mean()) < 0.0005


@pytest.mark.parametrize("name", configs.list_models())
def test_forward_pass_gives_probabilities(models, name):
  config = configs.get_config(name)
  size = config.default_input_size if config.family == "alexnet" else 64
  m = models.get(name, size) if config.family == "squeezenet" else models.get(name)
  x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
  p = m(x, training=False).numpy()
  assert p.shape == (2, 1000)
  assert np.all(np.isfinite(p)) and np.all(p >= 0)
  np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("h, w, pool, strides", [(8, 7, 3, 2), (8, 8, 3, 2), (54, 54, 3, 2), (9, 9, 3, 2), (6, 5, 2, 2),
                                                  (10, 13, 3, 3)])
def test_ceil_max_pool_matches_reference(h, w, pool, strides):
  # Every path: a padded copy (8x7, 10x13), "SAME" with one row and column over the edge (8x8, 54x54,
  # v1.0's pool4 at 224 px), windows that fit (9x9), a window of 2 (6x5). Negative values: a
  # padding that took part in a maximum would show.
  x = np.random.default_rng(1).normal(-1, 1, size=(2, h, w, 3)).astype("float32")
  y = CeilMaxPool2D(pool, strides)(x).numpy()
  side = lambda n: -(-(n - pool) // strides) + 1  # noqa: E731  (Caffe: ceil((n-k)/s)+1)
  assert y.shape == (2, side(h), side(w), 3)
  ref = np.empty_like(y)
  for i in range(side(h)):
    for j in range(side(w)):
      ref[:, i, j] = x[:, strides * i:strides * i + pool, strides * j:strides * j + pool].max(axis=(1, 2))  # clipped
  np.testing.assert_array_equal(y, ref)


def test_ceil_max_pool_with_unknown_spatial_size():
  m = sqznet_tf.get_model("squeezenet_v1_1", input_shape=(None, None, 3), classes=7)
  for size in (64, 75):
    p = m(np.zeros((1, size, size, 3), "float32")).numpy()
    assert p.shape == (1, 7)
  fixed = sqznet_tf.get_model("squeezenet_v1_1", input_shape=(75, 75, 3), classes=7)
  fixed.set_weights(m.get_weights())
  x = np.random.default_rng(2).uniform(0, 1, (1, 75, 75, 3)).astype("float32")
  np.testing.assert_allclose(m(x).numpy(), fixed(x).numpy(), rtol=1e-5, atol=1e-6)


def test_lrn_matches_caffe_formula():
  x = np.random.default_rng(3).normal(size=(1, 2, 2, 7)).astype("float32") * 50
  y = LRN(size=5, alpha=1e-4, beta=0.75, k=1.0)(x).numpy()
  sq = np.pad(x ** 2, [(0, 0), (0, 0), (0, 0), (2, 2)])
  window = sum(sq[..., i:i + 7] for i in range(5))
  ref = x / (1.0 + 1e-4 / 5 * window) ** 0.75
  np.testing.assert_allclose(y, ref, rtol=1e-5)


def test_the_documented_feature_extractor():
  """docs/models.md: SqueezeNetV1_1(include_top=False, pooling="avg", input_shape=(None, None, 3))."""
  features = sqznet_tf.SqueezeNetV1_1(include_top=False, pooling="avg", input_shape=(None, None, 3))
  assert features.output_shape == (None, 512)
  for side in (64, 97):  # any input size
    assert features(np.zeros((2, side, side, 3), np.float32)).shape == (2, 512)


def test_keras_applications_arguments():
  m = sqznet_tf.get_model("squeezenet_v1_1", include_top=False, pooling="avg", input_shape=(48, 48, 3))
  assert m.output_shape == (None, 512)
  m = sqznet_tf.get_model("squeezenet_v1_1", include_top=False, input_shape=(48, 48, 3))
  assert m.output_shape == (None, 2, 2, 512)
  m = sqznet_tf.get_model("squeezenet_v1_1", classes=10, classifier_activation=None,
                          input_shape=(48, 48, 3), name="tiny")
  assert m.name == "tiny" and m.output_shape == (None, 10) and "predictions" not in [l.name for l in m.layers]
  inp = keras.Input((40, 40, 3))
  m = sqznet_tf.SqueezeNetV1_0(input_tensor=inp, classes=3, squeeze_ratio=0.25)
  assert m.inputs[0] is inp and m.get_layer("fire2_squeeze1x1").filters == 32
  m = sqznet_tf.get_model("alexnet_owt", include_top=False, pooling="max", input_shape=(100, 100, 3))
  assert m.output_shape == (None, 256)


def test_batch_norm_option():
  m = sqznet_tf.get_model("squeezenet_v1_1", batch_norm=True, classes=10, input_shape=(32, 32, 3))
  bn = [l.name for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert "conv1_bn" in bn and "fire9_expand3x3_bn" in bn and "conv10_bn" in bn and len(bn) == 1 + 8 * 3 + 1


def test_weights_round_trip(tmp_path):
  m = sqznet_tf.get_model("squeezenet_v1_1", classes=4, input_shape=(32, 32, 3))
  path = str(tmp_path / "w.weights.h5")
  m.save_weights(path)
  m2 = sqznet_tf.get_model("squeezenet_v1_1", classes=4, input_shape=(32, 32, 3), weights=path)
  x = np.random.default_rng(4).uniform(size=(1, 32, 32, 3)).astype("float32")
  np.testing.assert_allclose(m(x).numpy(), m2(x).numpy(), rtol=1e-6)
  with pytest.raises(SqznetError, match="does not fit"):
    sqznet_tf.get_model("squeezenet_v1_1", classes=5, input_shape=(32, 32, 3), weights=path)


def test_saved_model_round_trip_with_custom_layers(tmp_path):
  m = sqznet_tf.get_model("squeezenet_v1_0_caffe", classes=3, input_shape=(35, 35, 3))
  path = str(tmp_path / "m.h5")
  m.save(path)
  m2 = keras.models.load_model(path, custom_objects=sqznet_tf.models.CUSTOM_OBJECTS)
  x = np.random.default_rng(5).uniform(size=(1, 35, 35, 3)).astype("float32")
  np.testing.assert_allclose(m(x).numpy(), m2(x).numpy(), rtol=1e-6)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"input_shape": (20, 20, 3)}, "input size 20x20 is too small for squeezenet_v1_0; the smallest accepted is 21x21"),
    ({"classes": 0}, "classes=0 is not accepted"),
    ({"pooling": "mean", "include_top": False}, "pooling='mean' is not accepted"),
    ({"weights": "/nonexistent/w.h5"}, "does not exist"),
    ({"input_shape": (64, 64)}, "input_shape=(64, 64) is not accepted"),
])
def test_builder_errors(kwargs, fragment):
  with pytest.raises(SqznetError) as e:
    sqznet_tf.get_model("squeezenet_v1_0", **kwargs)
  assert fragment in str(e.value)


def test_alexnet_top_needs_6x6_pool5():
  with pytest.raises(SqznetError, match="fc6 needs a 6x6 pool5 map, e.g. 227x227"):
    sqznet_tf.get_model("alexnet", input_shape=(180, 180, 3))


def test_the_cifar_variant_has_v1_1s_weights_at_full_resolution():
  m = sqznet_tf.get_model("squeezenet_v1_1_cifar", classes=10)
  v11 = sqznet_tf.get_model("squeezenet_v1_1", batch_norm=True, classes=10, input_shape=(32, 32, 3))
  assert m.count_params() == v11.count_params() == 739_442  # the same kernels, batch norm included
  assert m.input_shape == (None, 32, 32, 3) and m.get_layer("conv1").output_shape == (None, 32, 32, 64)
  assert m.get_layer("conv10").output_shape == (None, 8, 8, 10)


def test_shipped_weights_names_are_checked(monkeypatch, tmp_path):
  with pytest.raises(SqznetError, match="weights='cifar10' are for squeezenet_v1_1_cifar; squeezenet_v1_1 is not"):
    sqznet_tf.get_model("squeezenet_v1_1", weights="cifar10")
  with pytest.raises(SqznetError, match="weights='cifar10' have 10 classes; classes=100 is not accepted"):
    sqznet_tf.get_model("squeezenet_v1_1_cifar", weights="cifar10", classes=100)
  from sqznet_tf import weights as weights_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(weights_lib, "PRETRAINED_DIR", str(tmp_path))
  with pytest.raises(SqznetError, match="weights 'cifar10': the package's file .* is missing"):
    sqznet_tf.get_model("squeezenet_v1_1_cifar", weights="cifar10")
