"""Huffman coding, weight sharing and the .sqz container, on the Deep Compression release."""

import struct
import zlib

import numpy as np
import pytest

from sqznet_tf.compression import container, sharing
from sqznet_tf.formats import huffman, sqz
from sqznet_tf.errors import SqznetError

KIB_660 = 660 * 1024  # the paper's "0.66 MB"
KIB_470 = 470 * 1024  # the paper's "0.47 MB"


@pytest.fixture(scope="module")
def release(release_path):
  from sqznet_tf.formats import net as deep_compression
  return deep_compression.read(release_path)


def release_tensors(net, bits=8):
  out = []
  for l in net.layers:
    s = sharing.codebook_of(l.keras_kernel, 8) if bits == 8 else sharing.share(l.keras_kernel, bits)
    out += [(l.name, 0, sqz.Coded(s.codebook, s.codes, bits)), (l.name, 1, l.bias)]
  return out


@pytest.fixture(scope="module")
def release_files(release):
  conf = {"architecture": "squeezenet_v1_0_caffe", "build": {"classes": 1000, "input_shape": [227, 227, 3]}}
  t8 = release_tensors(release)
  fixed, _ = sqz.encode(t8, conf, entropy=False)
  coded, stats = sqz.encode(t8, conf, entropy=True)
  return {"fixed": fixed, "huffman": coded, "stats": stats, "conf": conf}


def test_huffman_round_trip_and_length_limit():
  rng = np.random.default_rng(0)
  symbols = np.minimum(rng.geometric(0.3, 20000) - 1, 63)
  lengths = huffman.code_lengths(np.bincount(symbols, minlength=64))
  data, nbits = huffman.encode(symbols, lengths)
  np.testing.assert_array_equal(huffman.decode(data, nbits, symbols.size, lengths), symbols)
  entropy = -(np.bincount(symbols) / symbols.size * np.log2(np.bincount(symbols) / symbols.size + 1e-300)).sum()
  assert entropy <= nbits / symbols.size < entropy + 1  # Huffman's bound
  fib = [1, 1]
  while len(fib) < 30:
    fib.append(fib[-1] + fib[-2])  # counts whose unlimited Huffman code would be 29 bits deep
  assert huffman.code_lengths(fib).max() <= huffman.MAX_LENGTH
  huffman.check_lengths(huffman.code_lengths(fib))
  with pytest.raises(SqznetError, match="no code of its table|ends after"):
    huffman.decode(b"\xff" * 4, 32, 40, [1, 0, 0, 2])  # '1' alone is no code of {0: '0', 3: '10'}


def test_optimal_kmeans_is_the_exhaustive_optimum():
  """The divide-and-conquer programme finds the least squared error over every split of the
  sorted values into k runs (exhaustive search on small sets: 1-D k-means clusters are runs)."""
  import itertools  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  for trial in range(40):
    n = int(rng.integers(4, 13))
    k = int(rng.integers(2, n))
    values = np.unique(rng.standard_t(2, n) if trial % 2 else rng.normal(size=n))
    weights = rng.integers(1, 6, values.size).astype(np.float64)

    def sse(edges):
      total = 0.0
      for a, b in zip(edges[:-1], edges[1:]):
        mean = np.average(values[a:b], weights=weights[a:b])
        total += float((weights[a:b] * (values[a:b] - mean) ** 2).sum())
      return total

    best = min(sse([0, *cut, values.size]) for cut in itertools.combinations(range(1, values.size), k - 1))
    c = sharing._optimal(values, weights, k)  # pylint: disable=protected-access
    assert c.size == k and np.all(np.diff(c) > 0), c
    mid = (c[1:] + c[:-1]) / 2
    got = float((weights * (values - c[np.searchsorted(mid, values)]) ** 2).sum())
    assert got <= best * (1 + 1e-9) + 1e-12, (trial, got, best)


def test_optimal_sharing_beats_lloyd_and_keeps_zeros():
  rng = np.random.default_rng(1)
  kernel = rng.standard_t(3, (3, 3, 16, 32)).astype(np.float32)
  kernel[np.abs(kernel) < 0.8] = 0
  errors = {}
  for init in sharing.INITS:
    s = sharing.share(kernel, 4, init)
    assert s.codebook.size <= 16 and s.codebook[0] == 0
    np.testing.assert_array_equal(s.kernel == 0, kernel == 0)
    errors[init] = float(((s.kernel - kernel) ** 2).sum())
  assert errors["optimal"] <= min(errors.values()) + 1e-6
  with pytest.raises(SqznetError, match="bits=9 is not accepted"):
    sharing.share(kernel, 9)
  with pytest.raises(SqznetError, match="'kmeans' is not accepted"):
    sharing.share(kernel, 4, "kmeans")
  with pytest.raises(SqznetError, match="distinct non-zero values"):
    sharing.codebook_of(kernel, 4)


