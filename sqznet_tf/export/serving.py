"""SavedModels for TF Serving: preprocessing and labels inside the graph, versioned folders, warm-up.

`export_saved_model` writes `<export_dir>/<version>/` in TF Serving's layout:

  saved_model.pb, variables/      the graph and weights
  assets/labels.txt               class names, one per line (line i = class i), read by the graph
  assets.extra/tf_serving_warmup_requests
                                  PredictionLog records TF Serving replays when it loads the model
  assets.extra/sqznet_export.json what was exported, from what, with which preprocessing

Signatures (every one returns `probabilities` [N, classes], `classes` [N, k] int64, `scores`
[N, k] and `labels` [N, k] strings, best first):

  serving_default  `images`: float32 [N, size, size, 3], plain RGB 0-255 at the model's input
                   size; the model's channel order and normalisation are applied in the graph.
  serving_uint8    the same for uint8 images.
  serving_bytes    `image_bytes`: string [N], encoded JPEG/PNG/GIF/BMP; decoded, resized and
                   centre-cropped in the graph exactly as `preprocessing.preprocess_tf` does.

Inputs are declared with unknown shapes and checked inside the graph, so a wrong rank, a wrong
image size or an empty batch fails with INVALID_ARGUMENT and a message that says what is
expected, wherever the graph runs (a C++ server does not check shapes against the signature).
"""

import os
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np

from sqznet_tf._keras import tf
from sqznet_tf.data.preprocessing import (Preprocessing, decode_image_tf, normalise, preprocess_tf,
                                          resize_and_crop_tf)
from sqznet_tf.errors import SqznetError
from sqznet_tf.inference import fold_batch_norm, split_concat
from sqznet_tf.io import atomic_folder, read_json, write_atomic, write_json_atomic
from sqznet_tf.loading import EXPORT_META

SIGNATURES = ("serving_default", "serving_uint8", "serving_bytes")
INPUT_KEYS = {"serving_default": "images", "serving_uint8": "images", "serving_bytes": "image_bytes"}
OUTPUT_KEYS = ("probabilities", "classes", "scores", "labels")
LABELS_ASSET = "labels.txt"
WARMUP_FILE = "tf_serving_warmup_requests"
META_FILE = os.path.basename(EXPORT_META)  # in assets.extra/


def _check(ok, message: str, shape):
  return tf.debugging.Assert(ok, [message, shape], summarize=8)


def _check_encoded(b, i):
  """Asserts that item `i` of a serving_bytes request starts like an image and is not cut short
  (a JPEG's end-of-image marker in its last KB, a PNG's IEND chunk), naming the item."""
  def starts(sig):
    return tf.equal(tf.strings.substr(b, 0, len(sig)), sig)
  n = tf.strings.length(b)
  is_jpeg, is_png = starts(b"\xff\xd8\xff"), starts(b"\x89PNG\r\n\x1a\n")
  known = tf.reduce_any(tf.stack([is_jpeg, is_png, starts(b"GIF87a"), starts(b"GIF89a"), starts(b"BM")]))
  tail = tf.strings.bytes_split(tf.strings.substr(b, tf.maximum(n - 1024, 0), 1024))
  jpeg_end = tf.reduce_any(tf.logical_and(tf.equal(tail[:-1], b"\xff"), tf.equal(tail[1:], b"\xd9")))
  png_end = tf.equal(tf.strings.substr(b, tf.maximum(n - 8, 0), 4), b"IEND")
  whole = tf.logical_and(tf.logical_or(tf.logical_not(is_jpeg), jpeg_end),
                         tf.logical_or(tf.logical_not(is_png), png_end))
  known_check = tf.debugging.Assert(known, [tf.strings.format(
      "image_bytes[{}] is not a JPEG, PNG, GIF or BMP image (Unknown image file format)", i)])
  with tf.control_dependencies([known_check]):
    return tf.debugging.Assert(whole, [tf.strings.format(
        "image_bytes[{}] is a truncated image (no end-of-image marker)", i)])


