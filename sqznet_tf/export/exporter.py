"""What sqznet-export runs: a loaded model -> a TF Serving version, plus TFLite and ONNX files beside it.

Everything is converted in memory first, so a failed conversion leaves no files behind; the
SavedModel version and the portable folder are each written to a temporary folder and renamed.
"""

import dataclasses
import os
from typing import Callable, List, Optional, Sequence

from sqznet_tf import loading
from sqznet_tf.compression import tflite as tflite_lib
from sqznet_tf.data import preprocessing
from sqznet_tf.errors import SqznetError
from sqznet_tf.export import portable, serving, verify
from sqznet_tf.formats.labels import read_labels, stored_labels
from sqznet_tf.io import atomic_folder, prepare_output_folder, read_bytes, write_json_atomic


@dataclasses.dataclass
class ExportConfig:
  """One export.

  Attributes:
    export_dir: the model folder TF Serving watches (default savedmodels/<architecture>).
    version: version folder (default: the next free integer); overwrite replaces an existing one.
    labels: class-name file (default: the weights' metadata); top_k: classes returned per image.
    warmup, warmup_images: write TF Serving warm-up requests (default image: a generated JPEG).
    tflite: TFLite kinds to write (compression.tflite.KINDS); representative_data/_count: int8
      calibration photos; tflite_sparsity: "auto" (on for pruned models), "on" or "off".
    onnx, opset: also write model.onnx.
  """
  export_dir: Optional[str] = None
  version: Optional[int] = None
  overwrite: bool = False
  labels: Optional[str] = None
  top_k: int = 5
  warmup: bool = True
  warmup_images: Sequence[str] = ()
  tflite: Sequence[str] = ()
  representative_data: Optional[str] = None
  representative_count: int = 100
  tflite_sparsity: str = "auto"
  onnx: bool = False
  opset: int = portable.ONNX_OPSET

  def validate(self) -> None:
    bad = [k for k in self.tflite if k not in tflite_lib.KINDS]
    if bad:
      raise SqznetError(f"--tflite={bad[0]} is not accepted; expected a list of {', '.join(tflite_lib.KINDS)}")
    if "int8" in self.tflite and not self.representative_data:
      raise SqznetError("--tflite=int8 calibrates on real photos: give --representative_data=FOLDER")
    for path in self.warmup_images:
      if not os.path.isfile(path):
        raise SqznetError(f"--warmup_images: {path!r} is not a file")


def class_names(info, classes: int, labels: Optional[str], log: Callable[[str], None]):
  """(names, where they came from): the label file, else the weights' metadata, else class numbers."""
  if labels:
    names = read_labels(labels).names
    if len(names) != classes:
      raise SqznetError(f"label file {labels!r} has {len(names)} classes; the model has {classes}")
    return names, os.path.basename(labels)
  stored = info.labels if info else ""
  if stored and os.path.isfile(stored):
    return read_labels(stored).names, os.path.basename(stored)
  names = stored_labels(stored, classes)
  if names is not None:
    return names.names, names.source
  log(f"no class names for the {classes} classes (pass --labels): the labels output will hold class numbers")
  return [str(i) for i in range(classes)], "class numbers"


def _tree_bytes(folder: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def export(model, info, ref, cfg: ExportConfig, log: Callable[[str], None] = lambda s: None) -> dict:
  """Writes the export of `model` (loaded from `ref`) as `cfg` says; returns what was written."""
  cfg.validate()
  src = loading.describe_source(model, ref)
  export_dir = cfg.export_dir or os.path.join("savedmodels", src["architecture"] or model.name)
  prepare_output_folder(export_dir, "--export_dir")
  version = serving.choose_version(export_dir, cfg.version, cfg.overwrite)
  portable_folder = verify.portable_dir(os.path.join(export_dir, str(version)))
  if os.path.exists(portable_folder) and not cfg.overwrite and (cfg.tflite or cfg.onnx):
    raise SqznetError(f"{portable_folder} exists; pass --overwrite to replace it")
  size = int(model.input_shape[1])
  prep = info.preprocessing if info else preprocessing.PRESETS["caffe"]
  if prep.crop_size != size:
    prep = preprocessing.with_crop(prep, size, None)
  classes = int(model.output_shape[-1])
  names, labels_from = class_names(info, classes, cfg.labels, log)
  if cfg.top_k > classes:
    raise SqznetError(f"--top_k={cfg.top_k} is not accepted; the model has {classes} classes")

  files = {}
  sparse = portable.is_sparse(model) if cfg.tflite_sparsity == "auto" else cfg.tflite_sparsity == "on"
  rep = None
  if "int8" in cfg.tflite:
    rep = portable.representative_images(cfg.representative_data, prep, cfg.representative_count)
  for kind in cfg.tflite:
    log(f"TFLite {kind}{' (sparse)' if sparse and kind != 'dynamic' else ''}")
    files[f"model_{kind}.tflite"] = tflite_lib.convert(model, kind, rep, sparse=sparse)
  if cfg.onnx:
    log(f"ONNX (opset {cfg.opset})")
    files["model.onnx"] = portable.onnx(model, cfg.opset)

  warmup = [read_bytes(p, "warm-up image") for p in cfg.warmup_images]
  # Where the weights came from, relative to the version folder (so that sqznet-verify-export finds
  # them from anywhere, and no absolute path of the maker's machine is written).
  local = ref is not None and os.path.exists(str(ref))
  source = dict(src, ref=os.path.relpath(os.path.abspath(str(ref)), os.path.abspath(os.path.join(export_dir, str(version))))
                if local else ref)
  meta = {"source": source, "weights_info": info.to_dict() if info else None, "labels_from": labels_from,
          "portable_files": sorted(files)}
  log(f"SavedModel version {version} in {export_dir}")
  written = serving.export_saved_model(model, prep, names, export_dir, version, cfg.overwrite, cfg.top_k,
                                       warmup, cfg.warmup, meta)
  if files:
    with atomic_folder(portable_folder) as tmp:
      for f, data in files.items():
        with open(os.path.join(tmp, f), "wb") as out:
          out.write(data)
      serving.write_labels(os.path.join(tmp, "labels.txt"), names)
      write_json_atomic(os.path.join(tmp, serving.META_FILE), {k: v for k, v in written.items() if k != "signatures"})
  rows: List[dict] = [{"file": written["path"] + os.sep, "bytes": _tree_bytes(written["path"])}]
  rows += [{"file": os.path.join(portable_folder, f), "bytes": len(d)} for f, d in sorted(files.items())]
  return {"export_dir": export_dir, "version": version, "path": written["path"], "signatures": written["signatures"],
          "warmup_requests": written["warmup_requests"], "labels_from": labels_from, "sparse": bool(sparse),
          "files": rows}
