"""Weights into a built Keras model: the Deep Compression release, `.sqz` containers, Keras weights.

What the builders' `weights=` argument calls (`load_weights(model, weights)`):
  - "imagenet": the Deep Compression release of SqueezeNet v1.0, fetched once through the Keras
    file cache (pinned commit, sha256 checked; offline, a cached file is used);
  - a name in PRETRAINED ("cifar10"): a `.sqz` the package ships (offline, no download);
  - a path to a `.net` file in that format;
  - a path to a `.sqz` container written by `sqznet_tf.compression`;
  - a path to Keras weights (HDF5) saved by this package (`save_weights`), with its metadata.
The metadata (preprocessing, labels, source, licence) is attached to the model; read it back with
`weights_info(model)`. Turning any file or folder into a model (the architecture included) is
`sqznet_tf.loading.load_model`; this module only fills a model that exists.
"""

import dataclasses
import hashlib
import os
from typing import Optional

from sqznet_tf.errors import SqznetError
from sqznet_tf.formats import net as net_format
from sqznet_tf.formats import sqz
from sqznet_tf.formats.metadata import INFO_SUFFIX, PRESETS, WeightsInfo, read_info, write_info
from sqznet_tf.io import atomic_file

RELEASE_URL = ("https://github.com/songhan/SqueezeNet-Deep-Compression/raw/"
               "fb13faa2cf121ced9999f8a9d538ec6c56084733/compressed_SqueezeNet.net")
RELEASE_FILENAME = "compressed_SqueezeNet.net"

# Weights the package ships, by name: (file in pretrained/, the registry variant, classes).
# Trained by this project; BENCHMARKS.md gives the command, the machine and the accuracy.
PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
PRETRAINED = {"cifar10": ("squeezenet_v1_1_cifar_cifar10.sqz", "squeezenet_v1_1_cifar", 10)}


def pretrained_path(name: str) -> str:
  """Path of the shipped weights called `name` (a key of PRETRAINED)."""
  if name not in PRETRAINED:
    raise SqznetError(f"weights {name!r} are not shipped with the package; shipped: {', '.join(PRETRAINED)}")
  path = os.path.join(PRETRAINED_DIR, PRETRAINED[name][0])
  if not os.path.isfile(path):
    raise SqznetError(f"weights {name!r}: the package's file {path} is missing (reinstall sqznet_tf)")
  return path


def shipped_name(weights) -> Optional[str]:
  """`weights` as a key of PRETRAINED when it names weights the package ships, else None (a file or
  folder of that name in the working directory wins over the name)."""
  if isinstance(weights, (str, os.PathLike)) and os.fspath(weights) in PRETRAINED \
      and not os.path.exists(os.fspath(weights)):
    return os.fspath(weights)
  return None


def resolve(weights):
  """A shipped weights name as the path of its file; any other value unchanged."""
  name = shipped_name(weights)
  return pretrained_path(name) if name else weights


IMAGENET_INFO = WeightsInfo(
    name="imagenet",
    architecture="squeezenet_v1_0_caffe",
    classes=1000,
    preprocessing=PRESETS["caffe"],
    labels="ImageNet ILSVRC-2012 synsets in Caffe order (synset_words.txt; pass --labels)",
    source=RELEASE_URL,
    sha256=net_format.RELEASE_SHA256,
    licence="BSD-2-Clause (songhan/SqueezeNet-Deep-Compression)",
)


