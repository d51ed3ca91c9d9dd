"""Checks every export of a version against the Keras model it came from, on real images.

For each format: the largest absolute difference of the probabilities from the Keras model's,
the share of images whose top-1 class is the Keras model's, and top-1/top-5 accuracy on the
labels. The SavedModel runs through `check.ServingSession` (TF Serving's path): `serving_bytes`
on the encoded files, `serving_default` on the same photos resized and cropped outside the graph
(float RGB 0-255), `serving_uint8` on those pixels rounded. The Keras model sees the photos
preprocessed by `preprocessing.Preprocessor` (tf back-end), the same decode, resize and crop as
`serving_bytes` does in its graph. The TFLite and ONNX files get the Keras model's inputs.
"""

import dataclasses
import glob
import os
from typing import List, Optional

import numpy as np

from sqznet_tf.errors import SqznetError
from sqznet_tf.export import serving


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


def read_images(source, limit: Optional[int] = None):
  """(encoded bytes, labels, skipped (id, reason)) of the first `limit` images of a source."""
  from sqznet_tf.data.preprocessing import ImageDecodeError, decode_image_tf  # pylint: disable=g-import-not-at-top
  data, labels, skipped = [], [], []
  for ident, label, raw in source:
    if limit is not None and len(data) + len(skipped) >= limit:
      break
    if isinstance(raw, Exception):
      skipped.append((ident, f"cannot read: {raw}"))
      continue
    try:
      decode_image_tf(raw)
    except ImageDecodeError as e:
      skipped.append((ident, str(e)))
      continue
    data.append(raw)
    labels.append(label)
  if not data:
    raise SqznetError(f"no image of {source.location!r} could be read ({len(skipped)} unreadable)")
  return data, np.asarray(labels), skipped


def verify(version_dir: str, model, images: List[bytes], labels=None, batch_size: int = 16,
           progress=None) -> dict:
  """Compares the SavedModel at `version_dir` and its portable files with the Keras `model`.

  Returns {"n", "rows": [Row dicts], "signatures_agree": {...}} (see the module docstring).
  """
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data.preprocessing import Preprocessing, decode_image_tf, normalise, resize_and_crop_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.export import check, portable  # pylint: disable=g-import-not-at-top
  meta = serving.read_meta(version_dir)
  p = Preprocessing.from_dict(meta["preprocessing"])
  if int(model.input_shape[1]) != p.crop_size:
    raise SqznetError(f"the Keras model takes {model.input_shape[1]} px, the export {p.crop_size} px")
  say = progress or (lambda msg: None)
  crop_fn = tf.function(lambda img: resize_and_crop_tf(img, p),
                        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  crops = np.stack([crop_fn(decode_image_tf(b)).numpy() for b in images]).astype(np.float32)
  x = normalise(crops, p).astype(np.float32)
  say(f"Keras model on {len(images)} images")
  from sqznet_tf.inference import Predictor  # pylint: disable=g-import-not-at-top
  ref = Predictor(model).predict(x, batch_size)
  rows = [_row("keras", ref, ref, labels)]

  say("SavedModel through its serving signatures")
  session = check.ServingSession(version_dir)
  try:
    def run(sig, key, values):
      return np.concatenate([session.predict(sig, {key: values[i:i + batch_size]})["probabilities"]
                             for i in range(0, len(values), batch_size)])
    by_bytes = run("serving_bytes", "image_bytes", np.array(images, dtype=object))
    by_pixels = run("serving_default", "images", crops)
    by_uint8 = run("serving_uint8", "images", np.clip(np.round(crops), 0, 255).astype(np.uint8))
  finally:
    session.close()
  rows += [_row("saved_model:serving_bytes", by_bytes, ref, labels),
           _row("saved_model:serving_default", by_pixels, ref, labels),
           _row("saved_model:serving_uint8", by_uint8, ref, labels)]
  agree = {"max_abs_diff": float(np.abs(by_bytes - by_pixels).max()),
           "top1_agreement": float(np.mean(by_bytes.argmax(1) == by_pixels.argmax(1)))}

  folder = portable_dir(version_dir)
  for path in sorted(glob.glob(os.path.join(folder, "*.tflite"))):
    name = os.path.basename(path)
    say(f"TFLite {name}")
    with open(path, "rb") as f:
      data = f.read()
    rows.append(_row(f"tflite:{name[:-len('.tflite')]}", portable.tflite_predict(data, x), ref, labels, len(data)))
  for path in sorted(glob.glob(os.path.join(folder, "*.onnx"))):
    say(f"ONNX {os.path.basename(path)}")
    with open(path, "rb") as f:
      data = f.read()
    rows.append(_row(f"onnx:{os.path.basename(path)[:-len('.onnx')]}", portable.onnx_predict(data, x), ref,
                     labels, len(data)))
  return {"n": len(images), "rows": [r.to_dict() for r in rows], "serving_default_vs_bytes": agree}
