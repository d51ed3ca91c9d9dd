"""Configs and channel counts: pure Python, no TensorFlow model built."""

import json
import subprocess
import sys

import pytest

from sqznet_tf.errors import SqznetError
from sqznet_tf.models import configs

# Published per-module (s1x1, e1x1, e3x3) of fire2..fire9, the same for v1.0 and v1.1
# (REFERENCE.md section 1, from the paper's Table 1 and the Caffe release).
PUBLISHED_FIRE = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
                  (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]


def test_channel_counts_match_published_table_without_tensorflow():
  # A fresh interpreter shows that the configs module computes the table without importing TF.
  code = (
      "import json, sys\n"
      "from sqznet_tf.models import configs\n"
      "out = {n: [f.as_tuple() for f in configs.fire_channels(configs.get_config(n))]\n"
      "       for n in ('squeezenet_v1_0', 'squeezenet_v1_1')}\n"
      "out['tf_imported'] = 'tensorflow' in sys.modules\n"
      "print(json.dumps(out))\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["tf_imported"] is False
  for name in ("squeezenet_v1_0", "squeezenet_v1_1"):
    assert [tuple(t) for t in out[name]] == PUBLISHED_FIRE


def test_design_space_point_is_an_override():
  c = configs.get_config("squeezenet_v1_0", squeeze_ratio=0.75, pct3x3=0.25)
  chans = configs.fire_channels(c)
  # e_i = 128, 128, 256, 256, 384, 384, 512, 512; s = 0.75 e; e3x3 = 0.25 e.
  assert [ch.as_tuple() for ch in chans][:3] == [(96, 96, 32), (96, 96, 32), (192, 192, 64)]
  assert chans[-1].as_tuple() == (384, 384, 128)
  c2 = configs.get_config("squeezenet_v1_0", base_e=64, incr_e=64, freq=4)
  assert [ch.out_channels for ch in configs.fire_channels(c2)] == [64] * 4 + [128] * 4


def test_feature_sizes_ceil_mode():
  v10 = configs.get_config("squeezenet_v1_0")
  s224 = configs.squeezenet_feature_sizes(v10, 224)
  assert (s224["conv1"], s224["pool1"], s224["pool4"], s224["pool8"]) == (109, 54, 27, 13)
  s227 = configs.squeezenet_feature_sizes(configs.get_config("squeezenet_v1_0_caffe"), 227)
  assert (s227["conv1"], s227["pool1"], s227["pool4"], s227["pool8"], s227["conv10"]) == (111, 55, 27, 13, 15)
  assert configs.pool_out_ceil(54) == 27 and (54 - 3) // 2 + 1 == 26  # where floor mode differs


def test_bypass_placement():
  simple = configs.get_config("squeezenet_v1_0_simple_bypass")
  complex_ = configs.get_config("squeezenet_v1_0_complex_bypass")
  assert [configs.bypass_kind(simple, i) for i in range(8)] == ["none", "identity"] * 4
  assert [configs.bypass_kind(complex_, i) for i in range(8)] == ["conv", "identity"] * 4


@pytest.mark.parametrize("overrides, fragment", [
    ({"squeeze_ratio": 0}, "squeeze_ratio=0"),
    ({"squeeze_ratio": -0.5}, "squeeze_ratio=-0.5"),
    ({"pct3x3": 0.0}, "pct3x3=0.0"),
    ({"pct3x3": 1.0}, "pct3x3=1.0"),
    ({"pct3x3": 1.5}, "strictly between 0 and 1"),
    ({"bypass": "residual"}, "bypass='residual'"),
    ({"squeeze_ratio": 0.001}, "0 squeeze filters"),
    ({"freq": 0}, "freq=0"),
    ({"squeeze_rate": 0.5}, "'squeeze_rate' is not a metaparameter"),
])
def test_impossible_metaparameters_name_the_value(overrides, fragment):
  with pytest.raises(SqznetError) as e:
    configs.get_config("squeezenet_v1_0", **overrides)
  assert fragment in str(e.value)
  assert "\n" not in str(e.value)


def test_unknown_model_lists_known_names():
  with pytest.raises(SqznetError, match="Unknown model 'sqznet'; known: squeezenet_v1_0, "):
    configs.get_config("sqznet")


def test_smallest_input():
  assert configs.min_input_size(configs.get_config("squeezenet_v1_0")) == 21
  with pytest.raises(SqznetError, match="input size 20x20 is too small .* smallest accepted is 21x21"):
    configs.check_input_size(configs.get_config("squeezenet_v1_0"), 20, 20)


def test_the_cifar_stem_keeps_32x32_until_the_first_pool():
  """squeezenet_v1_1_cifar: v1.1's Fire modules behind a 3x3 stride-1 conv1 with padding 1, pools
  after conv1 and fire5."""
  c = configs.get_config("squeezenet_v1_1_cifar")
  assert (c.conv1_kernel, c.conv1_stride, c.conv1_padding, c.batch_norm) == (3, 1, 1, True)
  assert c.pool_after == ("conv1", "fire5")
  assert [f.as_tuple() for f in configs.fire_channels(c)] == PUBLISHED_FIRE
  s = configs.squeezenet_feature_sizes(c, 32)
  assert (s["conv1"], s["pool1"], s["fire5"], s["pool5"], s["fire9"], s["conv10"]) == (32, 16, 16, 8, 8, 8)
  # v1.1 as published halves a 32x32 image in conv1 and ends at 1x1.
  v11 = configs.squeezenet_feature_sizes(configs.get_config("squeezenet_v1_1"), 32)
  assert (v11["conv1"], v11["conv10"]) == (15, 1)
  with pytest.raises(SqznetError, match="conv1_padding=-1 is not accepted for squeezenet_v1_1_cifar"):
    configs.get_config("squeezenet_v1_1_cifar", conv1_padding=-1)


def test_pool_placement_is_an_override():
  """--pool_after / JSON metadata give a list or "conv1,fire3,fire5"; the config holds a tuple either way."""
  for value in (["conv1", "fire3", "fire5"], "conv1,fire3,fire5", ("conv1", "fire3", "fire5")):
    c = configs.get_config("squeezenet_v1_1_cifar", pool_after=value)
    assert c.pool_after == ("conv1", "fire3", "fire5")
  s = configs.squeezenet_feature_sizes(c, 32)
  assert (s["fire3"], s["pool3"], s["pool5"], s["conv10"]) == (16, 8, 4, 4)
  with pytest.raises(SqznetError, match="pool_after entry 'fire10' is not accepted"):
    configs.get_config("squeezenet_v1_1_cifar", pool_after=["fire10"])
