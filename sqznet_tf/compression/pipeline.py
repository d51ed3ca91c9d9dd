"""prune -> (fine-tune) -> share weights -> (fine-tune) -> encode, with accuracy and size per stage.

What `sqznet-compress` runs. Each stage is optional:

- prune: magnitude pruning to per-layer targets (a sparsity, a JSON/YAML map, zeros already there
  counting); with `prune_epochs` > 0 the sparse model is retrained with tfmot's fixed masks (as in
  DSD's sparse phase) on `train` data.
- cluster: weight sharing of every Conv2D/Dense kernel to 2^bits values (code 0 = zero): k-means
  in numpy without training, or, with `cluster_epochs` > 0, tfmot's `cluster_weights`
  (`preserve_sparsity`, so pruned weights stay zero) fine-tuned on `train` data and stripped.
- encode: the `.sqz` container (or the Deep Compression release's `.net` format for SqueezeNet
  v1.0 at 8 bits), written atomically and decoded again to check it holds exactly the weights
  that were measured.

Sizes in every row: float32 dense bytes, the zip of the stage's Keras weights file (the number
tfmot's guides quote), Deep Compression's accounting, and the real file for the encoded stage.
"""

import dataclasses
import itertools
import os
import tempfile
import zipfile
from typing import Callable, List, Optional, Tuple

import numpy as np

from sqznet_tf import evaluation, loading
from sqznet_tf import weights as weights_lib
from sqznet_tf.analysis import storage
from sqznet_tf.data import pipeline as data_pipeline
from sqznet_tf.data import preprocessing
from sqznet_tf.data import sources
from sqznet_tf._keras import keras
from sqznet_tf.compression import budget, cluster, container, quantize, sharing, tflite
from sqznet_tf.compression import distill as distill_lib
from sqznet_tf.compression.config import CompressConfig
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats import net as net_format
from sqznet_tf.formats import sqz
from sqznet_tf.io import check_output_file, prepare_output_folder, write_atomic, write_json_atomic
from sqznet_tf.pruning import dsd, prune
from sqznet_tf.training.config import TrainConfig
from sqznet_tf.training.train import train

EvaluateFn = Callable[[object], Tuple[float, float]]


@dataclasses.dataclass
class StageRow:
  """Accuracy and size after one stage."""
  stage: str
  top1: Optional[float]
  top5: Optional[float]
  density: float
  bits: object  # code width: an int, or layer name -> width
  fp32_bytes: int
  zip_bytes: int
  deep_compression_bytes: Optional[int]
  file_bytes: Optional[int] = None
  agreement: Optional[float] = None  # share of photos whose top-1 class is the loaded model's

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class CompressResult:
  rows: List[StageRow]
  stats: List[sqz.TensorStat]
  output: Optional[str]
  model: object
  widths: object = None  # the code width, or layer name -> width


def coded_layers(model) -> List[str]:
  """Names of the layers whose kernels are pruned and shared (Conv2D and Dense)."""
  return prune.prunable_layers(model)


def kernel_density(model) -> float:
  names = set(coded_layers(model))
  total = nonzero = 0
  for layer in model.layers:
    if layer.name in names:
      k = layer.get_weights()[0]
      total += k.size
      nonzero += int(np.count_nonzero(k))
  return nonzero / max(total, 1)


def zip_bytes(model) -> int:
  """Bytes of the zipped Keras weights file (how tfmot's guides measure a pruned model)."""
  with tempfile.TemporaryDirectory() as d:
    h5 = os.path.join(d, "w.weights.h5")
    model.save_weights(h5)
    z = os.path.join(d, "w.zip")
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as f:
      f.write(h5, "w.weights.h5")
    return os.path.getsize(z)


def deep_compression_estimate(model, bits) -> int:
  """Deep Compression's accounting (`analysis.storage`): codes + 4-bit gaps + codebooks + float32 rest.

  bits: one code width, or layer name -> width (each layer counted at its own).
  """
  names = set(coded_layers(model))
  widths = bits if isinstance(bits, dict) else {}
  stored, other = {}, 0
  for layer in model.layers:
    for i, w in enumerate(layer.get_weights()):
      if layer.name in names and i == 0:
        stored[layer.name] = int(np.count_nonzero(w))
      else:
        other += w.size
  if not widths:
    return storage.stored_bytes(list(stored.values()), other, bits)["total"]
  total = storage.stored_bytes([], other, max(widths.values()))["total"]
  for name, n in stored.items():
    total += storage.stored_bytes([n], 0, widths[name])["total"]
  return total


