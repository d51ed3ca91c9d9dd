"""Canonical, length-limited Huffman coding of small alphabets (numpy; no TensorFlow).

Deep Compression's third stage: the codes of shared weights and the relative indices of sparse
entries are far from uniform, so a per-layer Huffman code stores them in fewer bits. A code is
described by one length per symbol (0 for a symbol that does not occur); codes are canonical
(assigned in order of (length, symbol)), so the lengths are all a decoder needs.
"""

import heapq
import itertools
from typing import Tuple

import numpy as np

from sqznet_tf.errors import SqznetError

MAX_LENGTH = 16


def code_lengths(counts, max_length: int = MAX_LENGTH) -> np.ndarray:
  """Huffman code length of each symbol from its count, no length above `max_length`.

  Symbols with count 0 get length 0. A single occurring symbol gets length 1. Lengths over the
  limit are avoided by halving the counts (rounding up, so no symbol vanishes) and rebuilding.
  """
  counts = np.asarray(counts, dtype=np.int64)
  if counts.ndim != 1 or (counts < 0).any():
    raise SqznetError("Huffman counts must be a 1-D array of non-negative integers")
  present = np.flatnonzero(counts)
  if present.size > (1 << max_length):
    raise SqznetError(f"{present.size} symbols do not fit codes of at most {max_length} bits")
  lengths = np.zeros(counts.size, dtype=np.uint8)
  if present.size == 0:
    return lengths
  if present.size == 1:
    lengths[present] = 1
    return lengths
  work = counts[present].copy()
  while True:
    tick = itertools.count()
    heap = [(int(c), next(tick), [int(i)]) for i, c in enumerate(work)]
    heapq.heapify(heap)
    depth = np.zeros(present.size, dtype=np.int64)
    while len(heap) > 1:
      c1, _, s1 = heapq.heappop(heap)
      c2, _, s2 = heapq.heappop(heap)
      merged = s1 + s2
      depth[merged] += 1
      heapq.heappush(heap, (c1 + c2, next(tick), merged))
    if depth.max() <= max_length:
      lengths[present] = depth
      return lengths
    work = (work + 1) // 2


def canonical_codes(lengths) -> np.ndarray:
  """The canonical code (as an integer of `length` bits) of each symbol."""
  lengths = np.asarray(lengths, dtype=np.int64)
  codes = np.zeros(lengths.size, dtype=np.int64)
  code = 0
  prev_len = 0
  for sym in sorted(np.flatnonzero(lengths).tolist(), key=lambda s: (lengths[s], s)):
    code <<= int(lengths[sym]) - prev_len
    prev_len = int(lengths[sym])
    codes[sym] = code
    code += 1
  return codes


def check_lengths(lengths, what: str = "Huffman table") -> np.ndarray:
  """Raises unless the lengths describe a prefix code (Kraft sum <= 1, lengths <= MAX_LENGTH)."""
  lengths = np.asarray(lengths, dtype=np.int64)
  if (lengths > MAX_LENGTH).any():
    raise SqznetError(f"{what}: code length {int(lengths.max())} is over the limit of {MAX_LENGTH} bits")
  used = lengths[lengths > 0]
  if used.size and (np.ldexp(1.0, -used).sum() > 1.0 + 1e-12):
    raise SqznetError(f"{what}: the code lengths do not form a prefix code")
  return lengths


def encoded_bits(symbols, lengths) -> int:
  """Bits `encode` would write."""
  return int(np.asarray(lengths, dtype=np.int64)[np.asarray(symbols, dtype=np.int64)].sum())


def encode(symbols, lengths) -> Tuple[bytes, int]:
  """(bytes, number of bits) of `symbols` coded with the canonical code of `lengths`, MSB first."""
  symbols = np.asarray(symbols, dtype=np.int64)
  lengths = np.asarray(lengths, dtype=np.int64)
  if symbols.size == 0:
    return b"", 0
  if (lengths[symbols] == 0).any():
    raise SqznetError("a symbol to encode has no Huffman code")
  codes = canonical_codes(lengths)
  lens = lengths[symbols]
  vals = codes[symbols].astype(">u4")
  bits = np.unpackbits(vals.view(np.uint8).reshape(-1, 4), axis=1)  # (n, 32), MSB first
  keep = np.arange(32)[None, :] >= (32 - lens)[:, None]
  stream = bits[keep]
  return np.packbits(stream).tobytes(), int(stream.size)


def decode(data: bytes, nbits: int, count: int, lengths, what: str = "Huffman stream") -> np.ndarray:
  """`count` symbols from the first `nbits` bits of `data`.

  Raises:
    SqznetError: if the stream holds a bit pattern that is no code, or ends early, or does not
      end where its length says.
  """
  lengths = check_lengths(lengths, what)
  if count == 0:
    if nbits:
      raise SqznetError(f"{what}: {nbits} bits for no symbols")
    return np.zeros(0, dtype=np.int64)
  if nbits > 8 * len(data):
    raise SqznetError(f"{what}: {nbits} bits do not fit its {len(data)} bytes")
  if count > nbits:  # every symbol takes at least one bit: checked before anything is allocated
    raise SqznetError(f"{what}: ends after at most {nbits} of {count} symbols ({count} symbols cannot fit in "
                      f"{nbits} bits)")
  if not lengths.any():
    raise SqznetError(f"{what}: {count} symbols but an empty code table")
  codes = canonical_codes(lengths)
  table_sym = np.full(1 << MAX_LENGTH, -1, dtype=np.int64)
  table_len = np.zeros(1 << MAX_LENGTH, dtype=np.int64)
  for sym in np.flatnonzero(lengths).tolist():
    shift = MAX_LENGTH - int(lengths[sym])
    lo = int(codes[sym]) << shift
    table_sym[lo:lo + (1 << shift)] = sym
    table_len[lo:lo + (1 << shift)] = lengths[sym]
  bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:nbits].astype(np.int64)
  padded = np.concatenate([bits, np.zeros(MAX_LENGTH, dtype=np.int64)])
  window = np.zeros(nbits, dtype=np.int64)
  for k in range(MAX_LENGTH):
    window = (window << 1) | padded[k:k + nbits]
  sym_at = table_sym[window].tolist()
  len_at = table_len[window].tolist()
  out = [0] * count
  pos = 0
  for i in range(count):
    if pos >= nbits:
      raise SqznetError(f"{what}: ends after {i} of {count} symbols")
    sym = sym_at[pos]
    if sym < 0:
      raise SqznetError(f"{what}: bits at {pos} are no code of its table")
    out[i] = sym
    pos += len_at[pos]
  if pos != nbits:
    raise SqznetError(f"{what}: {count} symbols end at bit {pos}, the stream says {nbits}")
  return np.asarray(out, dtype=np.int64)
