"""Top-k accuracy of a classifier on a labelled image source, and top-k predictions for photos.

Images are decoded and preprocessed one at a time (TensorFlow or Pillow), batched, and run
through the model. An image that cannot be decoded is skipped, counted and named in the result,
never silently dropped.
"""

import dataclasses
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from sqznet_tf.data.preprocessing import ImageDecodeError, Preprocessor
from sqznet_tf.data.sources import ImageSource
from sqznet_tf.errors import SqznetError
from sqznet_tf.weights.labels import Labels


@dataclasses.dataclass
class EvalResult:
  """Accuracy over the images that could be read.

  Attributes:
    top1, top5: fractions of `n` images whose label is the first / among the first 5 outputs.
    n: images evaluated.
    skipped: (id, reason) of each image that could not be read.
    per_class: class index -> {"n", "top1", "top5"} (counts), when asked for.
    seconds: wall time of the run; images_per_sec = n / seconds.
  """
  top1: float
  top5: float
  n: int
  correct1: int
  correct5: int
  skipped: List[tuple]
  seconds: float
  per_class: Optional[Dict[int, Dict[str, int]]] = None

  def to_dict(self, class_names: Sequence[str] = ()) -> dict:
    d = {"top1": self.top1, "top5": self.top5, "n": self.n, "correct1": self.correct1,
         "correct5": self.correct5, "skipped": len(self.skipped),
         "skipped_files": [{"id": i, "reason": r} for i, r in self.skipped],
         "seconds": round(self.seconds, 2),
         "images_per_sec": round(self.n / self.seconds, 2) if self.seconds else None}
    if self.per_class is not None:
      d["per_class"] = [dict(c, label=k, name=class_names[k] if k < len(class_names) else str(k),
                             top1_acc=c["top1"] / c["n"], top5_acc=c["top5"] / c["n"])
                        for k, c in sorted(self.per_class.items())]
    return d


def evaluate(model, source: ImageSource, preprocessor: Preprocessor, batch_size: int = 32,
             limit: Optional[int] = None, per_class: bool = False, progress: bool = True) -> EvalResult:
  """Top-1 / top-5 accuracy of `model` (probabilities or logits) on `source`."""
  from sqznet_tf import reporting  # pylint: disable=g-import-not-at-top
  from sqznet_tf.inference import predictor  # pylint: disable=g-import-not-at-top
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise SqznetError(f"batch_size={batch_size!r} is not accepted; expected a positive integer")
  num_classes = int(model.output_shape[-1])
  model = predictor(model)
  total = min(len(source), limit) if source.size_known and limit else (len(source) or limit)
  bar = reporting.ProgressBar(total, "evaluating") if progress else None
  start = time.time()
  c1 = c5 = n = 0
  skipped, stats = [], {}
  batch_x, batch_y = [], []

  def flush():
    nonlocal c1, c5, n
    if not batch_x:
      return
    out = np.asarray(model.predict_on_batch(np.stack(batch_x)))
    top = np.argsort(-out, axis=1)[:, :5]
    y = np.asarray(batch_y)
    hit1 = top[:, 0] == y
    hit5 = (top == y[:, None]).any(axis=1)
    c1 += int(hit1.sum())
    c5 += int(hit5.sum())
    n += len(y)
    if per_class:
      for label, h1, h5 in zip(y, hit1, hit5):
        s = stats.setdefault(int(label), {"n": 0, "top1": 0, "top5": 0})
        s["n"] += 1
        s["top1"] += int(h1)
        s["top5"] += int(h5)
    batch_x.clear()
    batch_y.clear()

  seen = 0
  for ident, label, data in source:
    if limit is not None and seen >= limit:
      break
    seen += 1
    if not 0 <= label < num_classes:
      raise SqznetError(f"{ident}: label {label} is outside the model's {num_classes} classes "
                        "(for 1-based ImageNet TFRecords pass --label_offset=1)")
    if isinstance(data, Exception):
      skipped.append((ident, f"cannot read: {data}"))
      continue
    try:
      batch_x.append(preprocessor(data))
    except ImageDecodeError as e:
      skipped.append((ident, str(e)))
      continue
    batch_y.append(label)
    if len(batch_x) == batch_size:
      flush()
      if bar:
        bar.update(seen, f"top-1 {c1 / max(n, 1):.3f}")
  flush()
  if bar:
    bar.update(seen, f"top-1 {c1 / max(n, 1):.3f}")
    bar.close()
  if n == 0:
    raise SqznetError(f"no image of {source.location!r} could be evaluated ({len(skipped)} unreadable)")
  return EvalResult(c1 / n, c5 / n, n, c1, c5, skipped, time.time() - start,
                    stats if per_class else None)


def predict_files(model, paths: Sequence[str], preprocessor: Preprocessor, labels: Optional[Labels] = None,
                  top_k: int = 5) -> List[dict]:
  """Top-k classes with probabilities for each image file.

  Raises:
    SqznetError: naming the first file that cannot be read or decoded.
  """
  num_classes = int(model.output_shape[-1])
  if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_classes:
    raise SqznetError(f"top_k={top_k!r} is not accepted; expected an integer from 1 to {num_classes}")
  if labels is not None and len(labels) != num_classes:
    raise SqznetError(f"label file {labels.source!r} has {len(labels)} classes; the model has {num_classes}")
  xs = []
  for p in paths:
    try:
      with open(p, "rb") as f:
        data = f.read()
    except OSError as e:
      raise SqznetError(f"cannot read image {p!r}: {e.strerror}") from None
    try:
      xs.append(preprocessor(data))
    except ImageDecodeError as e:
      raise SqznetError(f"{p}: {e}") from None
  from sqznet_tf.inference import predictor  # pylint: disable=g-import-not-at-top
  probs = np.asarray(predictor(model).predict_on_batch(np.stack(xs)))
  out = []
  for p, row in zip(paths, probs):
    top = np.argsort(-row)[:top_k]
    out.append({"file": p, "top": [{"class": int(k), "label": labels.short(int(k)) if labels else str(int(k)),
                                    "name": labels.names[int(k)] if labels else str(int(k)),
                                    "probability": float(row[k])} for k in top]})
  return out


