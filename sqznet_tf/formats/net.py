"""Reader for the Deep Compression release of SqueezeNet v1.0 (`compressed_SqueezeNet.net`).

Han et al., "Deep Compression" (arXiv:1510.00149); file from github.com/songhan/
SqueezeNet-Deep-Compression. Written from the format description (REFERENCE.md section 7),
numpy only:

- little-endian, no padding; 26 conv layers in Caffe order: conv1; for fire2..fire9 squeeze 1x1,
  expand 1x1, expand 3x3; conv10 (`conv_final`); Caffe weight layout (out, in, kh, kw);
- header: 26 x uint32, the number n of stored entries of each layer;
- per layer: float32 codebook[256]; float32 bias[out]; uint8 code[n]; uint8 gap[ceil(n/2)]
  (4-bit gaps, low nibble for even entries, high nibble for odd ones);
- the flat index of entry j is sum_{k<=j}(gap_k + 1) - 1; weights not stored are 0; filler
  entries (code 0, codebook[0] == 0.0) bridge gaps longer than 15.
"""

import dataclasses
import hashlib
import os
from typing import List, Sequence, Tuple, Union

import numpy as np

from sqznet_tf.errors import SqznetError
from sqznet_tf.io import read_bytes

CODEBOOK_SIZE = 256
RELEASE_SHA256 = "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261"
RELEASE_SIZE = 675_763


# (squeeze, expand 1x1, expand 3x3) of fire2..fire9 in SqueezeNet v1.0: the file's layer table.
# A fact of the format, written out so that this module needs no model code
# (tests/formats checks it against sqznet_tf.models.configs).
_V1_0_FIRES = ((16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128), (48, 192, 192), (48, 192, 192),
               (64, 256, 256), (64, 256, 256))


def _v1_0_layers() -> List[Tuple[str, str, Tuple[int, int, int, int]]]:
  """(Keras name, Caffe name, Caffe shape) of the 26 layers in file order."""
  layers = [("conv1", "conv1", (96, 3, 7, 7))]
  in_ch = 96
  for i, (squeeze, e1, e3) in enumerate(_V1_0_FIRES, start=2):
    n = f"fire{i}"
    layers += [(f"{n}_squeeze1x1", f"{n}/conv1x1_1", (squeeze, in_ch, 1, 1)),
               (f"{n}_expand1x1", f"{n}/conv1x1_2", (e1, squeeze, 1, 1)),
               (f"{n}_expand3x3", f"{n}/conv3x3_2", (e3, squeeze, 3, 3))]
    in_ch = e1 + e3
  layers.append(("conv10", "conv_final", (1000, in_ch, 1, 1)))
  return layers


LAYERS = _v1_0_layers()


@dataclasses.dataclass
class CompressedLayer:
  """One decoded layer.

  Attributes:
    name: Keras layer name (fire2_squeeze1x1, ...).
    caffe_name: name in the Caffe release (fire2/conv1x1_1, ...).
    kernel: float32 weights in Caffe layout (out, in, kh, kw); pruned weights are 0.
    bias: float32 (out,).
    codebook: float32 (256,) shared weight values; codebook[0] is 0.0.
    codes: uint8 (n,) codebook index of each stored entry (fillers included).
    indices: int64 (n,) flat index into the kernel of each stored entry.
  """
  name: str
  caffe_name: str
  kernel: np.ndarray
  bias: np.ndarray
  codebook: np.ndarray
  codes: np.ndarray
  indices: np.ndarray

  @property
  def keras_kernel(self) -> np.ndarray:
    """The kernel in Keras layout (kh, kw, in, out)."""
    return np.ascontiguousarray(self.kernel.transpose(2, 3, 1, 0))

  @property
  def stored(self) -> int:
    return int(self.codes.size)


@dataclasses.dataclass
class CompressedNet:
  """All 26 layers of the file, with what it took to read them."""
  layers: List[CompressedLayer]
  file_size: int
  sha256: str

  @property
  def num_params(self) -> int:
    return sum(l.kernel.size + l.bias.size for l in self.layers)

  @property
  def num_weights(self) -> int:
    return sum(l.kernel.size for l in self.layers)

  @property
  def zero_fraction(self) -> float:
    """Share of kernel weights (biases excluded) that are exactly 0."""
    return sum(int((l.kernel == 0).sum()) for l in self.layers) / self.num_weights

  def by_name(self):
    return {l.name: l for l in self.layers}


def _take(buf: memoryview, offset: int, nbytes: int, layer: str, what: str) -> Tuple[memoryview, int]:
  if offset + nbytes > len(buf):
    raise SqznetError(f"compressed file is truncated: layer {layer} needs {nbytes} bytes of {what} at "
                      f"offset {offset}, but the file ends at byte {len(buf)}")
  return buf[offset:offset + nbytes], offset + nbytes