class ServingModule(tf.Module):
  """The model with its preprocessing, top-k and label lookup, as tf.functions to export."""

  def __init__(self, model, preprocessing: Preprocessing, labels_path: str, top_k: int):
    super().__init__()
    # The variables are saved, not the Keras model: tracking the model would make the SavedModel
    # writer trace every layer's call functions for Keras metadata that serving never reads
    # (measured: most of an export's time). The signatures call the model through a closure.
    # The signatures run a copy with batch norm merged into the convolutions
    # (sqznet_tf.inference.fold_batch_norm): one op fewer per conv, and without the concats that
    # only convolutions read (split_concat: each Fire's output never copied into one map), the same
    # outputs to float rounding, as `inference.Predictor` runs it.
    # Loading the export as a model form reads the model's own weights: `model_variables` when batch
    # norm was folded (the folded kernels do not give the model's back), otherwise the served ones
    # (`served_weights`, by layer name: a split convolution's kernel parts are its kernel's input
    # channels in order, which sqznet_tf.loading joins back), so such an export holds each weight once.
    folded = fold_batch_norm(model)
    served = split_concat(folded)
    if served is not model:
      self.served_weights = {layer.name: list(layer.weights) for layer in served.layers if layer.weights}
    if served is model or folded is not model:
      self.model_variables = list(model.variables)
    self._call_model = lambda x: served(x, training=False)
    self.p = preprocessing
    self.size = int(model.input_shape[1])
    self.top_k = int(top_k)
    self.labels_file = tf.saved_model.Asset(labels_path)
    init = tf.lookup.TextFileInitializer(self.labels_file, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                                         tf.string, tf.lookup.TextFileIndex.WHOLE_LINE)
    self.table = tf.lookup.StaticHashTable(init, default_value="")
    s = self.size
    self.serving_default = tf.function(self._from_pixels, input_signature=[
        tf.TensorSpec(None, tf.float32, name="images")])
    self.serving_uint8 = tf.function(self._from_pixels, input_signature=[
        tf.TensorSpec(None, tf.uint8, name="images")])
    self.serving_bytes = tf.function(self._from_bytes, input_signature=[
        tf.TensorSpec(None, tf.string, name="image_bytes")])
    self._expect = f"images must be a batch [N, {s}, {s}, 3] of RGB images (0-255); got shape"

  def _outputs(self, x) -> Dict[str, tf.Tensor]:
    probs = self._call_model(x)
    scores, classes = tf.math.top_k(probs, k=self.top_k)
    classes = tf.cast(classes, tf.int64)
    return {"probabilities": probs, "classes": classes, "scores": scores, "labels": self.table.lookup(classes)}

  def _from_pixels(self, images):
    s = self.size
    shape = tf.shape(images)
    rank_ok = tf.equal(tf.size(shape), 4)
    ok = tf.cond(rank_ok, lambda: tf.reduce_all(tf.equal(shape[1:], [s, s, 3])),
                 lambda: tf.constant(False))
    with tf.control_dependencies([_check(ok, self._expect, shape)]):
      nonempty = _check(shape[0] > 0, "empty batch: send at least one image; got shape", shape)
    with tf.control_dependencies([nonempty]):
      x = tf.ensure_shape(tf.cast(images, tf.float32), [None, s, s, 3])
    return self._outputs(normalise(x, self.p))

  def _from_bytes(self, image_bytes):
    shape = tf.shape(image_bytes)
    ok = _check(tf.equal(tf.size(shape), 1),
                "image_bytes must be a list [N] of encoded JPEG/PNG/GIF/BMP images; got shape", shape)
    with tf.control_dependencies([ok]):
      nonempty = _check(shape[0] > 0, "empty batch: send at least one image; got shape", shape)
    with tf.control_dependencies([nonempty]):
      data = tf.reshape(image_bytes, [-1])
    p = self.p

    def one(item):
      b, i = item
      with tf.control_dependencies([_check_encoded(b, i)]):
        image = tf.io.decode_image(b, channels=3, expand_animations=False)
      return preprocess_tf(image, p)

    x = tf.map_fn(one, (data, tf.range(tf.size(data))),
                  fn_output_signature=tf.TensorSpec([p.crop_size, p.crop_size, 3], tf.float32))
    return self._outputs(x)

  def signatures(self) -> dict:
    return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}


def write_labels(path: str, names: Sequence[str]) -> None:
  """One class name per line (line i = class i); names may not contain line breaks."""
  for i, n in enumerate(names):
    if "\n" in n or "\r" in n:
      raise SqznetError(f"class name {i} ({n[:40]!r}) contains a line break; label files hold one name per line")
  write_atomic(path, "".join(f"{n}\n" for n in names))


def versions(export_dir: str) -> List[int]:
  """The integer version folders under `export_dir` (what TF Serving would load), sorted."""
  if not os.path.isdir(export_dir):
    return []
  return sorted(int(d) for d in os.listdir(export_dir)
                if d.isdigit() and os.path.isdir(os.path.join(export_dir, d)))


def choose_version(export_dir: str, version: Optional[int] = None, overwrite: bool = False) -> int:
  """`version`, or the next free one; refuses an existing version unless `overwrite`."""
  have = versions(export_dir)
  if version is None:
    return (have[-1] + 1) if have else 1
  if isinstance(version, bool) or not isinstance(version, int) or version < 1:
    raise SqznetError(f"version={version!r} is not accepted; expected a positive integer (TF Serving's "
                      "version folders)")
  if version in have and not overwrite:
    raise SqznetError(f"version {version} of {export_dir} exists; pass --overwrite to replace it, or leave "
                      f"--version out to write version {have[-1] + 1}")
  return version