def _widths_label(widths) -> str:
  if not isinstance(widths, dict):
    return f"{widths}-bit"
  counts = {}
  for w in widths.values():
    counts[w] = counts.get(w, 0) + 1
  return "mixed " + "/".join(f"{w}-bit x{n}" for w, n in sorted(counts.items(), reverse=True))


def _copy_model(model):
  """A second model of the same architecture and weights (the teacher of distillation)."""
  copy = keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  return copy


def _preprocessing(info, model):
  prep = info.preprocessing if info else preprocessing.PRESETS["caffe"]
  if prep.crop_size != int(model.input_shape[1]):
    prep = preprocessing.with_crop(prep, int(model.input_shape[1]), None)
  return prep


def _widths_to_budget(cfg: CompressConfig, model, info, names, teacher, images, log, importance=None) -> dict:
  """Per-layer widths whose .sqz file fits `cfg.max_bytes` with the least measured sensitivity."""
  prep = _preprocessing(info, model)
  log(f"code widths to {cfg.max_bytes:,} bytes: sharing each layer at {', '.join(map(str, cfg.widths))} bits")
  costs = budget.layer_costs(model, names, cfg.widths, cfg.cluster_init, cfg.entropy, cfg.layout, cfg.index_bits,
                             importance)
  top = max(cfg.widths)
  config = container.model_config(_source(cfg, model)[0], _build_args(cfg, model), info,
                                  bits={n: top for n in names})
  tensors = container.model_tensors(model, {n: top for n in names}, {c.name: c.shared[top] for c in costs}, names)
  whole, _ = sqz.encode(tensors, config, entropy=cfg.entropy, layout=cfg.layout, index_bits=cfg.index_bits)
  fixed = len(whole) - sum(c.nbytes[top] for c in costs)
  room = cfg.max_bytes - fixed
  budget.check_fits(costs, room)  # before the sensitivities: a budget that cannot fit fails at once
  batches = list(distill_lib.centre_crops(images[:cfg.budget_photos], prep, 16))
  divergence = distill_lib.divergence_fn(teacher, batches, cfg.distill.temperature)
  budget.measure_sensitivity(model, costs, divergence, log)
  for _ in range(5):  # the config's few bytes may differ with the widths: check the real file
    widths = budget.choose_widths(costs, room)
    config = container.model_config(_source(cfg, model)[0], _build_args(cfg, model), info, bits=widths)
    tensors = container.model_tensors(model, widths, {c.name: c.shared[widths[c.name]] for c in costs}, names)
    size = len(sqz.encode(tensors, config, entropy=cfg.entropy, layout=cfg.layout, index_bits=cfg.index_bits)[0])
    if size <= cfg.max_bytes:
      log(f"chosen widths ({size:,} bytes): " + ", ".join(f"{n} {w}" for n, w in widths.items()))
      return widths
    room -= size - cfg.max_bytes
  raise SqznetError(f"could not fit {cfg.max_bytes:,} bytes (last try {size:,})")


def load_model(cfg: CompressConfig):
  """(model, WeightsInfo or None) that the run starts from."""
  return loading.load_model(cfg.weights, model=cfg.model, overrides=cfg.overrides, classes=cfg.classes,
                            input_size=cfg.input_size)


def _source(cfg: CompressConfig, model) -> Tuple[str, dict]:
  """(architecture, overrides) the loaded model was built from."""
  src = loading.source_of(model) or {}
  architecture = src.get("architecture") or cfg.model
  if not architecture:
    raise SqznetError(f"{cfg.weights}: the model does not say which registry network it is, which a compressed "
                      "file must record; give --model (and its overrides)")
  return architecture, dict(src.get("overrides") or cfg.overrides)


def _build_args(cfg: CompressConfig, model) -> dict:
  build = dict(_source(cfg, model)[1])
  build["classes"] = int(model.output_shape[-1])
  build["input_shape"] = [int(d) for d in model.input_shape[1:]]
  return build


def _finetune(cfg: CompressConfig, model, stage: str, epochs: int, wrap, unwrap, callbacks=None):
  """Retrains `model` for `epochs` under `wrap` (tfmot wrappers) with train(); returns the new model."""
  run_dir = os.path.join(cfg.work_dir, stage)
  os.makedirs(run_dir, exist_ok=True)
  start = os.path.join(run_dir, "start.weights.h5")
  weights_lib.save_weights(model, start)
  arch, overrides = _source(cfg, model)
  tc = dataclasses.replace(cfg.train, model=arch, overrides=overrides, epochs=epochs,
                           init_weights=start, model_dir=run_dir, classes=int(model.output_shape[-1]))
  return train(tc, wrap=wrap, unwrap=unwrap, extra_callbacks=callbacks).model


