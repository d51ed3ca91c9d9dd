"""TrainConfig: everything one training run needs, as plain values (saved as JSON beside the run)."""

import dataclasses
import json
from typing import Any, Dict, Optional

from sqznet_tf.data.spec import DataSpec
from sqznet_tf.errors import SqznetError

# Names only (no TensorFlow here): schedules.py and strategies.py build what they name.
SCHEDULES = ("poly", "cosine", "constant")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")

OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = (None, "mixed_float16", "mixed_bfloat16")
# steps_per_execution=None: group this many steps per call into the graph in runs of at least
# GROUP_FROM_STEPS steps (the extra trace of the grouped loop, 3-5 s, is then repaid), else 1.
GROUPED_STEPS = 8
GROUP_FROM_STEPS = 2000


@dataclasses.dataclass
class TrainConfig:
  """One training run.

  Attributes:
    model: registry name; `overrides` are its metaparameter overrides (batch_norm, squeeze_ratio...).
    data: the input description (source, paths, image size, augmentation, seed).
    classes: number of classes for sources that do not say (TFRecords, synthetic).
    batch_size: global batch size (split over the replicas).
    epochs: passes over the training data; steps_per_epoch overrides the pass length.
    optimizer: sgd (momentum, as the Caffe solver), adam or adamw.
    learning_rate, momentum, lr_schedule (poly/cosine/constant), warmup_epochs.
    weight_decay: L2 on conv and dense kernels (Caffe's weight_decay; decoupled for adamw).
    label_smoothing, dropout (None keeps the model's).
    seed: Python, NumPy and TF seeds.
    init_weights: "imagenet", a .net file or Keras weights (.h5) to start from (layers whose
      shape differs, the classifier when the class count differs, start fresh); or "cifar10" or
      a .sqz file, which must fit the model entirely.
    mixed_precision: None, mixed_float16 or mixed_bfloat16.
    jit_compile: XLA (off by default: slower on CPUs).
    steps_per_execution: training steps per call into the compiled graph (Keras' compile option):
      fewer returns to Python per step (measured: 5-8% per step for v1.1 at 64 px, batch 32, 2
      cores), but Keras traces the training step once more for the grouped loop (3-5 s). None:
      GROUPED_STEPS for runs of at least GROUP_FROM_STEPS steps, else 1. Progress bars and
      per-batch callbacks see one update per group; a run with a wrapper (pruning, clustering:
      tfmot counts its step per batch) or extra callbacks runs 1.
    pointwise_matmul: run every 1x1 convolution as one matrix product while training (the same
      numbers to float round-off; measured 6-9% less time per step for v1.0/v1.1 at 64 px, batch 32,
      2 cores; see models/pointwise.py). The trained model keeps its Conv2D layers.
    strategy, tpu, cpu_devices: distribution (see strategies.py).
    model_dir: where checkpoints, logs, history and the final model go.
    histogram_freq: epochs between weight histograms in TensorBoard (0: none).
    save_model: also write saved_model/ (a Keras SavedModel, for Keras users and TF tools) at the
      end; the run folder loads without it (final.weights.h5). DSD's first two phases and the
      compression fine-tuning runs leave it out: it takes longer to write than a short phase trains.
    verbose: Keras progress bar (1), one line per epoch (2) or silent (0).
  """
  model: str = "squeezenet_v1_1"
  overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
  data: DataSpec = dataclasses.field(default_factory=DataSpec)
  classes: Optional[int] = None
  batch_size: int = 64
  epochs: int = 10
  steps_per_epoch: Optional[int] = None
  optimizer: str = "sgd"
  learning_rate: float = 0.04
  momentum: float = 0.9
  lr_schedule: str = "poly"
  warmup_epochs: float = 0.0
  weight_decay: float = 2e-4
  label_smoothing: float = 0.0
  dropout: Optional[float] = None
  seed: int = 0
  init_weights: Optional[str] = None
  mixed_precision: Optional[str] = None
  jit_compile: bool = False
  steps_per_execution: Optional[int] = None
  pointwise_matmul: bool = True
  strategy: str = "default"
  tpu: Optional[str] = None
  cpu_devices: Optional[int] = None
  model_dir: str = "runs/default"
  histogram_freq: int = 1
  save_model: bool = True
  verbose: int = 1

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    def bad(field, value, accepted):
      raise SqznetError(f"{field}={value!r} is not accepted; expected {accepted}")
    if self.optimizer not in OPTIMIZERS:
      bad("optimizer", self.optimizer, "one of " + ", ".join(OPTIMIZERS))
    if self.lr_schedule not in SCHEDULES:
      bad("lr_schedule", self.lr_schedule, "one of " + ", ".join(SCHEDULES))
    if self.strategy not in STRATEGIES:
      bad("strategy", self.strategy, "one of " + ", ".join(STRATEGIES))
    if self.mixed_precision not in PRECISIONS:
      bad("mixed_precision", self.mixed_precision, "mixed_float16 or mixed_bfloat16")
    if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
      bad("learning_rate", self.learning_rate, "a number > 0")
    grouped = ("steps_per_execution",) if self.steps_per_execution is not None else ()
    for f in ("batch_size", "epochs") + grouped:
      v = getattr(self, f)
      if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        bad(f, v, "a positive integer")
    if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
      bad("steps_per_epoch", self.steps_per_epoch, "a positive integer")
    if not 0 <= self.momentum < 1:
      bad("momentum", self.momentum, "a number in [0, 1)")
    if self.weight_decay < 0:
      bad("weight_decay", self.weight_decay, "a number >= 0")
    if not 0 <= self.label_smoothing < 1:
      bad("label_smoothing", self.label_smoothing, "a number in [0, 1)")
    if self.warmup_epochs < 0:
      bad("warmup_epochs", self.warmup_epochs, "a number >= 0")
    if self.dropout is not None and not 0 <= self.dropout < 1:
      bad("dropout", self.dropout, "a number in [0, 1)")
    if self.cpu_devices is not None and self.cpu_devices < 1:
      bad("cpu_devices", self.cpu_devices, "a positive integer")
    if self.tpu is not None and self.strategy != "tpu":
      raise SqznetError(f"tpu={self.tpu!r} is given with strategy={self.strategy!r}; a TPU address goes with "
                        "strategy 'tpu' only (drop one of them)")

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    return d

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2)

  @classmethod
  def from_dict(cls, d: dict) -> "TrainConfig":
    d = dict(d)
    d["data"] = DataSpec(**d.get("data", {}))
    return cls(**d)