def synthetic_jpeg(height: int = 240, width: int = 320) -> bytes:
  """A deterministic colour-gradient JPEG: warm-up input when no photo is given."""
  import io  # pylint: disable=g-import-not-at-top  (standard library, for the generated JPEG only)
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only for the Pillow back-end and generated images)
  y, x = np.mgrid[0:height, 0:width]
  rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1)
  buf = io.BytesIO()
  Image.fromarray(rgb.astype(np.uint8)).save(buf, "JPEG", quality=90)
  return buf.getvalue()


def _serving_apis():
  try:
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2  # pylint: disable=g-import-not-at-top  (optional extra [export])
  except ImportError:
    raise SqznetError("warm-up requests need tensorflow-serving-api: pip install 'sqznet_tf[export]' "
                      "(or export with --nowarmup)") from None
  return model_pb2, predict_pb2, prediction_log_pb2


def warmup_requests(model_name: str, preprocessing: Preprocessing, images: Sequence[bytes]) -> list:
  """PredictionLog protos: for every signature, one request per image (batch of 1)."""
  model_pb2, predict_pb2, prediction_log_pb2 = _serving_apis()
  logs = []
  for data in images:
    crop = resize_and_crop_tf(decode_image_tf(data), preprocessing).numpy()[None]
    values = {"serving_default": crop.astype(np.float32),
              "serving_uint8": np.clip(np.round(crop), 0, 255).astype(np.uint8),
              "serving_bytes": np.array([data], dtype=object)}
    for sig in SIGNATURES:
      request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=sig))
      request.inputs[INPUT_KEYS[sig]].CopyFrom(tf.make_tensor_proto(values[sig]))
      logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
  return logs


def write_warmup(path: str, logs: Sequence) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as w:
    for log in logs:
      w.write(log.SerializeToString())


def read_warmup(path: str) -> list:
  """The PredictionLog records of a warm-up file; SqznetError naming the first one that does not parse."""
  from google.protobuf.message import DecodeError  # pylint: disable=g-import-not-at-top  (only when a warm-up file is read)
  _, _, prediction_log_pb2 = _serving_apis()
  out = []
  try:
    for i, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
      log = prediction_log_pb2.PredictionLog()
      try:
        log.ParseFromString(record)
      except DecodeError as e:
        raise SqznetError(f"{path}, record {i}: not a PredictionLog ({e})") from None
      out.append(log)
  except tf.errors.OpError as e:
    raise SqznetError(f"{path}: not a TFRecord file ({str(e).strip().splitlines()[0][:160]})") from None
  return out


def export_saved_model(model, preprocessing: Preprocessing, class_names: Sequence[str], export_dir: str,
                       version: Optional[int] = None, overwrite: bool = False, top_k: int = 5,
                       warmup_images: Optional[Sequence[bytes]] = None, warmup: bool = True,
                       meta: Optional[dict] = None) -> dict:
  """Writes `export_dir`/<version>/ for TF Serving (see the module docstring); returns what it wrote.

  The SavedModel is written to a temporary folder beside the versions and renamed into place, so
  a server watching `export_dir` never sees half a version; an existing version is replaced only
  with `overwrite`, and only once the new one is complete.
  """
  classes = int(model.output_shape[-1])
  if len(class_names) != classes:
    raise SqznetError(f"{len(class_names)} class names for a model with {classes} classes")
  if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= classes:
    raise SqznetError(f"top_k={top_k!r} is not accepted; expected an integer from 1 to {classes}")
  size = int(model.input_shape[1])
  if preprocessing.crop_size != size:
    raise SqznetError(f"preprocessing crops {preprocessing.crop_size} px but the model takes {size} px")
  version = choose_version(export_dir, version, overwrite)
  model_name = os.path.basename(os.path.abspath(export_dir))
  final = os.path.join(export_dir, str(version))
  with tempfile.TemporaryDirectory() as staging, atomic_folder(final) as target:
    labels_src = os.path.join(staging, LABELS_ASSET)
    write_labels(labels_src, class_names)
    module = ServingModule(model, preprocessing, labels_src, top_k)
    tf.saved_model.save(module, target, signatures=module.signatures())
    extra = os.path.join(target, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    n_warmup = 0
    if warmup:
      logs = warmup_requests(model_name, preprocessing, list(warmup_images or [synthetic_jpeg()]))
      write_warmup(os.path.join(extra, WARMUP_FILE), logs)
      n_warmup = len(logs)
    record = dict(meta or {}, model_name=model_name, version=version, classes=classes, input_size=size,
                  top_k=top_k, preprocessing=preprocessing.to_dict(), warmup_requests=n_warmup,
                  signatures={s: {"input": INPUT_KEYS[s], "outputs": list(OUTPUT_KEYS)} for s in SIGNATURES})
    write_json_atomic(os.path.join(extra, META_FILE), record)
  return dict(record, path=final)


def read_meta(version_dir: str) -> dict:
  path = os.path.join(version_dir, "assets.extra", META_FILE)
  if not os.path.exists(path):
    raise SqznetError(f"{version_dir} is not a SavedModel exported by sqznet-export (no assets.extra/{META_FILE})")
  return read_json(path, "export metadata")
