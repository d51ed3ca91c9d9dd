"""One loader: anything on disk (or a registry name) -> a Keras model with its weights' metadata.

`load_model(ref, ...)` accepts, for `ref`:

  a registry name            the architecture with fresh weights ("squeezenet_v1_1")
  "imagenet", a `.net` file  the Deep Compression release (SqueezeNet v1.0, Caffe layout)
  a `.sqz` container         it names its own architecture, builder arguments and metadata
  "cifar10"                  the `.sqz` the package ships (squeezenet_v1_1_cifar on CIFAR-10)
  Keras weights (`.h5`)      saved by this package, metadata beside them (`<file>.sqznet.json`),
                             else from their run folder; an epoch checkpoint of a pruning or
                             clustering phase is loaded with its tfmot wrappers and stripped
  a run folder               sqznet-train (its final weights), sqznet-dsd (its last finished
                             phase), sqznet-compress (the file it wrote, from compress.json)
  a `.keras` model           loaded with Keras' safe mode on (no code in the file runs)
  a SavedModel folder        a Keras SavedModel (sqznet-train's saved_model/) or a version folder
                             written by sqznet-export (rebuilt from its recorded source)

It returns `(model, info)`: info is a `WeightsInfo` (preprocessing, labels, architecture,
overrides), or None when nothing is known about the weights. The info is also attached to the
model (`sqznet_tf.weights.weights_info`), and `source_of(model)` gives the architecture and
overrides the model was built from, when it was built from the registry.
"""

import os
from typing import Optional, Tuple

from sqznet_tf import weights as weights_lib
from sqznet_tf._keras import keras, tf
from sqznet_tf.compression import cluster
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats import sqz
from sqznet_tf.formats.metadata import WeightsInfo, get_preprocessing, read_info
from sqznet_tf.io import read_json
from sqznet_tf.models import configs, get_model
from sqznet_tf.models.layers import CUSTOM_OBJECTS
from sqznet_tf.pruning import prune
from sqznet_tf.training import wrappers

DEFAULT_ARCHITECTURE = "squeezenet_v1_0_caffe"  # the architecture of the ImageNet release
FINAL_WEIGHTS = "final.weights.h5"
DSD_PHASES = ("phase3_dense", "phase2_sparse", "phase1_dense")  # the last finished one is loaded
COMPRESS_RECORD = "compress.json"
EXPORT_META = os.path.join("assets.extra", "sqznet_export.json")
FORMS = ("a registry name, 'imagenet', 'cifar10', a .net or .sqz file, Keras weights (.h5), a .keras model, a "
         "sqznet-train/-dsd/-compress run folder or a SavedModel folder")

_SOURCE_ATTR = "_sqznet_source"


def source_of(model) -> Optional[dict]:
  """{"architecture", "overrides"} of a model built by `load_model` from the registry, else None."""
  return getattr(model, _SOURCE_ATTR, None)


def _attach(model, info: Optional[WeightsInfo], architecture: Optional[str] = None, overrides=None):
  if info is not None:
    weights_lib.attach_info(model, info)
  if architecture:
    object.__setattr__(model, _SOURCE_ATTR, {"architecture": architecture, "overrides": dict(overrides or {})})
  return model, info


def _build(architecture: str, overrides: dict, classes: Optional[int], input_size: Optional[int],
           info: Optional[WeightsInfo]):
  """The registry model for the resolved architecture, classes and input size (fresh weights)."""
  config = configs.get_config(architecture, **overrides)
  classes = classes or (info.classes if info else None)
  size = input_size or (info.preprocessing.crop_size if info else None) or config.default_input_size
  kwargs = dict(overrides, input_shape=(size, size, 3))
  if classes:
    kwargs["classes"] = int(classes)
  return get_model(architecture, **kwargs)


