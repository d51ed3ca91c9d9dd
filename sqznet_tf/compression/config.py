"""What one `sqznet-compress` run does (its stages and outputs), checked without TensorFlow."""

import dataclasses
from typing import Dict, Optional, Tuple

from sqznet_tf.compression import sharing
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats import sqz

FORMATS = ("sqz", "net")


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
