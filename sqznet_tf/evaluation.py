"""Top-k accuracy of a classifier on a labelled image source, and top-k predictions for photos.

Images are decoded and preprocessed one at a time (TensorFlow or Pillow), batched, and run
through the model. An image that cannot be decoded is skipped, counted and named in the result,
never silently dropped.
"""

import dataclasses
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from sqznet_tf import loading, reporting
from sqznet_tf.data.preprocessing import ImageDecodeError, Preprocessor
from sqznet_tf.data.sources import ImageSource
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats.labels import Labels
from sqznet_tf.runtimes import predictor


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
             limit: Optional[int] = None, per_class: bool = False, progress: bool = True,
             top1_classes: Optional[list] = None, runtime: str = "tf") -> EvalResult:
  """Top-1 / top-5 accuracy of `model` (probabilities or logits) on `source`.

  top1_classes: if given, each evaluated image's top-1 class is appended to it (in source order).
  runtime: see `sqznet_tf.runtimes.RUNTIMES`; chosen for `batch_size` (also for the last batch).
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise SqznetError(f"batch_size={batch_size!r} is not accepted; expected a positive integer")
  num_classes = int(model.output_shape[-1])
  run = predictor(model, runtime)
  run = run.for_batch(batch_size) if hasattr(run, "for_batch") else run.predict_on_batch
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
    out = np.asarray(run(np.stack(batch_x)))
    top = np.argsort(-out, axis=1)[:, :5]
    y = np.asarray(batch_y)
    hit1 = top[:, 0] == y
    hit5 = (top == y[:, None]).any(axis=1)
    if top1_classes is not None:
      top1_classes.extend(int(c) for c in top[:, 0])
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


def predict_each(model, paths: Sequence[str], preprocessor: Preprocessor, labels: Optional[Labels] = None,
                 top_k: int = 5, runtime: str = "tf"):
  """Top-k classes with probabilities for each image file that can be read (on `runtime`, see runtimes).

  Returns:
    (predictions: [{"file", "top": [{"class", "label", "name", "probability"}]}] in the order of
    `paths`, failures: [{"file", "error"}] of the files that could not be read or decoded).
  """
  num_classes = int(model.output_shape[-1])
  if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_classes:
    raise SqznetError(f"top_k={top_k!r} is not accepted; expected an integer from 1 to {num_classes}")
  if labels is not None and len(labels) != num_classes:
    raise SqznetError(f"label file {labels.source!r} has {len(labels)} classes; the model has {num_classes}")
  xs, ok, failures = [], [], []
  for p in paths:
    try:
      with open(p, "rb") as f:
        data = f.read()
      xs.append(preprocessor(data))
      ok.append(p)
    except OSError as e:
      failures.append({"file": p, "error": f"cannot read image {p!r}: {e.strerror}"})
    except ImageDecodeError as e:
      failures.append({"file": p, "error": f"{p}: {e}"})
  out = []
  if xs:
    probs = np.asarray(predictor(model, runtime).predict_on_batch(np.stack(xs)))
    for p, row in zip(ok, probs):
      top = np.argsort(-row)[:top_k]
      out.append({"file": p, "top": [{"class": int(k), "label": labels.short(int(k)) if labels else str(int(k)),
                                      "name": labels.names[int(k)] if labels else str(int(k)),
                                      "probability": float(row[k])} for k in top]})
  return out, failures


def predict_files(model, paths: Sequence[str], preprocessor: Preprocessor, labels: Optional[Labels] = None,
                  top_k: int = 5) -> List[dict]:
  """Top-k classes with probabilities for each image file (see `predict_each`).

  Raises:
    SqznetError: naming the first file that cannot be read or decoded.
  """
  out, failures = predict_each(model, paths, preprocessor, labels, top_k)
  if failures:
    raise SqznetError(failures[0]["error"])
  return out


def describe_run(model, model_ref, source: ImageSource) -> dict:
  """What a report says about its model and data (no absolute paths of weights)."""
  src = loading.describe_source(model, model_ref)
  return {"model": src["architecture"] or model.name, "weights": src["weights"], "data_dir": source.location,
          "layout": source.layout}


def evaluate_report(model, source: ImageSource, preprocessing, resize_backend: str = "tf", batch_size: int = 32,
                    limit: Optional[int] = None, per_class: bool = False, model_ref=None,
                    runtime: str = "tf") -> dict:
  """What sqznet-evaluate reports: `evaluate` with `preprocessing`, as one JSON-ready dict."""
  run = predictor(model, runtime)
  result = evaluate(run, source, Preprocessor(preprocessing, resize_backend), batch_size, limit, per_class)
  d = result.to_dict(source.class_names)
  d.update(describe_run(model, model_ref, source), resize_backend=resize_backend,
           runtime=run.runtime_for(batch_size) if hasattr(run, "runtime_for") else runtime,
           preprocessing=preprocessing.to_dict())
  return d


def accuracy_fn(source: ImageSource, preprocessing, batch_size: int = 32, limit: Optional[int] = None,
                metric: str = "top1"):
  """(model -> accuracy, dict of the last run's n and skipped) on `source`, without progress bars."""
  pre = Preprocessor(preprocessing)
  last = {}

  def accuracy(model):
    r = evaluate(model, source, pre, batch_size, limit, progress=False)
    last.update(n=r.n, skipped=len(r.skipped))
    return getattr(r, metric)
  return accuracy, last