def compress(cfg: CompressConfig, evaluate_fn: Optional[EvaluateFn] = None,
             log: Callable[[str], None] = lambda s: None, loaded=None) -> CompressResult:
  """Runs the stages; see the module docstring.

  Args:
    loaded: (model, WeightsInfo) from `load_model(cfg)` when the caller has it already.
  """
  cfg.validate()
  model, info = loaded or load_model(cfg)
  names = coded_layers(model)
  rows: List[StageRow] = []

  first = {}  # top-1 classes of the loaded model, to which each stage's agreement is measured

  def measure(stage: str, bits, file_bytes: Optional[int] = None, same_as_last: bool = False):
    if same_as_last and rows:  # the weights were checked to be bit-identical: same accuracy
      acc, agree = (rows[-1].top1, rows[-1].top5), rows[-1].agreement
    else:
      log(f"measuring: {stage}")
      acc = evaluate_fn(model) if evaluate_fn else (None, None)
      agree = None
      if len(acc) > 2:
        first.setdefault("top1", acc[2])
        agree = float(np.mean(np.asarray(acc[2]) == np.asarray(first["top1"]))) if len(acc[2]) else None
    params = model.count_params()
    rows.append(StageRow(stage, acc[0], acc[1], kernel_density(model), bits, 4 * params, zip_bytes(model),
                         deep_compression_estimate(model, bits) if bits else None, file_bytes, agree))

  measure("loaded", None)
  if cfg.prune:
    targets = prune.resolve_targets(model, cfg.sparsity, cfg.keep_dense)
    if cfg.prune_epochs:
      log(f"pruning and retraining for {cfg.prune_epochs} epochs")
      model = _finetune(cfg, model, "prune", cfg.prune_epochs, dsd.sparse_wrapper(cfg.sparsity, cfg.keep_dense),
                        prune.strip, lambda out_dir: prune.pruning_callbacks())
    else:
      log("pruning by magnitude")
      prune.apply_map(model, targets)
    measure("pruned" + (f" + {cfg.prune_epochs} epochs" if cfg.prune_epochs else ""), None)
  shared = None
  widths = cfg.bits
  if cfg.cluster:
    if cfg.cluster_epochs:
      log(f"clustering ({1 << cfg.bits} values per layer) and retraining for {cfg.cluster_epochs} epochs")
      model = _finetune(cfg, model, "cluster", cfg.cluster_epochs, cluster.cluster_wrapper(cfg.bits, cfg.cluster_init, names),
                        cluster.strip_clusters)
      measure(f"shared {cfg.bits}-bit + {cfg.cluster_epochs} epochs", cfg.bits)
    else:
      teacher = images = None
      prep = _preprocessing(info, model)
      if cfg.distill is not None:
        teacher = _copy_model(model)
        images = distill_lib.load_images(distill_lib.image_files(cfg.distill.data, cfg.distill.limit), prep, log)
      importance = None
      if cfg.distill is not None and cfg.distill.fisher_photos:
        importance = distill_lib.fisher(teacher, names, distill_lib.centre_crops(
            images[:cfg.distill.fisher_photos], prep, 16), log)
      if cfg.max_bytes is not None:
        widths = _widths_to_budget(cfg, model, info, names, teacher, images, log, importance)
      label = _widths_label(widths)
      log(f"weight sharing: {label} (k-means, {cfg.cluster_init} init{', Fisher-weighted' if importance else ''})")
      shared = cluster.share_model(model, widths, cfg.cluster_init, names, importance=importance)
      measure(f"shared {label}", widths)
      if cfg.distill is not None and cfg.distill.epochs:
        log(f"codebook fine-tuning by distillation: {cfg.distill.epochs} epochs on {len(images)} photos")
        shared = distill_lib.distill(model, teacher, shared, cfg.distill, prep, log, images)
        measure(f"shared {label} + distilled {cfg.distill.epochs} epochs", widths)

  stats: List[sqz.TensorStat] = []
  if cfg.output:
    if not cfg.cluster:
      # Kernels must already be shared (e.g. a .sqz input); codebook_of says so otherwise.
      shared = None
    log(f"encoding {cfg.output}")
    if cfg.output_format == "net":
      if _source(cfg, model)[0] not in ("squeezenet_v1_0_caffe", "squeezenet_v1_0"):
        raise SqznetError(f"the .net format holds SqueezeNet v1.0 only, not {_source(cfg, model)[0]}; "
                          "use --output_format=sqz")
      data = _encode_net(model)
    else:
      config = container.model_config(_source(cfg, model)[0], _build_args(cfg, model), info, bits=widths)
      data, stats = sqz.encode(container.model_tensors(model, widths, shared, names), config,
                               entropy=cfg.entropy, layout=cfg.layout, index_bits=cfg.index_bits)
    write_atomic(cfg.output, data)
    _check_round_trip(cfg, model, data)
    measure(f"encoded ({'Huffman' if cfg.entropy and cfg.output_format == 'sqz' else 'fixed width'})",
            widths if cfg.cluster else None, len(data), same_as_last=True)
  return CompressResult(rows, stats, cfg.output, model, widths if cfg.cluster else None)


