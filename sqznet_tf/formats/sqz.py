"""The `.sqz` container: sparse, weight-shared, optionally Huffman-coded weights of a model.

Layout (little-endian, no padding; described in full in docs/CONTAINER.md):

    magic  b"SQZC", u8 version (1)
    u32 n, then n bytes: zlib-compressed UTF-8 JSON config (architecture, build arguments,
        weights metadata) so that a file builds its own model
    u16 number of tensors, then per tensor:
      u8 name length, name (the Keras layer), u8 index of the weight within the layer,
      u8 rank, u32 dims[rank] (Keras layout)
      u8 kind: 0 raw -> float32[size]
               1 coded ->
        u8 bits (1..8), u16 K (codebook entries, <= 2^bits), float32 codebook[K] (entry 0 is 0.0)
        u8 layout: 0 dense (one code per weight) | 1 sparse (entries of code + relative index)
        u8 index bits g (sparse: 1..8; gap g = weights skipped since the previous entry; a gap
           over 2^g - 1 is bridged by filler entries of code 0 and gap 2^g - 1, as in Deep
           Compression's release), u8 coding: 0 fixed width | 1 Huffman, u32 entries n
        fixed:   codes bit-packed at `bits` bits, then (sparse) gaps bit-packed at g bits
        Huffman: codes: u8 length[K], u32 nbits, stream; then (sparse) gaps: u8 length[2^g],
                 u32 nbits, stream (canonical codes, MSB first, see `huffman`)
    u32 CRC-32 of every byte before it

Decoding checks everything it reads (magic, version, sizes, codebook indices, gaps, Huffman
tables and streams, the checksum) and raises `SqznetError` naming the tensor and byte offset;
a model is only touched after the whole file has decoded and every tensor fits it.
"""

import dataclasses
import json
import math
import os
import struct
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from sqznet_tf.formats import huffman
from sqznet_tf.errors import SqznetError
from sqznet_tf.io import read_bytes

MAGIC = b"SQZC"
VERSION = 1
SUFFIX = ".sqz"
RAW, CODED = 0, 1
DENSE, SPARSE = 0, 1
FIXED, HUFFMAN = 0, 1
LAYOUTS = ("auto", "dense", "sparse")
MAX_CONFIG_BYTES = 1 << 20  # the inflated JSON config
MAX_RANK = 8
MAX_ELEMENTS = 1 << 27  # values in one file: 512 MiB of float32, twice AlexNet


@dataclasses.dataclass
class Coded:
  """A weight-shared tensor as stored: codebook and one code per weight (0 = zero)."""
  codebook: np.ndarray
  codes: np.ndarray  # uint8, the tensor's shape
  bits: int

  def values(self) -> np.ndarray:
    return self.codebook[self.codes]


@dataclasses.dataclass
class TensorStat:
  """What one tensor costs in the file.

  Attributes:
    name: "layer:index".
    shape: Keras shape.
    kind: "raw" or "coded".
    weights: number of values.
    nonzero: non-zero values.
    entries: stored entries (sparse layout: non-zeros plus fillers; dense: weights).
    layout: "dense", "sparse" or "raw".
    index_bits: gap width of the sparse layout (0 otherwise).
    huffman: whether codes and gaps are Huffman-coded.
    nbytes: bytes of the tensor's record in the file.
  """
  name: str
  shape: Tuple[int, ...]
  kind: str
  weights: int
  nonzero: int
  entries: int
  layout: str
  index_bits: int
  huffman: bool
  nbytes: int

  @property
  def bits_per_weight(self) -> float:
    return 8 * self.nbytes / max(self.weights, 1)

  @property
  def bits_per_nonzero(self) -> float:
    return 8 * self.nbytes / max(self.nonzero, 1)


@dataclasses.dataclass
class Container:
  """A decoded file: its config and every tensor, keyed by (layer name, weight index)."""
  config: dict
  tensors: Dict[Tuple[str, int], np.ndarray]
  stats: List[TensorStat]
  nbytes: int


