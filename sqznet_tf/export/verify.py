"""Checks every export of a version against the Keras model it came from, on real images.

For each format: the largest absolute difference of the probabilities from the Keras model's,
the share of images whose top-1 class is the Keras model's, and top-1/top-5 accuracy on the
labels. The SavedModel runs through `check.ServingSession` (TF Serving's path): `serving_bytes`
on the encoded files, `serving_default` on the same photos resized and cropped outside the graph
(float RGB 0-255), `serving_uint8` on those pixels rounded. The Keras model sees the photos
preprocessed by `preprocessing.Preprocessor` (tf back-end), the same decode, resize and crop as
`serving_bytes` does in its graph. The TFLite and ONNX files get the Keras model's inputs.
Every photo is decoded once; the warm-up requests replay in the same session.
"""

import dataclasses
import glob
import os
from typing import List, Optional

import numpy as np

from sqznet_tf import loading
from sqznet_tf import weights as weights_lib
from sqznet_tf._keras import tf
from sqznet_tf.compression import tflite
from sqznet_tf.data.preprocessing import (ImageDecodeError, Preprocessing, decode_image_tf, normalise,
                                          resize_and_crop_tf)
from sqznet_tf.errors import SqznetError
from sqznet_tf.export import check, portable, serving
from sqznet_tf.inference import Predictor
from sqznet_tf.models import configs

EXACT = ("saved_model:serving_bytes", "saved_model:serving_default", "tflite:model_float32", "onnx:model")


def portable_dir(version_dir: str) -> str:
  """Where the TFLite/ONNX files of a version go: <export_dir>/portable/<version>/ (TF Serving skips it)."""
  version_dir = os.path.abspath(version_dir)
  return os.path.join(os.path.dirname(version_dir), "portable", os.path.basename(version_dir))


@dataclasses.dataclass
class Row:
  """One export compared with the Keras model."""
  format: str
  max_abs_diff: float
  top1_agreement: float
  top1: Optional[float]
  top5: Optional[float]
  n: int
  file_bytes: Optional[int] = None

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _row(name, probs, ref, labels, file_bytes=None) -> Row:
  probs = np.asarray(probs, np.float32)
  top = np.argsort(-probs, axis=1)[:, :5]
  top1 = top5 = None
  if labels is not None:
    top1 = float(np.mean(top[:, 0] == labels))
    top5 = float(np.mean((top == labels[:, None]).any(axis=1)))
  return Row(name, float(np.abs(probs - ref).max()), float(np.mean(probs.argmax(1) == ref.argmax(1))),
             top1, top5, len(probs), file_bytes)


