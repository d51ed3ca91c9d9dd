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

CODEBOOK_SIZE = 256
RELEASE_SHA256 = "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261"
RELEASE_SIZE = 675_763


def _v1_0_layers() -> List[Tuple[str, str, Tuple[int, int, int, int]]]:
  """(Keras name, Caffe name, Caffe shape) of the 26 layers in file order."""
  from sqznet_tf.models import configs  # pylint: disable=g-import-not-at-top
  cfg = configs.get_config("squeezenet_v1_0")
  layers = [("conv1", "conv1", (96, 3, 7, 7))]
  in_ch = cfg.conv1_filters
  for ch in configs.fire_channels(cfg):
    n = ch.name
    layers += [(f"{n}_squeeze1x1", f"{n}/conv1x1_1", (ch.squeeze, in_ch, 1, 1)),
               (f"{n}_expand1x1", f"{n}/conv1x1_2", (ch.expand1x1, ch.squeeze, 1, 1)),
               (f"{n}_expand3x3", f"{n}/conv3x3_2", (ch.expand3x3, ch.squeeze, 3, 3))]
    in_ch = ch.out_channels
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
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise SqznetError(f"cannot read compressed weights {str(path)!r}: {e.strerror}") from None
  try:
    return decode(data)
  except SqznetError as e:
    raise SqznetError(f"{path}: {e}") from None