def _encode_net(model) -> bytes:
  by_name = {l.name: l for l in model.layers}
  layers = []
  for name, _, shape in net_format.LAYERS:
    kernel, bias = by_name[name].get_weights()
    caffe = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
    s = sharing.codebook_of(caffe, 8, f"layer {name}")
    book = np.zeros(net_format.CODEBOOK_SIZE, np.float32)
    book[:s.codebook.size] = s.codebook
    layers.append((caffe, bias, book))
  return net_format.encode_layers(layers)


def _check_round_trip(cfg: CompressConfig, model, data: bytes) -> None:
  """Decodes the bytes just written and compares every weight with the model's."""
  if cfg.output_format == "net":
    layers = net_format.decode(data).layers
    decoded = {(l.name, 0): l.keras_kernel for l in layers}
    decoded.update({(l.name, 1): l.bias for l in layers})
  else:
    decoded = sqz.decode(data, cfg.output).tensors
  for layer in model.layers:
    for i, w in enumerate(layer.get_weights()):
      if (layer.name, i) in decoded and not np.array_equal(decoded[(layer.name, i)], w):
        raise SqznetError(f"internal error: {cfg.output} does not decode to the weights of layer {layer.name}")


@dataclasses.dataclass
class FineTuneData:
  """Training data of the fine-tuning stages (and of evaluation when no labelled photos are given).

  Attributes:
    data: "embedded", a class folder or TFRecords (as sqznet-train's --data).
    val_split: share held out for validation, which measures the stages without photos.
    batch_size, learning_rate, steps_per_epoch: of the fine-tuning runs (SGD, momentum 0.9,
      constant learning rate).
  """
  data: str
  val_split: float = 0.1
  batch_size: int = 32
  learning_rate: float = 0.001
  steps_per_epoch: Optional[int] = None
  data_format: str = "auto"

  def train_config(self, cfg: CompressConfig, model, info):
    """The base TrainConfig of the fine-tuning runs, for `model`'s input size and preprocessing."""
    source, path = sources.resolve_source(self.data, self.data_format)
    spec = data_pipeline.DataSpec(source=source, path=path, val_split=self.val_split, image_size=int(model.input_shape[1]),
                    preprocessing=info.preprocessing.mode if info else "caffe")
    arch, overrides = _source(cfg, model)
    return TrainConfig(model=arch, overrides=overrides, data=spec, batch_size=self.batch_size,
                       learning_rate=self.learning_rate, lr_schedule="constant", histogram_freq=0, verbose=2,
                       steps_per_epoch=self.steps_per_epoch, save_model=False)


class _TFLiteRunner:
  """A TFLite flatbuffer behind the `predict_on_batch` that the evaluators call."""

  def __init__(self, data: bytes, model):
    self.data, self.input_shape, self.output_shape = data, model.input_shape, model.output_shape

  def predict_on_batch(self, x):
    return tflite.predict(self.data, x)


