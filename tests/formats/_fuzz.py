"""Fuzzing of the two decoders, run in a process of its own (numpy only) so that its memory is its own.

    python -m tests.formats._fuzz RELEASE.net SEED CASES

Mutates and truncates a real `.sqz` (the release's first layers, re-shared and Huffman-coded,
plus fixed-width ones) and the release `.net`; prints one JSON line: cases per outcome, the
error types that escaped (none may but SqznetError), the peak memory (VmHWM) and the time.
"""

import json
import struct
import sys
import time
import zlib

import numpy as np

from sqznet_tf.compression import sharing
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats import net, sqz


def peak_mb() -> float:
  """This process's peak resident memory (VmHWM), in MiB. (ru_maxrss would count the parent's memory
  too: Linux carries it over fork and exec.)"""
  with open("/proc/self/status", encoding="ascii") as f:
    return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024


def real_sqz(release: net.CompressedNet):
  """(bytes of a Huffman-coded and of a fixed-width .sqz of the release's first 7 layers, their shapes)."""
  tensors, shapes = [], {}
  for layer in release.layers[:7]:
    shared = sharing.codebook_of(layer.keras_kernel, 8)
    tensors += [(layer.name, 0, sqz.Coded(shared.codebook, shared.codes, 8)), (layer.name, 1, layer.bias)]
    shapes[(layer.name, 0)], shapes[(layer.name, 1)] = layer.keras_kernel.shape, layer.bias.shape
  conf = {"architecture": "squeezenet_v1_0_caffe", "build": {}}
  return sqz.encode(tensors, conf)[0], sqz.encode(tensors, conf, entropy=False)[0], shapes


def mutate(data: bytes, rng, fix_crc: bool) -> bytes:
  kind = rng.integers(4)
  b = bytearray(data)
  if kind == 0:  # flip bytes
    for _ in range(int(rng.integers(1, 8))):
      b[int(rng.integers(len(b)))] = int(rng.integers(256))
  elif kind == 1:  # truncate
    b = b[:int(rng.integers(len(b)))]
  elif kind == 2:  # a header field set to a large value
    at = int(rng.integers(max(1, min(len(b) - 4, 4096))))
    struct.pack_into("<I", b, at, int(rng.choice([0xFFFFFFFF, 1 << 31, 10 ** 9, 65535, 0])))
  else:  # bytes inserted or removed
    at = int(rng.integers(len(b)))
    b = b[:at] + bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8)) + b[at:] if rng.random() < 0.5 \
        else b[:at] + b[at + int(rng.integers(1, 64)):]
  if fix_crc and len(b) > 4:  # past the checksum, so that the decoder's own checks are reached
    b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
  return bytes(b)


def main(release_path: str, seed: int, cases: int) -> None:
  start = time.time()
  release = net.read(release_path)
  raw = open(release_path, "rb").read()
  huff, fixed, shapes = real_sqz(release)
  rng = np.random.default_rng(seed)
  outcome = {"decoded": 0, "refused": 0}
  escaped = {}
  for i in range(cases):
    which = i % 3
    try:
      if which == 2:
        net.decode(mutate(raw, rng, False))
      else:
        data = mutate(huff if which == 0 else fixed, rng, fix_crc=bool(rng.random() < 0.8))
        sqz.decode(data, "fuzz.sqz", expected=lambda config: shapes)
      outcome["decoded"] += 1
    except SqznetError:
      outcome["refused"] += 1
    except Exception as e:  # pylint: disable=broad-except  (what the test looks for)
      escaped[type(e).__name__] = escaped.get(type(e).__name__, 0) + 1
  print(json.dumps({"cases": cases, **outcome, "escaped": escaped, "sqz_bytes": [len(huff), len(fixed)],
                    "max_rss_mb": peak_mb(),
                    "seconds": round(time.time() - start, 1)}))


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