def _merge(info: Optional[WeightsInfo], model: Optional[str], overrides: Optional[dict]) -> Tuple[str, dict]:
  """(architecture, overrides): the caller's, else the metadata's, else the release's."""
  stored = dict(info.overrides) if info and info.overrides else {}
  merged = dict(stored, **(overrides or {}))
  architecture = model or (info.architecture if info else None)
  if not architecture:
    raise SqznetError("the weights do not say which network they are for: give the architecture "
                      f"(--model), one of {', '.join(configs.list_models())}")
  return architecture, merged


def _dsd_phase(folder: str) -> Optional[str]:
  for phase in DSD_PHASES:
    if os.path.exists(os.path.join(folder, phase, FINAL_WEIGHTS)):
      return os.path.join(folder, phase)
  return None


def _run_config(folder: str) -> Optional[dict]:
  """config.json of a sqznet-train run folder (architecture and overrides), or None."""
  path = os.path.join(folder, "config.json")
  return read_json(path, "run config") if os.path.exists(path) else None


def _info_for_weights(path: str) -> Optional[WeightsInfo]:
  """Metadata of Keras weights: beside the file, else its run's final weights' (an epoch checkpoint)."""
  info = read_info(path)
  if info is not None:
    return info
  folder = os.path.dirname(os.path.abspath(path))
  for d in (folder, os.path.dirname(folder)):
    info = read_info(os.path.join(d, FINAL_WEIGHTS))
    if info is not None:
      return info
    conf = _run_config(d)
    if conf and conf.get("model"):  # a run that has not finished yet: its config names the network
      overrides = dict(conf.get("overrides") or {})
      if conf.get("dropout") is not None:
        overrides["dropout"] = conf["dropout"]
      return WeightsInfo(name=os.path.basename(path), architecture=conf["model"], classes=conf.get("classes") or 0,
                         preprocessing=_preprocessing_of(conf), overrides=overrides)
  return None


def _preprocessing_of(conf: dict):
  data = conf.get("data") or {}
  return get_preprocessing(data.get("preprocessing", "caffe"), crop_size=data.get("image_size"))


