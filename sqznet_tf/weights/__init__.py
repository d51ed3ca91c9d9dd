"""Pretrained weights: the Deep Compression SqueezeNet release, and weights saved by this package.

`load_weights(model, weights)` is what the builders' `weights=` argument calls:
  - "imagenet": the Deep Compression release of SqueezeNet v1.0, fetched once through the Keras
    file cache (pinned commit, sha256 checked; offline, a cached file is used);
  - a path to a `.net` file in that format;
  - a path to a `.sqz` container written by `sqznet_tf.compression` (sparse, weight-shared);
  - a path to Keras weights saved by this package (`save_weights`), with its metadata beside it.
The metadata (preprocessing, labels, source, licence) is attached to the model; read it back with
`weights_info(model)`.
"""

import dataclasses
import hashlib
import json
import os
from typing import Optional

import numpy as np

from sqznet_tf.data.preprocessing import PRESETS, Preprocessing
from sqznet_tf.errors import SqznetError
from sqznet_tf.weights import deep_compression

RELEASE_URL = ("https://github.com/songhan/SqueezeNet-Deep-Compression/raw/"
               "fb13faa2cf121ced9999f8a9d538ec6c56084733/compressed_SqueezeNet.net")
RELEASE_FILENAME = "compressed_SqueezeNet.net"
INFO_SUFFIX = ".sqznet.json"


@dataclasses.dataclass
class WeightsInfo:
  """What travels with a set of weights.

  Attributes:
    name: short name ("imagenet", a file name, ...).
    architecture: registry name of the network the weights are for.
    classes: number of output classes.
    preprocessing: how photos must be prepared for these weights.
    labels: where the class names come from (a description or a path).
    source: where the weights come from.
    sha256: checksum of the weights file, when known.
    licence: the weights' licence.
  """
  name: str
  architecture: str
  classes: int
  preprocessing: Preprocessing
  labels: str = ""
  source: str = ""
  sha256: str = ""
  licence: str = ""

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["preprocessing"] = self.preprocessing.to_dict()
    return d

  @classmethod
  def from_dict(cls, d: dict) -> "WeightsInfo":
    d = dict(d)
    d["preprocessing"] = Preprocessing.from_dict(d.get("preprocessing", {}))
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


IMAGENET_INFO = WeightsInfo(
    name="imagenet",
    architecture="squeezenet_v1_0_caffe",
    classes=1000,
    preprocessing=PRESETS["caffe"],
    labels="ImageNet ILSVRC-2012 synsets in Caffe order (synset_words.txt; pass --labels)",
    source=RELEASE_URL,
    sha256=deep_compression.RELEASE_SHA256,
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
    from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
    try:
      path = keras.utils.get_file(RELEASE_FILENAME, RELEASE_URL, cache_subdir="models",
                                  file_hash=deep_compression.RELEASE_SHA256, hash_algorithm="sha256",
                                  cache_dir=os.path.dirname(cache_dir()))
    except Exception as e:  # network errors come in many types
      raise SqznetError(f"cannot download the ImageNet weights from {RELEASE_URL}: {e}; put the file "
                        f"at {path} to use it offline") from None
  digest = _sha256(path)
  if digest != deep_compression.RELEASE_SHA256:
    raise SqznetError(f"{path} has sha256 {digest}, expected {deep_compression.RELEASE_SHA256}; "
                      "the file is corrupted or not the release: delete it to download it again")
  return path


def _weighted_layers(model):
  return {l.name: l for l in model.layers if l.weights}


def load_compressed(model, net: deep_compression.CompressedNet, info: WeightsInfo,
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


def save_weights(model, path: str, info: Optional[WeightsInfo] = None) -> None:
  """Saves Keras weights (HDF5) and their metadata (`path` + .sqznet.json), each atomically."""
  from sqznet_tf.cli import write_atomic  # pylint: disable=g-import-not-at-top
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, ".tmp-" + os.path.basename(path))
  if not tmp.endswith(".h5"):
    tmp += ".weights.h5"
  model.save_weights(tmp)
  os.replace(tmp, path)
  if info is not None:
    write_atomic(path + INFO_SUFFIX, json.dumps(info.to_dict(), indent=2) + "\n")


def _is_container(weights) -> bool:
  from sqznet_tf.compression import container  # pylint: disable=g-import-not-at-top
  return str(weights).endswith(container.SUFFIX) or container.is_container(weights)


def load_weights(model, weights) -> Optional[WeightsInfo]:
  """Loads `weights` ("imagenet", a `.net` file, a `.sqz` container, or Keras weights) into `model`.

  Returns the weights' metadata (also attached to the model, see `weights_info`), or None.
  """
  if weights is None:
    return None
  if str(weights) == "imagenet":
    info = IMAGENET_INFO
    net = deep_compression.read(fetch_imagenet())
    load_compressed(model, net, info)
  elif _is_container(weights):
    from sqznet_tf.compression import container  # pylint: disable=g-import-not-at-top
    data = container.read(weights)
    container.load_into(model, data, str(weights))
    info = WeightsInfo.from_dict(data.config["info"]) if data.config.get("info") else None
  elif str(weights).endswith(".net"):
    net = deep_compression.read(weights)
    info = dataclasses.replace(IMAGENET_INFO, name=os.path.basename(str(weights)),
                               source=os.path.abspath(str(weights)), sha256=net.sha256)
    if net.sha256 != deep_compression.RELEASE_SHA256:
      info.licence = "unknown (not the Deep Compression release file)"
    load_compressed(model, net, info)
  else:
    try:
      model.load_weights(str(weights))
    except (ValueError, OSError) as e:
      from sqznet_tf.training import wrappers  # pylint: disable=g-import-not-at-top
      record = wrappers.find_record(str(weights)) if os.path.exists(str(weights)) else None
      if record is None:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SqznetError(f"weights file {str(weights)!r} does not fit {model.name}: {first}") from e
      wrappers.load_stripped(model, str(weights), record)  # a checkpoint of a pruning/clustering phase
    info = None
    meta = str(weights) + INFO_SUFFIX
    if os.path.exists(meta):
      with open(meta, encoding="utf-8") as f:
        info = WeightsInfo.from_dict(json.load(f))
  if info is not None:
    attach_info(model, info)
  return info


_ATTR = "_sqznet_weights_info"


def weights_info(model) -> Optional[WeightsInfo]:
  """Metadata of the weights loaded into `model` by `load_weights`, or None."""
  return getattr(model, _ATTR, None)


def attach_info(model, info: WeightsInfo) -> None:
  object.__setattr__(model, _ATTR, info)


__all__ = ["IMAGENET_INFO", "RELEASE_URL", "WeightsInfo", "attach_info", "cache_dir", "fetch_imagenet",
           "load_compressed", "load_weights", "save_weights", "weights_info"]