def decode(data: Union[bytes, bytearray, memoryview], layers: Sequence = LAYERS) -> CompressedNet:
  """Decodes the bytes of a compressed SqueezeNet v1.0 file.

  Raises:
    SqznetError: naming the layer and byte offset where the file stops making sense (truncated,
      padded, or not this format).
  """
  buf = memoryview(bytes(data))
  header_bytes = 4 * len(layers)
  if len(buf) < header_bytes:
    raise SqznetError(f"compressed file is {len(buf)} bytes, shorter than its {header_bytes}-byte "
                      f"header of {len(layers)} layer sizes; not a compressed SqueezeNet v1.0 file")
  counts = np.frombuffer(buf[:header_bytes], dtype="<u4")
  for (name, _, shape), n in zip(layers, counts):
    size = int(np.prod(shape))
    if n > size:
      raise SqznetError(f"header says layer {name} stores {int(n)} entries, more than its {size} "
                        f"weights {shape}; not a compressed SqueezeNet v1.0 file")
  offset = header_bytes
  out = []
  for (name, caffe_name, shape), n in zip(layers, counts):
    n = int(n)
    size = int(np.prod(shape))
    chunk, offset = _take(buf, offset, 4 * CODEBOOK_SIZE, name, "codebook")
    codebook = np.frombuffer(chunk, dtype="<f4").astype(np.float32)
    chunk, offset = _take(buf, offset, 4 * shape[0], name, "biases")
    bias = np.frombuffer(chunk, dtype="<f4").astype(np.float32)
    code_start = offset
    chunk, offset = _take(buf, offset, n, name, "codes")
    codes = np.frombuffer(chunk, dtype=np.uint8).copy()
    chunk, offset = _take(buf, offset, (n + 1) // 2, name, "gaps")
    packed = np.frombuffer(chunk, dtype=np.uint8)
    gaps = np.empty(2 * packed.size, dtype=np.int64)
    gaps[0::2] = packed & 0x0F
    gaps[1::2] = packed >> 4
    gaps = gaps[:n]
    indices = np.cumsum(gaps + 1) - 1
    if n and indices[-1] >= size:
      bad = int(np.argmax(indices >= size))
      raise SqznetError(f"layer {name}: entry {bad} (codes at offset {code_start}) points at weight "
                        f"{int(indices[bad])}, outside its {size} weights {shape}")
    if not np.isfinite(codebook).all() or not np.isfinite(bias).all():
      raise SqznetError(f"layer {name}: codebook or biases hold non-finite values (near offset "
                        f"{code_start}); not a compressed SqueezeNet v1.0 file")
    flat = np.zeros(size, dtype=np.float32)
    flat[indices] = codebook[codes]
    out.append(CompressedLayer(name, caffe_name, flat.reshape(shape), bias, codebook, codes, indices))
  if offset != len(buf):
    raise SqznetError(f"compressed file has {len(buf) - offset} extra bytes after the last layer "
                      f"(it should end at offset {offset}, it is {len(buf)} bytes)")
  return CompressedNet(out, len(buf), hashlib.sha256(buf).hexdigest())


def read(path: Union[str, os.PathLike]) -> CompressedNet:
  """Reads and decodes a `.net` file (see `decode`)."""
  data = read_bytes(path, "compressed weights")
  try:
    return decode(data)
  except SqznetError as e:
    raise SqznetError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Writing the release's format.


def sparse_entries(flat: np.ndarray, codes_of_nonzero: np.ndarray, max_gap: int = 15):
  """(codes, gaps) of a flat kernel's non-zero weights, with filler entries (code 0) for gaps
  longer than `max_gap`, placed greedily every max_gap + 1 positions as Deep Compression does.

  Args:
    flat: the flat kernel.
    codes_of_nonzero: codebook index of each non-zero weight, in order.
  """
  positions = np.flatnonzero(flat)
  codes, gaps = [], []
  prev = -1
  for pos, code in zip(positions.tolist(), codes_of_nonzero.tolist()):
    gap = pos - prev - 1
    while gap > max_gap:
      codes.append(0)
      gaps.append(max_gap)
      gap -= max_gap + 1
    codes.append(code)
    gaps.append(gap)
    prev = pos
  return np.asarray(codes, np.uint8), np.asarray(gaps, np.uint8)


def _pack_gaps(gaps: np.ndarray) -> bytes:
  padded = np.zeros(2 * ((gaps.size + 1) // 2), np.uint8)
  padded[:gaps.size] = gaps
  return (padded[0::2] | (padded[1::2] << 4)).astype(np.uint8).tobytes()


def encode_layers(layers: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]]) -> bytes:
  """Bytes of the release format from (kernel in Caffe layout, bias, codebook[256]) per layer.

  Every non-zero weight must equal a codebook entry other than entry 0 (which must be 0.0).

  Raises:
    SqznetError: naming the layer whose weights are not in its codebook.
  """
  if len(layers) != len(LAYERS):
    raise SqznetError(f"the release format holds {len(LAYERS)} layers; got {len(layers)}")
  header, body = [], []
  for (name, _, shape), (kernel, bias, codebook) in zip(LAYERS, layers):
    kernel = np.asarray(kernel, np.float32)
    codebook = np.asarray(codebook, np.float32)
    if kernel.shape != tuple(shape) or codebook.shape != (CODEBOOK_SIZE,) or codebook[0] != 0.0:
      raise SqznetError(f"layer {name}: expected kernel {shape} and a 256-entry codebook starting with 0.0")
    flat = kernel.reshape(-1)
    values = flat[flat != 0]
    # The first codebook entry holding each value (entries 1..255; entry 0 is the filler's 0.0).
    order = np.argsort(codebook[1:], kind="stable")
    sorted_book = codebook[1:][order]
    where = np.searchsorted(sorted_book, values)
    where = np.clip(where, 0, sorted_book.size - 1)
    if values.size and not np.array_equal(sorted_book[where], values):
      bad = int(np.flatnonzero(sorted_book[where] != values)[0])
      raise SqznetError(f"layer {name}: weight {float(values[bad]):.6g} is not in its codebook")
    codes, gaps = sparse_entries(flat, order[where] + 1)
    header.append(codes.size)
    body += [codebook.astype("<f4").tobytes(), np.asarray(bias, "<f4").tobytes(), codes.tobytes(), _pack_gaps(gaps)]
  return np.asarray(header, "<u4").tobytes() + b"".join(body)


def encode(net: CompressedNet) -> bytes:
  """Re-encodes decoded layers (their kernels and codebooks) in the release format."""
  return encode_layers([(l.kernel, l.bias, l.codebook) for l in net.layers])
