"""Files made to hurt: each is refused at once, in little memory, with one line; only our error escapes.

The crafted files are decoded in a process of their own that imports numpy and the codecs only,
so that its peak memory (VmHWM) is the decoder's, not the test runner's.
"""

import json
import struct
import subprocess
import sys
import zlib

import pytest

from sqznet_tf.formats import huffman, sqz
from tests.conftest import REPO


def _container(config_bytes: bytes, tensors: bytes, count: int) -> bytes:
  body = sqz.MAGIC + struct.pack("<BI", sqz.VERSION, len(config_bytes)) + config_bytes + struct.pack("<H", count) + tensors
  return body + struct.pack("<I", zlib.crc32(body))


def _tensor_head(name: bytes, shape) -> bytes:
  return struct.pack("<B", len(name)) + name + struct.pack(f"<BB{len(shape)}I", 0, len(shape), *shape)


CONF = zlib.compress(json.dumps({"architecture": "squeezenet_v1_1", "build": {}}).encode())


def huffman_500m() -> bytes:
  """One Huffman-coded tensor of 500,000,000 entries whose stream is one byte (valid CRC)."""
  coded = struct.pack("<BBH", sqz.CODED, 1, 2) + struct.pack("<2f", 0.0, 1.0)
  coded += struct.pack("<BBBI", sqz.DENSE, 0, sqz.HUFFMAN, 500_000_000)
  coded += bytes([1, 1]) + struct.pack("<I", 8) + b"\x00"
  return _container(CONF, _tensor_head(b"conv1", (500_000_000,)) + coded, 1)


def sparse_1e10() -> bytes:
  """A fixed-width sparse tensor of shape 100000 x 100000 holding one entry (valid CRC)."""
  coded = struct.pack("<BBH", sqz.CODED, 1, 2) + struct.pack("<2f", 0.0, 1.0)
  coded += struct.pack("<BBBI", sqz.SPARSE, 1, sqz.FIXED, 1) + b"\x80" + b"\x00"
  return _container(CONF, _tensor_head(b"conv1", (100_000, 100_000)) + coded, 1)


def inflating_header(gigabytes: int = 1) -> bytes:
  """A config block that inflates to `gigabytes` GB of spaces (about 5 MB on disk per GB, valid CRC;
  zlib's fastest level: level 9 took 11 s for 2 GB, the test's whole time, for a smaller file)."""
  z = zlib.compressobj(1)
  chunk = b" " * (64 << 20)
  parts = [z.compress(chunk) for _ in range(gigabytes * 16)]
  parts.append(z.flush())
  return _container(b"".join(parts), b"", 0)


def _decode_in_child(path) -> dict:
  script = ("import json, sys, time\n"
            "from sqznet_tf.errors import SqznetError\nfrom sqznet_tf.formats import sqz\n"
            "from tests.formats._fuzz import peak_mb\n"
            "t = time.time()\n"
            "try:\n  sqz.read(sys.argv[1]); out = 'decoded'\n"
            "except SqznetError as e:\n  out = str(e)\n"
            "print(json.dumps({'error': out, 'seconds': time.time() - t,\n"
            "                  'max_rss_mb': peak_mb()}))\n")
  r = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert r.returncode == 0, r.stderr
  return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("make, message", [
    (huffman_500m, "500,000,000 values, more than"),
    (sparse_1e10, "10,000,000,000 values, more than"),
    (inflating_header, "config block inflates to more than 1,048,576 bytes"),
])
def test_crafted_containers_are_refused_at_once(make, message, tmp_path):
  path = tmp_path / "evil.sqz"
  path.write_bytes(make())
  d = _decode_in_child(path)
  assert message in d["error"] and "\n" not in d["error"], d
  assert d["seconds"] < 1.0 and d["max_rss_mb"] < 200, d


def test_huffman_refuses_more_symbols_than_bits():
  with pytest.raises(Exception, match="500000000 symbols cannot fit in 8 bits"):
    huffman.decode(b"\x00", 8, 500_000_000, [1, 1])


def test_a_crafted_container_is_one_line_from_a_binary(tmp_path, sample_dir):
  from tests.tools import run_tool  # pylint: disable=g-import-not-at-top
  path = tmp_path / "evil.sqz"
  path.write_bytes(sparse_1e10())
  r = run_tool("predict", f"--weights={path}", str(sample_dir / "n01440764_tench.JPEG"))
  assert r.returncode == 1 and "Traceback" not in r.stderr
  assert "evil.sqz: tensor conv1:0 (offset" in r.stderr.splitlines()[0]


def test_fuzzed_sqz_and_net_raise_only_our_error(release_path):
  """3,000 mutated and truncated copies (seeded) of a real .sqz (Huffman and fixed width) and of the
  release .net: every one decodes or is refused with SqznetError, in bounded memory."""
  r = subprocess.run([sys.executable, "-m", "tests.formats._fuzz", str(release_path), "20261202", "3000"],
                     capture_output=True, text=True, cwd=REPO, timeout=300)
  assert r.returncode == 0, r.stderr
  d = json.loads(r.stdout.strip().splitlines()[-1])
  assert d["escaped"] == {} and d["refused"] > 1000 and d["decoded"] + d["refused"] == 3000, d
  assert d["max_rss_mb"] < 1024, d
