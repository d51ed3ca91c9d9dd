"""The Deep Compression release: decoding, checks on damaged files, loading into Keras models."""

import os
import shutil

import numpy as np
import pytest

import sqznet_tf
from sqznet_tf import weights as weights_lib
from sqznet_tf.data.preprocessing import PRESETS
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats import net as dc


@pytest.fixture(scope="module")
def raw(release_path):
  return release_path.read_bytes()


@pytest.fixture(scope="module")
def net(raw):
  return dc.decode(raw)


def test_decoded_release_matches_published_figures(net, raw):
  assert net.file_size == len(raw) == dc.RELEASE_SIZE
  assert net.sha256 == dc.RELEASE_SHA256
  assert len(net.layers) == 26
  assert net.num_params == 1_248_424
  assert round(net.zero_fraction, 3) == 0.666  # density 33.4%
  assert all(l.codebook[0] == 0.0 for l in net.layers)
  assert [l.caffe_name for l in net.layers[:4]] == ["conv1", "fire2/conv1x1_1", "fire2/conv1x1_2", "fire2/conv3x3_2"]
  assert net.layers[-1].caffe_name == "conv_final" and net.layers[-1].kernel.shape == (1000, 512, 1, 1)
  # Every stored entry decodes to its codebook value at its index; fillers (code 0) to 0.
  for l in net.layers:
    flat = l.kernel.reshape(-1)
    np.testing.assert_array_equal(flat[l.indices], l.codebook[l.codes])
    assert np.count_nonzero(flat) <= l.stored
    assert len(np.unique(flat)) <= 256


def test_truncated_file_names_layer_and_offset(raw):
  with pytest.raises(SqznetError, match=r"truncated: layer conv10 needs \d+ bytes of gaps at offset \d+"):
    dc.decode(raw[:-100])
  with pytest.raises(SqznetError, match=r"truncated: layer fire\d_\w+ needs"):
    dc.decode(raw[:200_000])
  with pytest.raises(SqznetError, match="shorter than its 104-byte header"):
    dc.decode(raw[:50])


def test_padded_file(raw):
  with pytest.raises(SqznetError, match="7 extra bytes after the last layer"):
    dc.decode(raw + b"\0" * 7)


def test_foreign_file(raw):
  rng = np.random.default_rng(0)
  with pytest.raises(SqznetError, match="header says layer conv1 stores .* not a compressed SqueezeNet"):
    dc.decode(rng.integers(0, 256, len(raw), dtype=np.uint8).tobytes())


def test_index_outside_layer(raw, net):
  last = net.layers[-1]
  damaged = bytearray(raw)
  gap_bytes = (last.stored + 1) // 2
  damaged[-gap_bytes:] = b"\xff" * gap_bytes  # every gap 15: indices run past 512,000
  with pytest.raises(SqznetError, match=r"layer conv10: entry \d+ .* outside its 512000 weights"):
    dc.decode(bytes(damaged))