def load_classifier(model_name: Optional[str] = None, weights: Optional[str] = None,
                    saved_model: Optional[str] = None, input_size: Optional[int] = None):
  """A model and its weights' metadata, from a registry name + weights or from a saved model.

  Args:
    model_name: registry name (ignored when `saved_model` is given).
    weights: "imagenet", a `.net` file, a `.sqz` container (which names its own architecture), Keras
      weights saved by this package, or None.
    saved_model: a Keras model file (.h5, .keras) or SavedModel folder saved by this package.
    input_size: square input side; default: the metadata's crop size, else the variant's own.

  Returns:
    (model, WeightsInfo or None).
  """
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from sqznet_tf import weights as weights_lib  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
  from sqznet_tf.models import CUSTOM_OBJECTS, get_config, get_model  # pylint: disable=g-import-not-at-top
  if saved_model:
    if not os.path.exists(saved_model):
      raise SqznetError(f"saved model {saved_model!r} does not exist")
    try:
      model = keras.models.load_model(saved_model, custom_objects=CUSTOM_OBJECTS, compile=False)
    except (OSError, ValueError, ImportError) as e:
      raise SqznetError(f"cannot load saved model {saved_model!r}: {str(e).splitlines()[0][:200]}") from None
    info = None
    meta = saved_model.rstrip("/") + weights_lib.INFO_SUFFIX
    if os.path.exists(meta):
      with open(meta, encoding="utf-8") as f:
        info = weights_lib.WeightsInfo.from_dict(json.load(f))
      weights_lib.attach_info(model, info)
    return model, info
  if weights and str(weights).endswith(".sqz") and os.path.exists(weights):
    from sqznet_tf.compression import container  # pylint: disable=g-import-not-at-top
    return container.build_model(weights, input_size=input_size)  # the file names its architecture
  if not model_name:
    raise SqznetError("give a model (registry name) or a saved model")
  config = get_config(model_name)
  if input_size is None:
    input_size = (weights_lib.IMAGENET_INFO.preprocessing.crop_size if weights in ("imagenet",) or
                  str(weights or "").endswith(".net") else config.default_input_size)
  model = get_model(model_name, weights=weights, input_shape=(input_size, input_size, 3))
  return model, weights_lib.weights_info(model)


def _resolve_weights(weights: Optional[str]) -> Optional[str]:
  if weights and os.path.isdir(weights):
    path = os.path.join(weights, "final.weights.h5")
    if not os.path.exists(path):
      raise SqznetError(f"--weights folder {weights!r} has no final.weights.h5 (a finished training run)")
    return path
  if weights and weights != "imagenet" and not os.path.exists(weights):
    raise SqznetError(f"weights {weights!r} do not exist; expected 'imagenet', a .net, .sqz or .h5 file, "
                      "or a training folder")
  return weights


def _info_path(weights: str) -> Optional[str]:
  """Metadata of Keras weights: beside the file, else (an epoch checkpoint) its run's final weights'."""
  from sqznet_tf import weights as weights_lib  # pylint: disable=g-import-not-at-top
  folder = os.path.dirname(os.path.abspath(weights))
  for path in (weights + weights_lib.INFO_SUFFIX,
               *(os.path.join(d, "final.weights.h5" + weights_lib.INFO_SUFFIX) for d in (folder, os.path.dirname(folder)))):
    if os.path.exists(path):
      return path
  return None


def load_trained(model_name: str, weights: Optional[str], overrides: Optional[dict] = None,
                 classes: Optional[int] = None, input_size: Optional[int] = None):
  """(model, WeightsInfo or None) for a registry name and any weights this package reads.

  `weights`: "imagenet", a `.net` file, a `.sqz` container (it names its own architecture),
  Keras weights saved by this package (a checkpoint of a pruning/clustering phase included), or a
  sqznet-train folder (its final.weights.h5). Classes and input size default to the weights'
  metadata (1000 and 227 for the ImageNet release), else to the variant's own.
  """
  from sqznet_tf import weights as weights_lib  # pylint: disable=g-import-not-at-top
  from sqznet_tf.models import get_config, get_model  # pylint: disable=g-import-not-at-top
  weights = _resolve_weights(weights)
  overrides = dict(overrides or {})
  if weights and str(weights).endswith(".sqz"):
    return load_classifier(model_name, weights, input_size=input_size)
  meta = None
  meta_path = _info_path(weights) if weights and weights.endswith(".h5") else None
  if meta_path:
    import json  # pylint: disable=g-import-not-at-top
    with open(meta_path, encoding="utf-8") as f:
      meta = weights_lib.WeightsInfo.from_dict(json.load(f))
  imagenet = weights == "imagenet" or str(weights).endswith(".net")
  classes = classes or (meta.classes if meta else (1000 if imagenet else None))
  size = input_size or (meta.preprocessing.crop_size if meta else None) or (
      weights_lib.IMAGENET_INFO.preprocessing.crop_size if imagenet
      else get_config(model_name, **overrides).default_input_size)
  kwargs = dict(overrides, weights=weights, input_shape=(size, size, 3))
  if classes:
    kwargs["classes"] = classes
  model = get_model(model_name, **kwargs)
  return model, weights_lib.weights_info(model) or meta