# ---------------------------------------------------------------------------------------------
# Bit packing


def _pack(values: np.ndarray, width: int) -> bytes:
  """Unsigned values (< 2^width, width <= 8) packed MSB first."""
  if values.size == 0:
    return b""
  bits = np.unpackbits(np.asarray(values, np.uint8).reshape(-1, 1), axis=1)[:, 8 - width:]
  return np.packbits(bits.reshape(-1)).tobytes()


def _unpack(data: bytes, count: int, width: int) -> np.ndarray:
  bits = np.unpackbits(np.frombuffer(data, np.uint8))[:count * width].reshape(count, width)
  return (bits.astype(np.int64) * (1 << np.arange(width - 1, -1, -1))).sum(axis=1)


def _nbytes(count: int, width: int) -> int:
  return (count * width + 7) // 8


# ---------------------------------------------------------------------------------------------
# Sparse entries


def sparse_entries(codes_flat: np.ndarray, index_bits: int) -> Tuple[np.ndarray, np.ndarray]:
  """(codes, gaps) of the non-zero codes, with fillers (code 0, gap 2^g - 1) for long gaps."""
  pos = np.flatnonzero(codes_flat)
  if pos.size == 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  gaps = np.diff(np.concatenate([[-1], pos])) - 1
  step = 1 << index_bits
  fill = gaps // step
  rem = gaps % step
  per = fill + 1
  n = int(per.sum())
  out_codes = np.zeros(n, np.int64)
  out_gaps = np.full(n, step - 1, np.int64)
  last = np.cumsum(per) - 1  # each non-zero is the last entry of its group
  out_codes[last] = codes_flat[pos]
  out_gaps[last] = rem
  return out_codes, out_gaps


def _huffman_part(symbols: np.ndarray, alphabet: int) -> Tuple[bytes, int]:
  lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet))
  stream, nbits = huffman.encode(symbols, lengths)
  return lengths.astype(np.uint8).tobytes() + struct.pack("<I", nbits) + stream, nbits


def _coded_body(coded: Coded, layout: str, index_bits: int, entropy: bool) -> Tuple[bytes, dict]:
  """Smallest record body for the allowed layouts and gap widths."""
  flat = coded.codes.reshape(-1).astype(np.int64)
  k = coded.codebook.size
  candidates = []
  if layout in ("auto", "dense"):
    candidates.append((DENSE, 0, flat, None))
  if layout in ("auto", "sparse"):
    for g in ([index_bits] if index_bits else range(1, 9)):
      c, gp = sparse_entries(flat, g)
      candidates.append((SPARSE, g, c, gp))
  best = None
  for lay, g, c, gp in candidates:
    codings = [HUFFMAN] if entropy else [FIXED]
    for coding in codings:
      if coding == FIXED:
        body = _pack(c, coded.bits) + (_pack(gp, g) if lay == SPARSE else b"")
      else:
        body = _huffman_part(c, k)[0] + (_huffman_part(gp, 1 << g)[0] if lay == SPARSE else b"")
      head = struct.pack("<BBBI", lay, g, coding, c.size)
      if best is None or len(head) + len(body) < len(best[0]):
        best = (head + body, {"layout": "dense" if lay == DENSE else "sparse", "index_bits": g,
                              "huffman": coding == HUFFMAN, "entries": int(c.size)})
  return best


# ---------------------------------------------------------------------------------------------
# Encoding