def read_images(source, preprocessing, limit: Optional[int] = None):
  """The first `limit` photos of a source, decoded once.

  Returns (encoded bytes, crops: float32 RGB 0-255 resized and centre-cropped as `preprocessing`
  says, labels, skipped (id, reason) of the photos that could not be read or decoded).
  """
  crop_fn = tf.function(lambda img: resize_and_crop_tf(img, preprocessing),
                        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  data, crops, labels, skipped = [], [], [], []
  for ident, label, raw in source:
    if limit is not None and len(data) + len(skipped) >= limit:
      break
    if isinstance(raw, Exception):
      skipped.append((ident, f"cannot read: {raw}"))
      continue
    try:
      crops.append(crop_fn(decode_image_tf(raw)).numpy())
    except ImageDecodeError as e:
      skipped.append((ident, str(e)))
      continue
    data.append(raw)
    labels.append(label)
  if not data:
    raise SqznetError(f"no image of {source.location!r} could be read ({len(skipped)} unreadable)")
  return data, np.stack(crops).astype(np.float32), np.asarray(labels), skipped


def verify(version_dir: str, model, images: List[bytes], crops, labels=None, batch_size: int = 16,
           progress=None) -> dict:
  """Compares the SavedModel at `version_dir` and its portable files with the Keras `model`.

  `images` and `crops` come from `read_images` with the export's preprocessing
  (`export_preprocessing`). Returns {"n", "rows": [Row dicts], "serving_default_vs_bytes",
  "warmup"} (see the module docstring).
  """
  p = export_preprocessing(version_dir)
  if int(model.input_shape[1]) != p.crop_size:
    raise SqznetError(f"the Keras model takes {model.input_shape[1]} px, the export {p.crop_size} px")
  say = progress or (lambda msg: None)
  x = normalise(crops, p).astype(np.float32)
  say(f"Keras model on {len(images)} images")
  ref = Predictor(model, fold=False).predict(x, batch_size)  # the model as it is, not an inference copy
  rows = [_row("keras", ref, ref, labels)]

  say("SavedModel through its serving signatures")
  session = check.ServingSession(version_dir)
  errors = []  # a signature that is missing or does not take or give what this package exports
  try:
    def run(sig, key, values):
      try:
        return np.concatenate([session.predict(sig, {key: values[i:i + batch_size]})["probabilities"]
                               for i in range(0, len(values), batch_size)])
      except (check.ServingError, KeyError) as e:
        errors.append(f"saved_model:{sig} fails its request: {str(e)[:200]}")
        return None
    by_bytes = run("serving_bytes", "image_bytes", np.array(images, dtype=object))
    by_pixels = run("serving_default", "images", crops)
    by_uint8 = run("serving_uint8", "images", np.clip(np.round(crops), 0, 255).astype(np.uint8))
    warmup = check.replay_warmup(session, version_dir)
  finally:
    session.close()
  for name, probs in (("serving_bytes", by_bytes), ("serving_default", by_pixels), ("serving_uint8", by_uint8)):
    if probs is not None:
      rows.append(_row(f"saved_model:{name}", probs, ref, labels))
  agree = ({"max_abs_diff": float(np.abs(by_bytes - by_pixels).max()),
            "top1_agreement": float(np.mean(by_bytes.argmax(1) == by_pixels.argmax(1)))}
           if by_bytes is not None and by_pixels is not None else {"max_abs_diff": None, "top1_agreement": None})

  folder = portable_dir(version_dir)
  for path in sorted(glob.glob(os.path.join(folder, "*.tflite"))):
    name = os.path.basename(path)
    say(f"TFLite {name}")
    with open(path, "rb") as f:
      data = f.read()
    rows.append(_row(f"tflite:{name[:-len('.tflite')]}", tflite.predict(data, x, 32), ref, labels, len(data)))
  for path in sorted(glob.glob(os.path.join(folder, "*.onnx"))):
    say(f"ONNX {os.path.basename(path)}")
    with open(path, "rb") as f:
      data = f.read()
    rows.append(_row(f"onnx:{os.path.basename(path)[:-len('.onnx')]}", portable.onnx_predict(data, x), ref,
                     labels, len(data)))
  return {"n": len(images), "rows": [r.to_dict() for r in rows], "serving_default_vs_bytes": agree,
          "warmup": warmup, "errors": errors}


def export_preprocessing(version_dir: str):
  """The preprocessing a version was exported with (its sqznet_export.json)."""
  return Preprocessing.from_dict(serving.read_meta(version_dir)["preprocessing"])


def version_dir(export_dir: str, version: Optional[int] = None) -> str:
  """The version folder to check: `export_dir` itself when it is one, else its `version` (default the latest)."""
  if os.path.exists(os.path.join(export_dir, "saved_model.pb")):
    if version is not None:
      raise SqznetError(f"--export_dir={export_dir} is a version folder already; leave --version out")
    return export_dir
  have = serving.versions(export_dir)
  if not have:
    raise SqznetError(f"--export_dir={export_dir} holds no SavedModel version (integer folders with saved_model.pb)")
  v = version or have[-1]
  if v not in have:
    raise SqznetError(f"version {v} is not in {export_dir}; it has {', '.join(map(str, have))}")
  return os.path.join(export_dir, str(v))


def reference_model(folder: str, weights=None, model: Optional[str] = None, overrides: Optional[dict] = None):
  """The Keras model an export came from: the source it records, or `weights`/`model` given instead."""
  meta = serving.read_meta(folder)
  src = meta["source"]
  ref = weights
  if ref is None:
    ref = src.get("ref") or src.get("weights")
    if ref and ref != "imagenet" and ref not in configs.MODEL_CONFIGS and not weights_lib.shipped_name(ref) \
        and not os.path.isabs(ref):
      ref = os.path.normpath(os.path.join(folder, ref))  # recorded relative to the version folder
  if model is None:
    model, overrides = src.get("architecture") or src.get("model"), dict(src.get("overrides") or {}, **(overrides or {}))
  if ref and ref not in ("imagenet",) and not os.path.exists(ref) and ref not in configs.MODEL_CONFIGS \
      and not weights_lib.shipped_name(ref):
    raise SqznetError(f"the export records its weights as {ref!r}, which is not here; pass --weights=PATH")
  return loading.load_model(ref, model=model, overrides=overrides, classes=src.get("classes"),
                            input_size=src.get("input_size"))[0], ref


def checks(result: dict, tolerance: float, max_top1_drop: float) -> List[str]:
  """Marks each row with its check and whether it passes; returns the failures (one line each)."""
  keras_top1 = result["rows"][0]["top1"]
  failures = []
  for r in result["rows"][1:]:
    if r["format"] in EXACT:
      r["check"] = f"diff <= {tolerance:g}"
      r["pass"] = r["max_abs_diff"] <= tolerance
    elif keras_top1 is not None:
      r["check"] = f"top-1 drop <= {max_top1_drop:g}"
      r["pass"] = keras_top1 - r["top1"] <= max_top1_drop
    else:
      r["check"], r["pass"] = "", True
    if not r["pass"]:
      failures.append(f"{r['format']} fails {r['check']} (diff {r['max_abs_diff']:.2e}, top-1 {r['top1']})")
  failures.extend(result.get("errors", []))
  warmup = result["warmup"]
  if warmup["failed"]:
    failures.append(f"{warmup['failed']} of {warmup['requests']} warm-up requests fail: {warmup['first_error']}")
  return failures


def run(export_dir: str, source, version: Optional[int] = None, limit: Optional[int] = None, batch_size: int = 16,
        weights=None, model: Optional[str] = None, overrides: Optional[dict] = None, tolerance: float = 1e-4,
        max_top1_drop: float = 0.02, progress=None) -> dict:
  """What sqznet-verify-export runs: every export of a version against its Keras model; "failures" lists
  the checks that failed."""
  folder = version_dir(export_dir, version)
  reference, ref = reference_model(folder, weights, model, overrides)
  if progress:
    progress(f"reference: {loading.describe_source(reference, ref)['architecture']} with {ref}")
  images, crops, labels, skipped = read_images(source, export_preprocessing(folder), limit)
  result = verify(folder, reference, images, crops, labels, batch_size, progress=progress)
  failures = checks(result, tolerance, max_top1_drop)
  return dict(result, version_dir=folder, skipped=len(skipped), failures=failures)