def test_loaded_kernels_are_caffe_kernels_transposed(pretrained, net):
  for name in ("conv1", "fire5_expand3x3", "conv10"):
    src = net.by_name()[name]
    kernel, bias = pretrained.get_layer(name).get_weights()
    np.testing.assert_array_equal(kernel, src.kernel.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(bias, src.bias)
  info = weights_lib.weights_info(pretrained)
  assert info.preprocessing == PRESETS["caffe"] and info.classes == 1000
  assert info.preprocessing.channel_order == "BGR" and info.preprocessing.mean == (104.0, 117.0, 123.0)
  assert "BSD" in info.licence and info.sha256 == dc.RELEASE_SHA256


def test_features_only_and_torchvision_layout(release_path):
  m = sqznet_tf.get_model("squeezenet_v1_0", include_top=False, weights=str(release_path),
                          input_shape=(64, 64, 3))
  assert m.get_layer("fire9_expand3x3").get_weights()[0].shape == (3, 3, 64, 256)
  assert np.count_nonzero(m.get_layer("fire9_expand3x3").get_weights()[0]) > 0


@pytest.mark.parametrize("name, kwargs, fragment", [
    ("squeezenet_v1_0_caffe", {"classes": 10}, "have 1000 classes; model 'squeezenet_v1_0_caffe' has 10"),
    ("squeezenet_v1_1", {}, "layer conv1 is (3, 3, 3, 64) in the model, (7, 7, 3, 96) in the file"),
    ("squeezenet_v1_0_complex_bypass", {}, "fire2_bypass1x1"),
    ("squeezenet_v1_0", {"squeeze_ratio": 0.25}, "layer fire2_squeeze1x1 is"),
])
def test_mismatched_models_are_refused(release_path, name, kwargs, fragment):
  with pytest.raises(SqznetError) as e:
    sqznet_tf.get_model(name, weights=str(release_path), input_shape=(64, 64, 3), **kwargs)
  assert fragment in str(e.value)


def test_imagenet_uses_the_keras_cache_offline(tmp_path, monkeypatch, release_path):
  from sqznet_tf._keras import keras
  monkeypatch.setenv("KERAS_HOME", str(tmp_path))
  def no_network(*a, **k):
    raise AssertionError("tried to download")
  monkeypatch.setattr(keras.utils, "get_file", no_network)
  os.makedirs(tmp_path / "models")
  shutil.copy(release_path, tmp_path / "models" / "compressed_SqueezeNet.net")
  m = sqznet_tf.get_model("squeezenet_v1_0_caffe", weights="imagenet")
  assert weights_lib.weights_info(m).name == "imagenet"
  assert weights_lib.weights_info(m).source == weights_lib.RELEASE_URL
  assert np.count_nonzero(m.get_layer("conv10").get_weights()[0]) > 0
  # A damaged cached file is refused by its checksum, not used and not replaced silently.
  cached = tmp_path / "models" / "compressed_SqueezeNet.net"
  data = bytearray(cached.read_bytes())
  data[1000] ^= 0xFF
  cached.write_bytes(bytes(data))
  with pytest.raises(SqznetError, match=f"has sha256 [0-9a-f]{{64}}, expected {dc.RELEASE_SHA256}"):
    sqznet_tf.get_model("squeezenet_v1_0_caffe", weights="imagenet")


def test_imagenet_refused_for_alexnet_and_other_classes():
  with pytest.raises(SqznetError, match="not available for alexnet"):
    sqznet_tf.get_model("alexnet", weights="imagenet")
  with pytest.raises(SqznetError, match="classes=10 is not accepted"):
    sqznet_tf.get_model("squeezenet_v1_0_caffe", weights="imagenet", classes=10)


def test_saved_weights_keep_their_metadata(tmp_path, pretrained):
  path = str(tmp_path / "sq.weights.h5")
  weights_lib.save_weights(pretrained, path, weights_lib.weights_info(pretrained))
  m = sqznet_tf.get_model("squeezenet_v1_0_caffe", weights=path)
  assert weights_lib.weights_info(m).preprocessing == PRESETS["caffe"]
  np.testing.assert_array_equal(m.get_layer("conv10").get_weights()[0],
                                pretrained.get_layer("conv10").get_weights()[0])
  assert sorted(os.listdir(tmp_path)) == ["sq.weights.h5", "sq.weights.h5.sqznet.json"]


def test_reencoding_the_release_gives_the_same_bytes(raw, net):
  # Fillers placed greedily every 16 positions reproduce the release's own placement.
  assert dc.encode(net) == raw


def test_encoder_refuses_weights_outside_the_codebook(net):
  layers = [(l.kernel.copy(), l.bias, l.codebook) for l in net.layers]
  layers[3][0].reshape(-1)[np.flatnonzero(layers[3][0])[0]] = 123.456
  with pytest.raises(SqznetError, match="layer fire2_expand3x3: weight 123.456 is not in its codebook"):
    dc.encode_layers(layers)
  with pytest.raises(SqznetError, match="holds 26 layers; got 25"):
    dc.encode_layers(layers[:25])


def test_sparse_entries_bridge_long_gaps_with_fillers():
  flat = np.zeros(40, np.float32)
  flat[[0, 20, 39]] = 1.0
  codes, gaps = dc.sparse_entries(flat, np.array([5, 6, 7]))
  # 0 -> 20: gap 19 = one filler (gap 15) + gap 3; 20 -> 39: gap 18 = filler + gap 2.
  assert codes.tolist() == [5, 0, 6, 0, 7] and gaps.tolist() == [0, 15, 3, 15, 2]
  assert (np.cumsum(gaps.astype(int) + 1) - 1)[[0, 2, 4]].tolist() == [0, 20, 39]


def test_release_layer_table_is_squeezenet_v1_0():
  """formats.net writes the release's layer table out (no model code); it is the registry's v1.0."""
  from sqznet_tf.models import configs  # pylint: disable=g-import-not-at-top
  cfg = configs.get_config("squeezenet_v1_0")
  expected, in_ch = [("conv1", (96, 3, 7, 7))], cfg.conv1_filters
  for ch in configs.fire_channels(cfg):
    expected += [(f"{ch.name}_squeeze1x1", (ch.squeeze, in_ch, 1, 1)),
                 (f"{ch.name}_expand1x1", (ch.expand1x1, ch.squeeze, 1, 1)),
                 (f"{ch.name}_expand3x3", (ch.expand3x3, ch.squeeze, 3, 3))]
    in_ch = ch.out_channels
  expected.append(("conv10", (1000, in_ch, 1, 1)))
  assert [(name, shape) for name, _, shape in dc.LAYERS] == expected


def test_container_headers_hold_no_folder_of_the_maker(tmp_path, release_path):
  """The same weights at two places give the same .sqz header: metadata names files, not folders."""
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
  from sqznet_tf.compression import container  # pylint: disable=g-import-not-at-top
  configs = []
  for folder in (tmp_path / "a", tmp_path / "somewhere" / "much" / "deeper"):
    folder.mkdir(parents=True)
    copy = folder / "compressed_SqueezeNet.net"
    shutil.copy(release_path, copy)
    model, info = loading.load_model(str(copy))
    configs.append(json.dumps(container.model_config("squeezenet_v1_0_caffe", {"classes": 1000}, info)))
  assert configs[0] == configs[1] and str(tmp_path) not in configs[0]