def _evaluator(model, info, source, limit, batch_size, train_config):
  """(model -> (top1, top5), n -> n sample inputs) on labelled photos, else on the training data's
  validation split; (None, None) without either."""
  if source is not None:
    pre = preprocessing.Preprocessor(_preprocessing(info, model))

    def evaluate(m):
      classes = []
      r = evaluation.evaluate(m, source, pre, batch_size, limit, progress=False, top1_classes=classes)
      return r.top1, r.top5, classes

    def samples(n):
      out = [pre(data) for _, _, data in itertools.islice(
          (item for item in source if not isinstance(item[2], Exception)), n)]
      return np.stack(out).astype(np.float32)
    return evaluate, samples
  if train_config is not None:
    data = data_pipeline.make_datasets(train_config.data, batch_size)
    if data.val is None:
      raise SqznetError(f"--train_data={train_config.data.path or train_config.data.source} has no validation "
                        "split; set --val_split > 0")

    def evaluate(m):
      hit1 = hit5 = n = 0
      classes = []
      for x, y in data.val:
        top = np.argsort(-np.asarray(m.predict_on_batch(x.numpy())), axis=1)[:, :5]
        label = np.argmax(y.numpy(), axis=1)
        hit1 += int((top[:, 0] == label).sum())
        hit5 += int((top == label[:, None]).any(axis=1).sum())
        n += len(label)
        classes.extend(int(c) for c in top[:, 0])
      return hit1 / n, hit5 / n, classes

    def samples(n):
      return np.concatenate([x.numpy() for x, _ in data.val.take(max(1, n // batch_size + 1))])[:n]
    return evaluate, samples
  return None, None


def run(cfg: CompressConfig, source=None, limit: Optional[int] = None, batch_size: int = 32,
        finetune: Optional[FineTuneData] = None, log: Callable[[str], None] = lambda s: None) -> dict:
  """What sqznet-compress runs: load, measure, compress, encode, (int8 TFLite); one JSON-ready dict.

  Args:
    cfg: the stages and outputs.
    source: labelled photos (an ImageSource) to measure each stage on; else the validation split
      of `finetune`'s data; else no accuracy.
    limit, batch_size: of each evaluation.
    finetune: training data of the fine-tuning stages and of QAT.
  """
  if ((cfg.prune and cfg.prune_epochs) or (cfg.cluster and cfg.cluster_epochs) or cfg.qat_epochs) and not finetune:
    raise SqznetError("--prune_epochs/--cluster_epochs/--qat_epochs > 0 fine-tune the model: give --train_data")
  for path, what in ((cfg.output, "--output"), (cfg.int8_tflite, "--int8_tflite")):
    if path:
      check_output_file(path, what)
  prepare_output_folder(cfg.work_dir, "--work_dir")
  model, info = load_model(cfg)
  if finetune:
    cfg = dataclasses.replace(cfg, train=finetune.train_config(cfg, model, info))
  evaluate, samples = _evaluator(model, info, source, limit, batch_size, cfg.train)
  result = compress(cfg, evaluate, log=log, loaded=(model, info))
  rows = [r.to_dict() for r in result.rows]
  extra = {}
  if cfg.int8_tflite:
    if samples is None:
      raise SqznetError("--int8_tflite needs images to calibrate on: give --data_dir or --train_data")
    if cfg.qat_epochs:
      log(f"quantization-aware training for {cfg.qat_epochs} epochs, then int8 TFLite")
      data = quantize.qat_tflite(cfg.train, result.model, cfg.qat_epochs)
      stage = f"int8 TFLite (QAT, {cfg.qat_epochs} epochs)"
    else:
      log("post-training int8 quantization (TFLite)")
      data = tflite.convert(result.model, "int8", samples(64))
      stage = "int8 TFLite (post-training)"
    write_atomic(cfg.int8_tflite, data)
    acc = evaluate(_TFLiteRunner(data, result.model)) if evaluate else (None, None)
    rows.append(dict(stage=stage, top1=acc[0], top5=acc[1], density=rows[-1]["density"], bits=8,
                     fp32_bytes=rows[-1]["fp32_bytes"], zip_bytes=None, deep_compression_bytes=None,
                     file_bytes=len(data), agreement=None))
    extra["int8_tflite"] = cfg.int8_tflite
  arch = _source(cfg, result.model)[0]
  out = {"model": arch, "weights": loading.describe_source(result.model, cfg.weights)["weights"], "bits": cfg.bits,
         "widths": result.widths,
         "output": result.output, "stages": rows,
         "tensors": [dict(vars(s), bits_per_weight=round(s.bits_per_weight, 3)) for s in result.stats], **extra}
  if result.output:
    rel = os.path.relpath(os.path.abspath(result.output), os.path.abspath(cfg.work_dir))
    write_json_atomic(os.path.join(cfg.work_dir, loading.COMPRESS_RECORD), dict(out, output=rel))
  return out
