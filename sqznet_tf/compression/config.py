"""What one `sqznet-compress` run does (its stages and outputs), checked without TensorFlow."""

import dataclasses
import os
from typing import Dict, Optional, Tuple

from sqznet_tf.compression import sharing
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats import sqz

FORMATS = ("sqz", "net")


@dataclasses.dataclass
class DistillConfig:
  """One codebook fine-tuning run.

  Attributes:
    data: folder of unlabelled photos (searched recursively; any class sub-folders are ignored).
    epochs: passes over the photos (one random crop and flip of each per pass).
    batch_size: photos per step.
    learning_rate: Adam step of the shared values, in units of each layer's weight scale (the
      root mean square of its non-zero weights), so one rate suits every layer.
    temperature: of the softened predictions the divergence is taken on (loss scaled by T^2).
    feature_weight: weight of feature matching: the squared error of every coded layer's output
      (relative to the teacher's mean square, averaged over the layers) added to the divergence.
    train_offsets: also train the biases of the coded layers and the batch norms' offsets (beta).
    augment: random crops (and horizontal flips) of the resized photo; off: the centre crop only.
    fisher_photos: weigh each weight's squared error in the k-means by its Fisher information
      (the teacher's, from this many of the photos): the codes start where they matter; 0: plain
      k-means.
    mixup: blend each photo with another of its batch (the teacher labels the blend).
    reassign: let the codes move too: each weight keeps a latent value (starting at the teacher's
      weight) that takes the kernel's gradient as if it were the weight (straight-through) and
      the weight takes the code of the shared value nearest to it after every step; zeros stay
      zeros. Off: every code fixed, only the shared values train.
    reassign_rate: Adam step of the latent values, in weight-scale units like `learning_rate`
      (None: `learning_rate`). The larger, the more codes move.
    work_dir: checkpoints, `distill.json` (settings and progress) and `distill_log.csv`.
    limit: use at most this many photos (the first in sorted order).
    seed: of the shuffling and augmentation.
  """
  data: str
  epochs: int = 8
  batch_size: int = 16
  learning_rate: float = 0.001
  temperature: float = 1.0
  train_offsets: bool = True
  feature_weight: float = 0.0
  augment: bool = True
  mixup: bool = False
  fisher_photos: int = 0
  reassign: bool = False
  reassign_rate: Optional[float] = None
  work_dir: str = "runs/compress/distill"
  limit: Optional[int] = None
  seed: int = 0

  def validate(self) -> None:
    if not self.data or not os.path.isdir(self.data):
      raise SqznetError(f"distillation data {self.data!r} is not a folder; expected a folder of photos "
                        "(labels are not needed; class sub-folders are searched too)")
    for name in ("epochs", "batch_size", "fisher_photos"):
      v = getattr(self, name)
      least = 1 if name == "batch_size" else 0
      if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise SqznetError(f"distill {name}={v!r} is not accepted; expected an integer >= {least}")
    if isinstance(self.feature_weight, bool) or not isinstance(self.feature_weight, (int, float)) \
        or self.feature_weight < 0:
      raise SqznetError(f"distill feature_weight={self.feature_weight!r} is not accepted; expected a number >= 0")
    for name in ("learning_rate", "temperature", "reassign_rate"):
      v = getattr(self, name)
      if v is None and name == "reassign_rate":
        continue
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise SqznetError(f"distill {name}={v!r} is not accepted; expected a number > 0")
    if self.reassign_rate is not None and not self.reassign:
      raise SqznetError(f"distill reassign_rate={self.reassign_rate!r} is not accepted without "
                        "reassign=True (--distill_reassign): the rate moves the codes, which stay fixed otherwise")
    if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1):
      raise SqznetError(f"distill limit={self.limit!r} is not accepted; expected a positive integer")

  def settings(self) -> dict:
    """What a resumed run must share with the one it continues."""
    d = dataclasses.asdict(self)
    for k in ("epochs", "work_dir"):
      d.pop(k)
    d["data"] = os.path.abspath(self.data)
    return d


