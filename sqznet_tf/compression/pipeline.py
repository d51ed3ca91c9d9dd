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
import os
import tempfile
import zipfile
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from sqznet_tf.cli import write_atomic
from sqznet_tf.compression import container, sharing
from sqznet_tf.errors import SqznetError

FORMATS = ("sqz", "net")
EvaluateFn = Callable[[object], Tuple[float, float]]


@dataclasses.dataclass
class CompressConfig:
  """One compression run (see the module docstring for the stages).

  Attributes:
    model, overrides: registry name and metaparameter overrides.
    weights: "imagenet", a `.net` file, a `.sqz` container, Keras weights (.h5) saved by this
      package, or a training folder (its final.weights.h5).
    classes, input_size: of the model; default from the weights' metadata.
    prune, sparsity, keep_dense, prune_epochs: the pruning stage.
    cluster, bits, cluster_init, cluster_epochs: the weight-sharing stage.
    entropy, layout, index_bits: how the container codes each kernel.
    output, output_format: the compressed file ("sqz", or "net" for the release's format).
    train: base TrainConfig for the fine-tuning stages (data, batch size, learning rate...).
    work_dir: where fine-tuning runs keep checkpoints and logs.
  """
  model: str = "squeezenet_v1_0_caffe"
  overrides: Dict = dataclasses.field(default_factory=dict)
  weights: Optional[str] = "imagenet"
  classes: Optional[int] = None
  input_size: Optional[int] = None
  prune: bool = False
  sparsity: object = 0.67
  keep_dense: Tuple[str, ...] = ("conv1",)
  prune_epochs: int = 0
  cluster: bool = True
  bits: int = 8
  cluster_init: str = "optimal"
  cluster_epochs: int = 0
  entropy: bool = True
  layout: str = "auto"
  index_bits: int = 0
  output: Optional[str] = None
  output_format: str = "sqz"
  train: Optional[object] = None
  work_dir: str = "runs/compress"

  def validate(self, check_train: bool = True) -> None:
    """Raises SqznetError on a bad value (`check_train`: also that fine-tuning has its data)."""
    sharing.check_bits(self.bits)
    sharing.check_init(self.cluster_init)
    for name in ("prune_epochs", "cluster_epochs"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise SqznetError(f"{name}={v!r} is not accepted; expected an integer >= 0")
    if check_train and ((self.prune_epochs and self.prune) or (self.cluster_epochs and self.cluster)):
      if self.train is None:
        raise SqznetError("fine-tuning (--prune_epochs/--cluster_epochs > 0) needs training data (--train_data)")
    if self.output_format not in FORMATS:
      raise SqznetError(f"output format {self.output_format!r} is not accepted; expected one of {', '.join(FORMATS)}")
    if self.layout not in container.LAYOUTS:
      raise SqznetError(f"layout {self.layout!r} is not accepted; expected one of {', '.join(container.LAYOUTS)}")
    if isinstance(self.index_bits, bool) or not isinstance(self.index_bits, int) or not 0 <= self.index_bits <= 8:
      raise SqznetError(f"index_bits={self.index_bits!r} is not accepted; expected 0 (per layer) to 8")
    if self.output_format == "net":
      if self.bits != 8 or not self.cluster:
        raise SqznetError("the .net (Deep Compression release) format holds 8-bit shared weights: use --bits=8 "
                          "with weight sharing on")
      if self.model not in ("squeezenet_v1_0_caffe", "squeezenet_v1_0") or self.overrides:
        raise SqznetError(f"the .net format holds SqueezeNet v1.0 only, not {self.model}; use --output_format=sqz")


@dataclasses.dataclass
class StageRow:
  """Accuracy and size after one stage."""
  stage: str
  top1: Optional[float]
  top5: Optional[float]
  density: float
  bits: Optional[int]
  fp32_bytes: int
  zip_bytes: int
  deep_compression_bytes: Optional[int]
  file_bytes: Optional[int] = None

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class CompressResult:
  rows: List[StageRow]
  stats: List[container.TensorStat]
  output: Optional[str]
  model: object


def coded_layers(model) -> List[str]:
  """Names of the layers whose kernels are pruned and shared (Conv2D and Dense)."""
  from sqznet_tf.pruning import prune  # pylint: disable=g-import-not-at-top
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


def deep_compression_estimate(model, bits: int) -> int:
  """Deep Compression's accounting (codes + 4-bit gaps + codebooks + float32 rest; no fillers)."""
  names = set(coded_layers(model))
  total = 0
  for layer in model.layers:
    for i, w in enumerate(layer.get_weights()):
      if layer.name in names and i == 0:
        nz = int(np.count_nonzero(w))
        total += (nz * (bits + 4) + 7) // 8 + 4 * (1 << bits)
      else:
        total += 4 * w.size
  return total


def share_model(model, bits: int, init: str = "linear", layers: Optional[List[str]] = None,
                seed: int = 0) -> Dict[str, sharing.Shared]:
  """k-means weight sharing of each kernel, in place; returns the codebooks and codes per layer."""
  out = {}
  names = layers if layers is not None else coded_layers(model)
  by_name = {l.name: l for l in model.layers}
  for name in names:
    layer = by_name[name]
    values = layer.get_weights()
    s = sharing.share(values[0], bits, init, seed=seed)
    values[0] = s.kernel
    layer.set_weights(values)
    out[name] = s
  return out


def cluster_wrapper(bits: int, init: str, layers: List[str]):
  """model -> model in tfmot's clustering wrappers, for fine-tuning the shared values.

  init "optimal" starts tfmot's centroids at the exact k-means codebook of each kernel (tfmot has
  no such initialisation: its wrappers are built with linear centroids, which are then
  replaced); the other inits are tfmot's own.
  """
  def wrap(model):
    from sqznet_tf.compression import tfmot_ops  # pylint: disable=g-import-not-at-top
    if init != "optimal":
      return tfmot_ops.cluster_model(model, bits, init, layers=layers)
    shared = share_model(model, bits, "optimal", layers)
    wrapped = tfmot_ops.cluster_model(model, bits, "linear", layers=layers)
    for layer in wrapped.layers:
      inner = getattr(layer, "layer", None)
      if inner is None or inner.name not in shared:
        continue
      book, codes = shared[inner.name].codebook, shared[inner.name].codes
      centroids = next(v for v in layer.weights if "cluster_centroids" in v.name)
      indices = next(v for v in layer.weights if "pulling_indices" in v.name)
      n = int(centroids.shape[0])
      # tfmot pins the centroid it found nearest zero when wrapping to 0.0 at every step: the
      # codebook's zero goes there, its other values (padded to tfmot's count) elsewhere.
      zero = int(layer.zero_idx["kernel"]) if getattr(layer, "zero_idx", None) else 0
      slots = np.asarray([zero] + [i for i in range(n) if i != zero])
      values = np.zeros(n, np.float64)
      values[slots] = np.concatenate([book, np.full(max(0, n - book.size), book[-1])])[:n]
      centroids.assign(values.astype(centroids.dtype.as_numpy_dtype))
      indices.assign(slots[codes.astype(np.int64)].astype(indices.dtype.as_numpy_dtype))
    return wrapped
  return wrap


def load_model(cfg: CompressConfig):
  """(model, WeightsInfo or None) that the run starts from."""
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
  return evaluation.load_trained(cfg.model, cfg.weights, cfg.overrides, cfg.classes, cfg.input_size)


def _build_args(cfg: CompressConfig, model) -> dict:
  build = dict(cfg.overrides)
  build["classes"] = int(model.output_shape[-1])
  build["input_shape"] = [int(d) for d in model.input_shape[1:]]
  return build


def _finetune(cfg: CompressConfig, model, stage: str, epochs: int, wrap, unwrap, callbacks=None):
  """Retrains `model` for `epochs` under `wrap` (tfmot wrappers) with train(); returns the new model."""
  from sqznet_tf import weights as weights_lib  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.train import train  # pylint: disable=g-import-not-at-top
  run_dir = os.path.join(cfg.work_dir, stage)
  os.makedirs(run_dir, exist_ok=True)
  start = os.path.join(run_dir, "start.weights.h5")
  weights_lib.save_weights(model, start)
  tc = dataclasses.replace(cfg.train, model=cfg.model, overrides=dict(cfg.overrides), epochs=epochs,
                           init_weights=start, model_dir=run_dir, classes=int(model.output_shape[-1]))
  return train(tc, wrap=wrap, unwrap=unwrap, extra_callbacks=callbacks).model


def compress(cfg: CompressConfig, evaluate_fn: Optional[EvaluateFn] = None,
             log: Callable[[str], None] = lambda s: None, loaded=None) -> CompressResult:
  """Runs the stages; see the module docstring.

  Args:
    loaded: (model, WeightsInfo) from `load_model(cfg)` when the caller has it already.
  """
  from sqznet_tf.pruning import prune, sensitivity  # pylint: disable=g-import-not-at-top
  cfg.validate()
  model, info = loaded or load_model(cfg)
  names = coded_layers(model)
  rows: List[StageRow] = []

  def measure(stage: str, bits: Optional[int], file_bytes: Optional[int] = None, same_as_last: bool = False):
    if same_as_last and rows:  # the weights were checked to be bit-identical: same accuracy
      acc = (rows[-1].top1, rows[-1].top5)
    else:
      log(f"measuring: {stage}")
      acc = evaluate_fn(model) if evaluate_fn else (None, None)
    params = model.count_params()
    rows.append(StageRow(stage, acc[0], acc[1], kernel_density(model), bits, 4 * params, zip_bytes(model),
                         deep_compression_estimate(model, bits) if bits else None, file_bytes))

  measure("loaded", None)
  if cfg.prune:
    targets = prune.resolve_targets(model, cfg.sparsity, cfg.keep_dense)
    if cfg.prune_epochs:
      from sqznet_tf.pruning import dsd  # pylint: disable=g-import-not-at-top
      log(f"pruning and retraining for {cfg.prune_epochs} epochs")
      model = _finetune(cfg, model, "prune", cfg.prune_epochs, dsd.sparse_wrapper(cfg.sparsity, cfg.keep_dense),
                        prune.strip, lambda out_dir: prune.pruning_callbacks())
    else:
      log("pruning by magnitude")
      sensitivity.apply_map(model, targets)
    measure("pruned" + (f" + {cfg.prune_epochs} epochs" if cfg.prune_epochs else ""), None)
  shared = None
  if cfg.cluster:
    if cfg.cluster_epochs:
      from sqznet_tf.compression import tfmot_ops  # pylint: disable=g-import-not-at-top
      log(f"clustering ({1 << cfg.bits} values per layer) and retraining for {cfg.cluster_epochs} epochs")
      model = _finetune(cfg, model, "cluster", cfg.cluster_epochs, cluster_wrapper(cfg.bits, cfg.cluster_init, names),
                        tfmot_ops.strip_clusters)
    else:
      log(f"weight sharing: {1 << cfg.bits} values per layer (k-means, {cfg.cluster_init} init)")
      shared = share_model(model, cfg.bits, cfg.cluster_init, names)
    measure(f"shared {cfg.bits}-bit" + (f" + {cfg.cluster_epochs} epochs" if cfg.cluster_epochs else ""), cfg.bits)

  stats: List[container.TensorStat] = []
  if cfg.output:
    if not cfg.cluster:
      # Kernels must already be shared (e.g. a .sqz input); codebook_of says so otherwise.
      shared = None
    log(f"encoding {cfg.output}")
    if cfg.output_format == "net":
      data = _encode_net(model)
    else:
      config = container.model_config(cfg.model, _build_args(cfg, model), info, bits=cfg.bits)
      data, stats = container.encode(container.model_tensors(model, cfg.bits, shared, names), config,
                                     entropy=cfg.entropy, layout=cfg.layout, index_bits=cfg.index_bits)
    write_atomic(cfg.output, data)
    _check_round_trip(cfg, model, data)
    measure(f"encoded ({'Huffman' if cfg.entropy and cfg.output_format == 'sqz' else 'fixed width'})",
            cfg.bits if cfg.cluster else None, len(data), same_as_last=True)
  return CompressResult(rows, stats, cfg.output, model)


def qat_tflite(cfg: CompressConfig, model, epochs: int) -> bytes:
  """Quantization-aware training of `model` on `cfg.train` data, then an int8 TFLite flatbuffer.

  tfmot's default 8-bit scheme (see `tfmot_ops.quantize_aware`); a plain `fit` at the
  fine-tuning learning rate, without train()'s checkpoints: QAT is a short fine-tune.
  """
  from sqznet_tf._keras import keras, tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.compression import tfmot_ops  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data import pipeline as data_pipeline  # pylint: disable=g-import-not-at-top
  if cfg.train is None:
    raise SqznetError("quantization-aware training needs training data (--train_data)")
  data = data_pipeline.make_datasets(cfg.train.data, cfg.train.batch_size, int(model.output_shape[-1]))
  steps = cfg.train.steps_per_epoch or max(1, data.train_size // cfg.train.batch_size)
  qat = tfmot_ops.quantize_aware(model)
  qat.compile(optimizer=keras.optimizers.SGD(cfg.train.learning_rate, momentum=0.9),
              loss=keras.losses.CategoricalCrossentropy())
  qat.fit(data.train.repeat(), epochs=epochs, steps_per_epoch=steps, verbose=cfg.train.verbose)
  converter = tf.lite.TFLiteConverter.from_keras_model(qat)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  try:
    return bytes(converter.convert())
  except Exception as e:  # pylint: disable=broad-except
    raise SqznetError(f"int8 TFLite conversion of the QAT model failed: {str(e).strip().splitlines()[0][:200]}") from e


def _encode_net(model) -> bytes:
  from sqznet_tf.weights import deep_compression as dc  # pylint: disable=g-import-not-at-top
  by_name = {l.name: l for l in model.layers}
  layers = []
  for name, _, shape in dc.LAYERS:
    kernel, bias = by_name[name].get_weights()
    caffe = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
    s = sharing.codebook_of(caffe, 8, f"layer {name}")
    book = np.zeros(dc.CODEBOOK_SIZE, np.float32)
    book[:s.codebook.size] = s.codebook
    layers.append((caffe, bias, book))
  return dc.encode_layers(layers)


def _check_round_trip(cfg: CompressConfig, model, data: bytes) -> None:
  """Decodes the bytes just written and compares every weight with the model's."""
  if cfg.output_format == "net":
    from sqznet_tf.weights import deep_compression as dc  # pylint: disable=g-import-not-at-top
    layers = dc.decode(data).layers
    decoded = {(l.name, 0): l.keras_kernel for l in layers}
    decoded.update({(l.name, 1): l.bias for l in layers})
  else:
    decoded = container.decode(data, cfg.output).tensors
  for layer in model.layers:
    for i, w in enumerate(layer.get_weights()):
      if (layer.name, i) in decoded and not np.array_equal(decoded[(layer.name, i)], w):
        raise SqznetError(f"internal error: {cfg.output} does not decode to the weights of layer {layer.name}")