def encode(tensors: Sequence[Tuple[str, int, Union[np.ndarray, Coded]]], config: dict,
           entropy: bool = True, layout: str = "auto", index_bits: int = 0) -> Tuple[bytes, List[TensorStat]]:
  """Bytes of a container and the cost of each tensor.

  Args:
    tensors: (layer name, weight index, value) in order; a `Coded` value is stored weight-shared,
      an array raw as float32.
    config: JSON-serialisable description of the model (see `model_config`).
    entropy: Huffman-code codes and gaps.
    layout: "auto" (smallest per tensor), "dense" or "sparse".
    index_bits: gap width of the sparse layout, 1..8; 0 picks the smallest per tensor.
  """
  if layout not in LAYOUTS:
    raise SqznetError(f"layout {layout!r} is not accepted; expected one of {', '.join(LAYOUTS)}")
  if isinstance(index_bits, bool) or not isinstance(index_bits, int) or not 0 <= index_bits <= 8:
    raise SqznetError(f"index_bits={index_bits!r} is not accepted; expected 0 (choose per layer) to 8")
  conf = zlib.compress(json.dumps(config, sort_keys=True, separators=(",", ":")).encode("utf-8"), 9)
  parts = [MAGIC, struct.pack("<BI", VERSION, len(conf)), conf, struct.pack("<H", len(tensors))]
  stats = []
  for name, index, value in tensors:
    raw_name = name.encode("utf-8")
    if len(raw_name) > 255:
      raise SqznetError(f"layer name {name!r} is longer than 255 bytes")
    shape = tuple(int(d) for d in np.shape(value.codes if isinstance(value, Coded) else value))
    head = struct.pack("<B", len(raw_name)) + raw_name + struct.pack(f"<BB{len(shape)}I", index, len(shape), *shape)
    size = int(np.prod(shape))
    if isinstance(value, Coded):
      book = np.asarray(value.codebook, np.float32)
      if not 1 <= value.bits <= 8 or not 1 <= book.size <= (1 << value.bits) or book[0] != 0.0:
        raise SqznetError(f"tensor {name}:{index}: a {value.bits}-bit codebook of {book.size} entries "
                          "must have 1..2^bits entries, the first 0.0")
      if value.codes.size and int(value.codes.max()) >= book.size:
        raise SqznetError(f"tensor {name}:{index}: code {int(value.codes.max())} is outside its "
                          f"{book.size}-entry codebook")
      body, how = _coded_body(value, layout, index_bits, entropy)
      rec = head + struct.pack("<BBH", CODED, value.bits, book.size) + book.astype("<f4").tobytes() + body
      nz = int(np.count_nonzero(value.codes))
      stats.append(TensorStat(f"{name}:{index}", shape, "coded", size, nz, how["entries"], how["layout"],
                              how["index_bits"], how["huffman"], len(rec)))
    else:
      arr = np.asarray(value, np.float32)
      rec = head + struct.pack("<B", RAW) + arr.astype("<f4").tobytes()
      stats.append(TensorStat(f"{name}:{index}", shape, "raw", size, int(np.count_nonzero(arr)), size, "raw",
                              0, False, len(rec)))
    parts.append(rec)
  data = b"".join(parts)
  return data + struct.pack("<I", zlib.crc32(data)), stats


# ---------------------------------------------------------------------------------------------
# Decoding