def _load_stripped(model, weights_path: str, record_path: str):
  """`model` (plain) with the weights of a wrapped checkpoint: wrappers rebuilt, loaded and stripped."""
  rec = read_json(record_path, "wrapper record")
  wrapped = model
  if rec.get("prune"):
    wrapped = prune.prune_model(wrapped, {name: 0.5 for name in rec["prune"]})
  c = rec.get("cluster")
  if c:
    n = int(c["number_of_clusters"])  # cluster.number_of_clusters: 2**bits, or 2**bits - 1
    bits = (n if c.get("preserve_sparsity", True) else n + 1).bit_length() - 1
    wrapped = cluster.cluster_model(wrapped, bits, layers=c["layers"], preserve_sparsity=c.get("preserve_sparsity", True))
  try:
    wrapped.load_weights(weights_path)
  except (ValueError, OSError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise SqznetError(f"checkpoint {weights_path!r} does not fit {model.name} with the wrappers of "
                      f"{record_path}: {first[:200]}") from None
  if c:
    cluster.restore_cluster_state(wrapped)
    wrapped = cluster.strip_clusters(wrapped)
  if rec.get("prune"):
    wrapped = prune.strip(wrapped)
  model.set_weights(wrapped.get_weights())
  return model


def _load_keras_weights(path: str, model: Optional[str], overrides: Optional[dict], classes, input_size):
  info = _info_for_weights(path)
  architecture, merged = _merge(info, model, overrides)
  net = _build(architecture, merged, classes, input_size, info)
  weights_lib.check_hdf5(path)
  try:
    net.load_weights(path)
  except (ValueError, OSError) as e:
    record = wrappers.find_record(path)
    if record is None:
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise SqznetError(f"weights file {path!r} does not fit {architecture}: {first[:200]}") from None
    _load_stripped(net, path, record)  # a checkpoint of a pruning/clustering phase
  if info is not None:
    info = WeightsInfo.from_dict(dict(info.to_dict(), architecture=architecture, overrides=merged))
  return _attach(net, info, architecture, merged)


def _shapes(net) -> dict:
  return {(layer.name, i): tuple(int(d) for d in w.shape) for layer in net.layers for i, w in enumerate(layer.weights)}


def _load_container(path: str, model: Optional[str], overrides: Optional[dict], input_size):
  """A `.sqz` file: the network its config names is built first, and every tensor's shape is checked
  against it before the tensor is decoded."""
  built = {}

  def expected(config: dict) -> dict:
    arch = config.get("architecture")
    build = dict(config.get("build") or {}) if isinstance(config.get("build"), dict) else None
    if not isinstance(arch, str) or build is None:
      raise SqznetError("its config names no architecture and builder arguments")
    stored = {k: v for k, v in build.items() if k not in ("classes", "input_shape")}
    try:
      configs.get_config(arch, **stored)
    except (SqznetError, TypeError) as e:
      raise SqznetError(f"its config does not build a model: {e}") from None
    if model and model != arch:
      raise SqznetError(f"it holds {arch}, not {model}")
    changed = {k: v for k, v in (overrides or {}).items() if stored.get(k) != v}
    if changed:
      raise SqznetError(f"it holds {arch} with {stored or 'no overrides'}; it cannot be loaded with {changed}")
    if input_size:
      build["input_shape"] = (input_size, input_size, 3)
    elif build.get("input_shape"):
      build["input_shape"] = tuple(build["input_shape"])
    try:
      built.update(net=get_model(arch, **build), arch=arch, stored=stored)
    except (TypeError, ValueError) as e:
      raise SqznetError(f"its config does not build a model: {str(e).splitlines()[0][:200]}") from None
    return _shapes(built["net"])

  data = sqz.read(path, expected)
  net, arch, stored = built["net"], built["arch"], built["stored"]
  weights_lib.load_container(net, data, str(path))
  info = weights_lib.container_info(data)
  if info is not None:
    info = WeightsInfo.from_dict(dict(info.to_dict(), architecture=arch, overrides=stored))
  return _attach(net, info, arch, stored)


def _load_full_model(path: str):
  """A whole Keras model (.keras, legacy .h5 model, Keras SavedModel): no architecture from us."""
  try:
    if str(path).endswith(".keras"):
      net = keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False, safe_mode=True)
    else:
      net = keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
  except (OSError, ValueError, ImportError, TypeError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise SqznetError(f"cannot load the Keras model {path!r}: {first[:200]}") from None
  info = read_info(path)
  architecture = overrides = None
  if info is not None and info.architecture in configs.MODEL_CONFIGS:
    # The metadata names a registry network: keep it as the model's source (what a .sqz or an
    # export records) when that network has exactly these weights.
    try:
      same = _build(info.architecture, dict(info.overrides or {}), int(net.output_shape[-1]),
                    int(net.input_shape[1] or 0) or None, info)
      if [tuple(w.shape) for w in same.weights] == [tuple(w.shape) for w in net.weights]:
        architecture, overrides = info.architecture, info.overrides
    except SqznetError:
      pass
  return _attach(net, info, architecture, overrides)


def _load_export(folder: str, classes, input_size):
  """A sqznet-export version folder: the recorded architecture rebuilt, its variables copied in."""
  meta = read_json(os.path.join(folder, EXPORT_META), "export metadata")
  source = meta.get("source") or {}
  info = WeightsInfo.from_dict(meta["weights_info"]) if meta.get("weights_info") else None
  architecture = source.get("architecture") or source.get("model")
  overrides = dict(source.get("overrides") or {})
  if not architecture:
    raise SqznetError(f"{folder}: its {EXPORT_META} does not name the architecture")
  net = _build(architecture, overrides, classes or meta.get("classes"), input_size or meta.get("input_size"), info)
  try:
    restored = tf.saved_model.load(folder)
  except Exception as e:  # pylint: disable=broad-except  (TensorFlow raises many types here)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise SqznetError(f"cannot load the SavedModel {folder!r}: {first[:200]}") from None
  for w, value in zip(net.weights, _export_weights(restored, net, folder, architecture)):
    if tuple(value.shape) != tuple(w.shape):
      raise SqznetError(f"{folder}: {w.name} is {tuple(value.shape)}, {architecture} needs {tuple(w.shape)}")
    w.assign(value)
  return _attach(net, info, architecture, overrides)


def _export_weights(restored, net, folder: str, architecture: str) -> list:
  """The values of `net.weights`, in order, from a loaded export (sqznet_tf.export.serving.ServingModule):
  its `model_variables` (by name; in exports written before those, its model's); or, in an export that
  holds its weights once, the served copy's by layer (`served_weights`), each split convolution's kernel
  parts joined back on the input channels."""
  if hasattr(restored, "model") or hasattr(restored, "model_variables"):
    held = restored.model.variables if hasattr(restored, "model") else restored.model_variables
    values = {v.name: v for v in held}
    missing = [w.name for w in net.weights if w.name not in values]
    if missing:
      raise SqznetError(f"{folder} does not hold the weights of {architecture}: {missing[0]} is missing")
    return [values[w.name] for w in net.weights]
  by_layer = getattr(restored, "served_weights", {})
  values = {}
  for layer in net.layers:
    if not layer.weights:
      continue
    if layer.name not in by_layer:
      raise SqznetError(f"{folder} does not hold the weights of {architecture}: layer {layer.name} is missing")
    held = list(by_layer[layer.name])
    parts = len(held) - len(layer.weights) + 1  # a split convolution: its kernel in parts, then the rest
    if parts > 1:
      held = [tf.concat(held[:parts], axis=2), *held[parts:]]
    if len(held) != len(layer.weights):
      raise SqznetError(f"{folder}: layer {layer.name} holds {len(held)} weights, {architecture} needs "
                        f"{len(layer.weights)}")
    values.update((id(w), v) for w, v in zip(layer.weights, held))
  return [values[id(w)] for w in net.weights]


def _refuse_code_layers(folder: str) -> None:
  """A Keras SavedModel whose layers include Lambda (Python code in its config) is not loaded."""
  meta = os.path.join(folder, "keras_metadata.pb")
  if os.path.exists(meta):
    with open(meta, "rb") as f:
      text = f.read()
    if b'"class_name": "Lambda"' in text or b'"class_name":"Lambda"' in text:
      raise SqznetError(f"{folder!r} holds a Lambda layer, which runs Python code when it is loaded; it is not "
                        "loaded (rebuild the model without Lambda layers, or save its weights)")


def _is_full_h5(path: str) -> bool:
  """Whether an HDF5 file holds a whole Keras model (its config), not only weights."""
  try:
    import h5py  # pylint: disable=g-import-not-at-top  (a dependency of Keras; only for .h5 files)
    with h5py.File(path, "r") as f:
      return "model_config" in f.attrs
  except OSError:
    return False


def load_model(ref, *, model: Optional[str] = None, overrides: Optional[dict] = None,
               classes: Optional[int] = None, input_size: Optional[int] = None):
  """(Keras model, WeightsInfo or None) for any form this package reads; see the module docstring.

  Args:
    ref: what to load (see the module docstring); None builds `model` with fresh weights.
    model: registry name of the architecture; needed only for weights that do not name theirs
      (for the release: squeezenet_v1_0_caffe unless given). Must agree with a `.sqz` file.
    overrides: metaparameter overrides (batch_norm, squeeze_ratio, ...), on top of the stored ones.
    classes: output classes; default: the weights' metadata, else the variant's.
    input_size: square input side; default: the metadata's crop size, else the variant's.

  Raises:
    SqznetError: a path that does not exist or that holds none of the accepted forms, weights
      that do not fit, or metadata that contradicts the arguments; one line naming the value.
  """
  if ref is None or ref == "":
    if not model:
      raise SqznetError(f"nothing to load: give a model reference ({FORMS})")
    return _attach(_build(model, dict(overrides or {}), classes, input_size, None), None, model, overrides)
  ref = os.fspath(weights_lib.resolve(os.fspath(ref)))  # a shipped name ("cifar10") is its .sqz file
  if ref in configs.MODEL_CONFIGS and not os.path.exists(ref):
    if model and model != ref:
      raise SqznetError(f"model {ref!r} and architecture {model!r} disagree")
    return _attach(_build(ref, dict(overrides or {}), classes, input_size, None), None, ref, overrides)
  if ref == "imagenet" or ref.endswith(".net"):
    if ref != "imagenet" and not os.path.isfile(ref):
      raise SqznetError(f"weights file {ref!r} does not exist")
    net_data, info = weights_lib.read_release(ref)
    architecture = model or DEFAULT_ARCHITECTURE
    net = _build(architecture, dict(overrides or {}), classes or info.classes,
                 input_size or info.preprocessing.crop_size, None)
    weights_lib.load_compressed(net, net_data, info)
    info = WeightsInfo.from_dict(dict(info.to_dict(), architecture=architecture, overrides=dict(overrides or {})))
    return _attach(net, info, architecture, overrides)
  if not os.path.exists(ref):
    raise SqznetError(f"weights {ref!r} do not exist; expected {FORMS}")
  if os.path.isdir(ref):
    if os.path.exists(os.path.join(ref, EXPORT_META)):
      return _load_export(ref, classes, input_size)
    if os.path.exists(os.path.join(ref, "saved_model.pb")):
      _refuse_code_layers(ref)
      return _load_full_model(ref)
    if os.path.exists(os.path.join(ref, FINAL_WEIGHTS)):
      return _load_keras_weights(os.path.join(ref, FINAL_WEIGHTS), model, overrides, classes, input_size)
    phase = _dsd_phase(ref)
    if phase:
      return _load_keras_weights(os.path.join(phase, FINAL_WEIGHTS), model, overrides, classes, input_size)
    record = os.path.join(ref, COMPRESS_RECORD)
    if os.path.exists(record):
      output = read_json(record, "compression record").get("output")
      if not output:
        raise SqznetError(f"{ref}: the compression run wrote no file (it ran without --output)")
      return load_model(os.path.join(ref, output), model=model, overrides=overrides, classes=classes,
                        input_size=input_size)
    if os.path.exists(os.path.join(ref, "config.json")):
      raise SqznetError(f"run folder {ref!r} has no {FINAL_WEIGHTS} (the run has not finished); rerun it to "
                        f"resume, or load one of its checkpoints/epoch-NNN.weights.h5")
    raise SqznetError(f"folder {ref!r} is not a run folder or a SavedModel; expected {FORMS}")
  if weights_lib.is_container(ref):
    return _load_container(ref, model, overrides, input_size)
  if ref.endswith(".keras"):
    return _load_full_model(ref)
  if ref.endswith(".h5") and _is_full_h5(ref):
    raise SqznetError(f"{ref!r} is a whole Keras model in the legacy HDF5 format, which can run code when it is "
                      "loaded (Lambda layers); it is not loaded. Re-save it as .keras (model.save('m.keras')) or "
                      "save its weights (model.save_weights('m.weights.h5'), with --model)")
  return _load_keras_weights(ref, model, overrides, classes, input_size)


def describe_source(model, ref) -> dict:
  """What an output made from `model` records about where it came from (no absolute paths)."""
  src = source_of(model) or {}
  ref = None if ref is None else os.fspath(ref)
  return {"architecture": src.get("architecture"), "overrides": src.get("overrides", {}),
          "classes": int(model.output_shape[-1]), "input_size": int(model.input_shape[1]),
          "weights": ref if ref in (None, "imagenet") or ref in configs.MODEL_CONFIGS or weights_lib.shipped_name(ref)
          else os.path.basename(ref.rstrip("/" + os.sep))}


__all__ = ["COMPRESS_RECORD", "EXPORT_META", "FORMS", "describe_source", "load_model", "source_of"]