def _sha256(path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def cache_dir() -> str:
  """Keras' file cache folder for models: $KERAS_HOME/models, else ~/.keras/models."""
  base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
  return os.path.join(base, "models")


def fetch_imagenet() -> str:
  """Path of the Deep Compression release in the Keras cache, downloading it if missing.

  A cached file is checked against the pinned sha256 and used without any network access.
  """
  path = os.path.join(cache_dir(), RELEASE_FILENAME)
  if not os.path.exists(path):
    from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top  (only to download)
    try:
      path = keras.utils.get_file(RELEASE_FILENAME, RELEASE_URL, cache_subdir="models",
                                  file_hash=net_format.RELEASE_SHA256, hash_algorithm="sha256",
                                  cache_dir=os.path.dirname(cache_dir()))
    except Exception as e:  # network errors come in many types
      raise SqznetError(f"cannot download the ImageNet weights from {RELEASE_URL}: {e}; put the file "
                        f"at {path} to use it offline") from None
  digest = _sha256(path)
  if digest != net_format.RELEASE_SHA256:
    raise SqznetError(f"{path} has sha256 {digest}, expected {net_format.RELEASE_SHA256}; "
                      "the file is corrupted or not the release: delete it to download it again")
  return path


def release_info(path: str, net: net_format.CompressedNet) -> WeightsInfo:
  """The metadata of a `.net` file: the release's, with this file's name and checksum."""
  info = dataclasses.replace(IMAGENET_INFO, name=os.path.basename(str(path)), source=os.path.basename(str(path)),
                             sha256=net.sha256)
  if net.sha256 != net_format.RELEASE_SHA256:
    info.licence = "unknown (not the Deep Compression release file)"
  return info


def read_release(weights) -> "tuple[net_format.CompressedNet, WeightsInfo]":
  """(decoded net, metadata) of "imagenet" or a `.net` file."""
  if str(weights) == "imagenet":
    return net_format.read(fetch_imagenet()), IMAGENET_INFO
  net = net_format.read(weights)
  return net, release_info(weights, net)


def _weighted_layers(model):
  return {l.name: l for l in model.layers if l.weights}


def load_compressed(model, net: net_format.CompressedNet, info: WeightsInfo,
                    skip_classifier_mismatch: bool = False) -> None:
  """Loads decoded Deep Compression layers into a SqueezeNet v1.0 model (by layer name).

  With skip_classifier_mismatch, a conv10 with another class count keeps its own (fresh)
  weights: fine-tuning to new classes.
  """
  layers = _weighted_layers(model)
  file_layers = net.by_name()
  expected = set(file_layers)
  if "conv10" not in layers:
    expected.discard("conv10")  # include_top=False: the features only
  elif skip_classifier_mismatch and layers["conv10"].filters != info.classes:
    expected.discard("conv10")
    layers = {k: v for k, v in layers.items() if k != "conv10"}
  extra = sorted(set(layers) - expected)
  missing = sorted(expected - set(layers))
  if extra or missing:
    what = (f"layers {', '.join(extra[:4])} have no weights in the file" if extra
            else f"layers {', '.join(missing[:4])} are not in the model")
    raise SqznetError(f"weights {info.name!r} (SqueezeNet v1.0) do not fit model {model.name!r}: {what}; "
                      "use squeezenet_v1_0_caffe or squeezenet_v1_0 without overrides")
  if "conv10" in layers and layers["conv10"].filters != info.classes:
    raise SqznetError(f"weights {info.name!r} have {info.classes} classes; model {model.name!r} has "
                      f"{layers['conv10'].filters} (use classes={info.classes}, or include_top=False)")
  order = [l.name for l in net.layers if l.name in expected]  # file order: the first mismatch first
  for name in order:
    layer, src = layers[name], file_layers[name]
    kernel = src.keras_kernel
    if tuple(layer.kernel.shape) != kernel.shape:
      raise SqznetError(f"weights {info.name!r} do not fit model {model.name!r}: layer {name} is "
                        f"{tuple(layer.kernel.shape)} in the model, {kernel.shape} in the file")
  for name in order:
    layers[name].set_weights([file_layers[name].keras_kernel, file_layers[name].bias])


def load_container(model, container: sqz.Container, source: str = "container") -> None:
  """Sets every weight of `model` from a decoded `.sqz` container, after checking that all fit.

  Raises:
    SqznetError: naming the architecture in the file and the first layer that does not fit; the
      model is left untouched.
  """
  arch = container.config.get("architecture", "?")
  expected = {}
  for layer in model.layers:
    for i, w in enumerate(layer.weights):
      expected[(layer.name, i)] = tuple(int(d) for d in w.shape)
  problems = []
  for key, shape in expected.items():
    if key not in container.tensors:
      problems.append(f"layer {key[0]} weight {key[1]} {shape} is not in the file")
    elif container.tensors[key].shape != shape:
      problems.append(f"layer {key[0]} is {shape} in the model, {container.tensors[key].shape} in the file")
  extra = [k for k in container.tensors if k not in expected]
  if extra:
    problems.append(f"the file has weights for {', '.join(sorted({k[0] for k in extra})[:3])}, not in the model")
  if problems:
    raise SqznetError(f"{source} holds {arch} and does not fit model {model.name!r}: {problems[0]}"
                      + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
  for layer in model.layers:
    if layer.weights:
      layer.set_weights([container.tensors[(layer.name, i)] for i in range(len(layer.weights))])


def container_info(container: sqz.Container) -> Optional[WeightsInfo]:
  """The weights metadata a container carries, or None."""
  d = container.config.get("info")
  return WeightsInfo.from_dict(d) if d else None


def save_weights(model, path: str, info: Optional[WeightsInfo] = None) -> None:
  """Saves Keras weights (HDF5) and their metadata (`path` + .sqznet.json), each atomically."""
  with atomic_file(path, "" if str(path).endswith(".h5") else ".weights.h5") as tmp:
    model.save_weights(tmp)
  if info is not None:
    write_info(path, info)


def save_model(model, path: str, info: Optional[WeightsInfo] = None) -> None:
  """Saves a whole Keras model (`.keras`) and its metadata (`path` + .sqznet.json), each atomically."""
  with atomic_file(path, "" if str(path).endswith(".keras") else ".keras") as tmp:
    model.save(tmp)
  if info is not None:
    write_info(path, info)


def is_hdf5(path) -> bool:
  """Whether the file at `path` starts with HDF5's signature (Keras .h5 weights do)."""
  try:
    with open(path, "rb") as f:
      return f.read(8) == b"\x89HDF\r\n\x1a\n"
  except OSError:
    return False


def check_hdf5(path) -> None:
  """SqznetError when a `.h5` file that exists is not HDF5 (e.g. text given as weights)."""
  if str(path).endswith(".h5") and os.path.isfile(str(path)) and not is_hdf5(path):
    raise SqznetError(f"weights file {str(path)!r} is not an HDF5 weights file (its first bytes are not HDF5's "
                      "signature); expected Keras weights saved by this package")


def is_container(weights) -> bool:
  """Whether `weights` names a `.sqz` container (by suffix or by its magic bytes)."""
  return str(weights).endswith(sqz.SUFFIX) or (os.path.isfile(str(weights)) and sqz.is_container(weights))


def load_weights(model, weights) -> Optional[WeightsInfo]:
  """Loads `weights` ("imagenet", a `.net` file, a `.sqz` container, or Keras weights) into `model`.

  Returns the weights' metadata (also attached to the model, see `weights_info`), or None.
  Checkpoints of a pruning or clustering phase (tfmot wrappers) are loaded by
  `sqznet_tf.loading.load_model`.
  """
  if weights is None:
    return None
  weights = resolve(weights)
  if str(weights) == "imagenet" or str(weights).endswith(".net"):
    net, info = read_release(weights)
    load_compressed(model, net, info)
  elif is_container(weights):
    # A file that fits this model holds exactly its values: twice that (plus 1M, so that a file for
    # a neighbouring architecture is still decoded and named as not fitting) bounds the decoding.
    data = sqz.read(weights, max_elements=2 * int(model.count_params()) + (1 << 20))
    load_container(model, data, str(weights))
    info = container_info(data)
  else:
    check_hdf5(weights)
    try:
      model.load_weights(str(weights))
    except (ValueError, OSError) as e:
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise SqznetError(f"weights file {str(weights)!r} does not fit {model.name}: {first}") from e
    info = read_info(weights)
  if info is not None:
    attach_info(model, info)
  return info


_ATTR = "_sqznet_weights_info"


def weights_info(model) -> Optional[WeightsInfo]:
  """Metadata of the weights loaded into `model` by `load_weights`, or None."""
  return getattr(model, _ATTR, None)


def attach_info(model, info: WeightsInfo) -> None:
  object.__setattr__(model, _ATTR, info)


__all__ = ["IMAGENET_INFO", "INFO_SUFFIX", "RELEASE_URL", "WeightsInfo", "attach_info", "cache_dir",
           "check_hdf5", "container_info", "fetch_imagenet", "is_container", "is_hdf5", "load_compressed", "load_container",
           "load_weights", "read_info", "read_release", "release_info", "resolve", "save_model", "save_weights", "shipped_name",
           "weights_info",
           "write_info"]