def test_release_round_trip_is_bit_identical(release, release_files):
  for key in ("fixed", "huffman"):
    back = sqz.decode(release_files[key])
    for l in release.layers:
      np.testing.assert_array_equal(back.tensors[(l.name, 0)], l.keras_kernel)
      np.testing.assert_array_equal(back.tensors[(l.name, 1)], l.bias)
    assert back.config == release_files["conf"]
  fixed, coded = len(release_files["fixed"]), len(release_files["huffman"])
  assert coded < fixed <= KIB_660, (coded, fixed)
  stats = {s.name: s for s in release_files["stats"]}
  # Near-dense 1x1 layers are cheaper dense; the 20%-dense conv10 sparse.
  assert stats["fire2_squeeze1x1:0"].layout == "dense" and stats["conv10:0"].layout == "sparse"
  assert sum(s.nbytes for s in release_files["stats"]) < coded


def test_six_bit_file_is_under_470_kib(release):
  data, _ = sqz.encode(release_tensors(release, 6), {"architecture": "squeezenet_v1_0_caffe"})
  assert len(data) <= KIB_470
  fixed, _ = sqz.encode(release_tensors(release, 6), {"architecture": "squeezenet_v1_0_caffe"}, entropy=False)
  assert len(data) < len(fixed)


def _tiny_file(models, bits=4):
  model = models.get("squeezenet_v1_1", 32, classes=10)
  shared = {}
  for layer in model.layers:
    if type(layer).__name__ == "Conv2D":
      shared[layer.name] = sharing.share(layer.get_weights()[0], bits)
  tensors = container.model_tensors(model, bits, shared)
  conf = container.model_config("squeezenet_v1_1", {"classes": 10, "input_shape": [32, 32, 3]})
  return model, shared, tensors, conf


def test_container_loads_into_the_builder_and_names_its_model(models, tmp_path):
  import sqznet_tf
  from sqznet_tf import loading
  model, shared, tensors, conf = _tiny_file(models)
  data, _ = sqz.encode(tensors, conf)
  path = tmp_path / "tiny.sqz"
  path.write_bytes(data)
  built = sqznet_tf.get_model("squeezenet_v1_1", classes=10, input_shape=(32, 32, 3), weights=str(path))
  for layer in built.layers:
    if layer.name in shared:
      np.testing.assert_array_equal(layer.get_weights()[0], shared[layer.name].kernel)
  again, _ = loading.load_model(str(path))  # the file names its architecture
  assert again.count_params() == model.count_params() and again.input_shape == (None, 32, 32, 3)


def _with_crc(body: bytes) -> bytes:
  return body + struct.pack("<I", zlib.crc32(body))


def test_corrupted_containers_fail_with_a_clear_message(models, release_files, tmp_path):
  import sqznet_tf
  good = release_files["huffman"]
  cases = {
      "truncated": (good[:len(good) // 2], "checksum mismatch|truncated"),
      "magic": (b"ZIP!" + good[4:], "not a sqznet compressed container"),
      "flipped": (good[:5000] + bytes([good[5000] ^ 0xFF]) + good[5001:], "checksum mismatch"),
  }
  # A code past its codebook, with a valid checksum: shrink conv1's codebook size field.
  model, _, tensors, conf = _tiny_file(models)
  data, _ = sqz.encode(tensors, conf, entropy=False)
  body = bytearray(data[:-4])
  name = b"conv1"
  at = body.index(bytes([len(name)]) + name) + 1 + len(name) + 2 + 4 * 4 + 1  # name, index, rank, dims, kind
  bits, k = struct.unpack_from("<BH", body, at)
  struct.pack_into("<BH", body, at, bits, 2)
  patched = bytes(body[:at + 3]) + bytes(body[at + 3:at + 3 + 8]) + bytes(body[at + 3 + 4 * k:])
  cases["index"] = (_with_crc(patched), "codebook index .* out of range for its 2-entry codebook")
  for what, (blob, message) in cases.items():
    with pytest.raises(SqznetError, match=message):
      sqz.decode(blob, f"{what}.sqz")
    path = tmp_path / f"{what}.sqz"
    path.write_bytes(blob)
    with pytest.raises(SqznetError, match=message):
      sqznet_tf.get_model("squeezenet_v1_0_caffe", weights=str(path))
  # A file for another architecture: refused, and the target model is left as it was.
  path = tmp_path / "v1_0.sqz"
  path.write_bytes(good)
  target = models.get("squeezenet_v1_1", 227)
  before = [w.copy() for w in target.get_weights()]
  with pytest.raises(SqznetError, match=r"holds squeezenet_v1_0_caffe and does not fit model .*: layer conv1 is"):
    from sqznet_tf import weights
    weights.load_weights(target, str(path))
  for a, b in zip(before, target.get_weights()):
    np.testing.assert_array_equal(a, b)