@dataclasses.dataclass
class CompressConfig:
  """One compression run (the stages: see `sqznet_tf.compression.pipeline`).

  Attributes:
    model, overrides: registry name (default: the weights' own) and metaparameter overrides.
    weights: what to start from: any form `sqznet_tf.loading.load_model` reads.
    classes, input_size: of the model; default from the weights' metadata.
    prune, sparsity, keep_dense, prune_epochs: the pruning stage.
    cluster, bits, cluster_init, cluster_epochs: the weight-sharing stage.
    entropy, layout, index_bits: how the container codes each kernel.
    output, output_format: the compressed file ("sqz", or "net" for the release's format).
    train: base TrainConfig for the fine-tuning stages (data, batch size, learning rate...).
    work_dir: where fine-tuning runs keep checkpoints and logs, and compress.json records the run.
    int8_tflite: also write an int8 TFLite model of the result here (post-training quantization
      calibrated on the evaluation images, or quantization-aware training with `qat_epochs`).
  """
  model: Optional[str] = None
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
  int8_tflite: Optional[str] = None
  qat_epochs: int = 0
  distill: Optional[object] = None
  max_bytes: Optional[int] = None
  widths: Tuple[int, ...] = (3, 4, 5, 6, 7, 8)
  budget_photos: int = 64

  def validate(self, train_data: Optional[bool] = None) -> None:
    """Raises SqznetError on a bad value (fine-tuning without training data included).

    Args:
      train_data: whether fine-tuning data will be given (before `train` is set: sqznet-compress
        checks its flags before TensorFlow is imported); default: whether `train` is set.
    """
    has_train = self.train is not None if train_data is None else train_data
    sharing.check_bits(self.bits)
    sharing.check_init(self.cluster_init)
    for name in ("prune_epochs", "cluster_epochs"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise SqznetError(f"{name}={v!r} is not accepted; expected an integer >= 0")
    if (self.prune_epochs and self.prune) or (self.cluster_epochs and self.cluster):
      if not has_train:
        raise SqznetError("--prune_epochs/--cluster_epochs > 0 fine-tune the model: give --train_data")
    if isinstance(self.qat_epochs, bool) or not isinstance(self.qat_epochs, int) or self.qat_epochs < 0:
      raise SqznetError(f"qat_epochs={self.qat_epochs!r} is not accepted; expected an integer >= 0")
    if self.qat_epochs and not (has_train and self.int8_tflite):
      raise SqznetError("--qat_epochs trains an int8 TFLite model: give --train_data and --int8_tflite")
    if self.distill is not None or self.max_bytes is not None:
      if not self.cluster:
        raise SqznetError("--distill_data and --max_bytes act on weight sharing; drop --nocluster")
      if self.cluster_epochs:
        raise SqznetError("--cluster_epochs (training on labels with tfmot) and distillation or --max_bytes "
                          "are two ways of fitting the shared values; use one")
    if self.distill is not None:
      self.distill.validate()
    if self.max_bytes is not None:
      if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) or self.max_bytes < 1:
        raise SqznetError(f"max_bytes={self.max_bytes!r} is not accepted; expected a positive number of bytes")
      if self.distill is None:
        raise SqznetError("--max_bytes measures each layer's sensitivity on unlabelled photos: give --distill_data "
                          "(--distill_epochs=0 chooses the widths without training)")
      if self.output_format != "sqz" or not self.output:
        raise SqznetError("--max_bytes is a budget for the .sqz file: give --output=FILE.sqz")
      for w in self.widths:
        sharing.check_bits(w)
      if isinstance(self.budget_photos, bool) or not isinstance(self.budget_photos, int) or self.budget_photos < 1:
        raise SqznetError(f"budget_photos={self.budget_photos!r} is not accepted; expected a positive integer")
    if self.output_format not in FORMATS:
      raise SqznetError(f"output format {self.output_format!r} is not accepted; expected one of {', '.join(FORMATS)}")
    if self.layout not in sqz.LAYOUTS:
      raise SqznetError(f"layout {self.layout!r} is not accepted; expected one of {', '.join(sqz.LAYOUTS)}")
    if isinstance(self.index_bits, bool) or not isinstance(self.index_bits, int) or not 0 <= self.index_bits <= 8:
      raise SqznetError(f"index_bits={self.index_bits!r} is not accepted; expected 0 (per layer) to 8")
    if self.output_format == "net":
      if self.bits != 8 or not self.cluster:
        raise SqznetError("the .net (Deep Compression release) format holds 8-bit shared weights: use --bits=8 "
                          "with weight sharing on")
      if self.model not in (None, "squeezenet_v1_0_caffe", "squeezenet_v1_0") or self.overrides:
        raise SqznetError(f"the .net format holds SqueezeNet v1.0 only, not {self.model}; use --output_format=sqz")