class _Reader:
  def __init__(self, data: bytes):
    self.data = data
    self.pos = 0

  def take(self, n: int, what: str) -> bytes:
    if n < 0 or self.pos + n > len(self.data):
      raise SqznetError(f"container is truncated: {what} needs {n} bytes at offset {self.pos}, "
                        f"the data ends at byte {len(self.data)}")
    out = self.data[self.pos:self.pos + n]
    self.pos += n
    return out

  def unpack(self, fmt: str, what: str):
    return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _huffman_read(r: _Reader, alphabet: int, count: int, what: str) -> np.ndarray:
  lengths = np.frombuffer(r.take(alphabet, f"{what} Huffman table"), np.uint8).astype(np.int64)
  (nbits,) = r.unpack("I", f"{what} stream length")
  stream = r.take((nbits + 7) // 8, f"{what} stream")
  return huffman.decode(stream, nbits, count, lengths, what)


def _decode_coded(r: _Reader, tag: str, shape: Tuple[int, ...]) -> np.ndarray:
  start = r.pos
  bits, k = r.unpack("BH", f"{tag} codebook size")
  if not 1 <= bits <= 8 or not 1 <= k <= (1 << bits):
    raise SqznetError(f"tensor {tag} (offset {start}): {bits}-bit codes with a {k}-entry codebook are not "
                      "valid (bits 1..8, 1..2^bits entries)")
  book = np.frombuffer(r.take(4 * k, f"{tag} codebook"), "<f4").astype(np.float32)
  if not np.isfinite(book).all() or book[0] != 0.0:
    raise SqznetError(f"tensor {tag} (offset {start}): codebook entry 0 is not 0.0 or an entry is not finite")
  lay, g, coding, n = r.unpack("BBBI", f"{tag} layout")
  size = math.prod(shape)
  if lay not in (DENSE, SPARSE) or coding not in (FIXED, HUFFMAN) or (lay == SPARSE and not 1 <= g <= 8):
    raise SqznetError(f"tensor {tag} (offset {start}): unknown layout {lay}/{g}/{coding}")
  if lay == DENSE and n != size:
    raise SqznetError(f"tensor {tag} (offset {start}): dense layout with {n} codes for {size} weights")
  if lay == SPARSE and n > size:  # every entry, filler or not, takes a position of its own
    raise SqznetError(f"tensor {tag} (offset {start}): {n} entries for {size} weights")
  if coding == FIXED:
    codes = _unpack(r.take(_nbytes(n, bits), f"{tag} codes"), n, bits)
    gaps = _unpack(r.take(_nbytes(n, g), f"{tag} gaps"), n, g) if lay == SPARSE else None
  else:
    codes = _huffman_read(r, k, n, f"tensor {tag} codes")
    gaps = _huffman_read(r, 1 << g, n, f"tensor {tag} gaps") if lay == SPARSE else None
  if codes.size and int(codes.max()) >= k:
    bad = int(np.argmax(codes >= k))
    raise SqznetError(f"tensor {tag} (offset {start}): codebook index {int(codes[bad])} of entry {bad} is out "
                      f"of range for its {k}-entry codebook")
  if lay == DENSE:
    return book[codes].reshape(shape)
  positions = np.cumsum(gaps + 1) - 1
  if positions.size and positions[-1] >= size:
    bad = int(np.argmax(positions >= size))
    raise SqznetError(f"tensor {tag} (offset {start}): entry {bad} points at weight {int(positions[bad])}, "
                      f"outside its {size} weights")
  flat = np.zeros(size, np.float32)
  flat[positions] = book[codes]
  return flat.reshape(shape)


ExpectedShapes = Callable[[dict], Dict[Tuple[str, int], Tuple[int, ...]]]


def decode(data: Union[bytes, bytearray, memoryview], source: str = "container",
           expected: Optional[ExpectedShapes] = None, max_elements: int = MAX_ELEMENTS) -> Container:
  """Decodes a whole container; raises `SqznetError` (naming `source`) on anything malformed.

  Every size is checked against the bytes present before anything is allocated: a symbol needs a
  bit, a dense tensor its bytes, entries cannot outnumber weights, the config inflates to at most
  MAX_CONFIG_BYTES, and all tensors together hold at most `max_elements` values.

  Args:
    expected: config -> {(layer, weight index): shape} of the network the file names (what the
      loader builds from the config); each tensor's shape is checked against it before its
      values are decoded, so a file cannot declare shapes the architecture does not have.
  """
  data = bytes(data)
  try:
    return _decode(data, expected, max_elements)
  except SqznetError as e:
    raise SqznetError(f"{source}: {e}") from None


def _inflate(raw: bytes) -> dict:
  """The JSON config, inflated to at most MAX_CONFIG_BYTES."""
  inflater = zlib.decompressobj()
  try:
    text = inflater.decompress(raw, MAX_CONFIG_BYTES)
    if inflater.unconsumed_tail:
      raise SqznetError(f"config block inflates to more than {MAX_CONFIG_BYTES:,} bytes; a model config is a few KB")
    text += inflater.flush()
    return json.loads(text.decode("utf-8"))
  except (zlib.error, UnicodeDecodeError, ValueError) as e:
    raise SqznetError(f"config block does not decode: {e}") from None


def _decode(data: bytes, expected: Optional[ExpectedShapes], max_elements: int) -> Container:
  if data[:4] != MAGIC:
    raise SqznetError(f"not a sqznet compressed container (magic {data[:4]!r}, expected {MAGIC!r})")
  if len(data) < 4 + 5 + 2 + 4:
    raise SqznetError(f"container is truncated: {len(data)} bytes")
  body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
  r = _Reader(body)
  r.take(4, "magic")
  version, conf_len = r.unpack("BI", "header")
  if version != VERSION:
    raise SqznetError(f"container version {version} is not supported (this package reads version {VERSION})")
  conf_raw = r.take(conf_len, "config")
  if zlib.crc32(body) != crc:
    raise SqznetError(f"checksum mismatch (stored {crc:#010x}, computed {zlib.crc32(body):#010x}): the file is "
                      "truncated or corrupted")
  config = _inflate(conf_raw)
  if not isinstance(config, dict):
    raise SqznetError(f"config block is a JSON {type(config).__name__}, not an object")
  shapes = expected(config) if expected is not None else None
  (count,) = r.unpack("H", "tensor count")
  tensors, stats, total = {}, [], 0
  for _ in range(count):
    start = r.pos
    (nlen,) = r.unpack("B", "tensor name")
    name = r.take(nlen, "tensor name").decode("utf-8", errors="replace")
    index, rank = r.unpack("BB", f"tensor {name} header")
    if rank > MAX_RANK:
      raise SqznetError(f"tensor {name} (offset {start}): rank {rank} (at most {MAX_RANK})")
    shape = tuple(r.unpack(f"{rank}I", f"tensor {name} shape")) if rank else ()
    tag = f"{name}:{index}"
    size = math.prod(shape)  # Python integers: no overflow
    total += size
    if total > max_elements:
      raise SqznetError(f"tensor {tag} (offset {start}): shape {shape} brings the file to {total:,} values, more "
                        f"than the {max_elements:,} this reader accepts")
    if shapes is not None and shapes.get((name, index)) != shape:
      want = shapes.get((name, index))
      raise SqznetError(f"tensor {tag} (offset {start}) has shape {shape}, but {config.get('architecture', '?')} "
                        + (f"has {want}" if want is not None else "has no such weight"))
    (kind,) = r.unpack("B", f"tensor {tag} kind")
    if kind == RAW:
      value = np.frombuffer(r.take(4 * size, f"tensor {tag} values"), "<f4").astype(np.float32).reshape(shape)
    elif kind == CODED:
      value = _decode_coded(r, tag, shape)
    else:
      raise SqznetError(f"tensor {tag} (offset {start}): unknown kind {kind}")
    if (name, index) in tensors:
      raise SqznetError(f"tensor {tag} appears twice")
    tensors[(name, index)] = value
    stats.append(TensorStat(tag, shape, "coded" if kind == CODED else "raw", size, int(np.count_nonzero(value)),
                            0, "", 0, False, r.pos - start))
  if r.pos != len(body):
    raise SqznetError(f"{len(body) - r.pos} extra bytes after the last tensor (offset {r.pos})")
  return Container(config, tensors, stats, len(data))


def read(path: Union[str, os.PathLike], expected: Optional[ExpectedShapes] = None,
         max_elements: int = MAX_ELEMENTS) -> Container:
  """Reads and decodes a `.sqz` file (see `decode`)."""
  return decode(read_bytes(path, "compressed weights"), str(path), expected, max_elements)


def is_container(path) -> bool:
  """Whether the file at `path` starts with the container's magic."""
  try:
    with open(path, "rb") as f:
      return f.read(4) == MAGIC
  except OSError:
    return False
