"""What training data is and how it is prepared: `DataSpec`, plain data (no TensorFlow).

The tf.data pipelines that read it are `sqznet_tf.data.pipeline`; keeping the spec apart lets a
binary check its data flags, and a training config be built and validated, without importing
TensorFlow (a bad flag is answered in a tenth of a second).
"""

import dataclasses
from typing import Optional

from sqznet_tf.data import preprocessing as prep_lib
from sqznet_tf.errors import SqznetError

SOURCES = ("folder", "tfrecord", "tfds", "embedded", "synthetic")
AUGMENTATIONS = ("crop_flip", "pad_crop_flip", "random_resized_crop", "none")
PAD = 4  # pixels of reflected border around each side for pad_crop_flip (the CIFAR recipe)


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Where training data comes from and how it is prepared.

  Attributes:
    source: one of SOURCES.
    path: folder, TFRecord file/glob/folder, or TFDS name (unused for embedded/synthetic).
    val_path: separate validation data of the same source kind; None splits `val_split` off train.
    val_split: share of the training data held out for validation when there is no val_path.
    image_size: side of the network input (pixels).
    preprocessing: normalisation preset name (caffe, torch, tf).
    augmentation: crop_flip (paper: a random crop of the resized image and a mirror),
      pad_crop_flip (CIFAR: the image with 4 reflected pixels on each side, cropped back to its
      size at random, and a mirror), random_resized_crop, or none.
    seed: shuffle and augmentation seed.
    deterministic: keep element order fixed under parallel map (slower).
    cache_bytes: cache decoded, resized images in memory when they take at most this many bytes.
    strict: stop on the first unreadable image instead of skipping it.
    label_offset: subtracted from TFRecord labels (1 for 1-based ImageNet records).
    synthetic_size: examples per epoch of the synthetic source.
    tfds_data_dir: data_dir for TFDS.
  """
  source: str = "embedded"
  path: Optional[str] = None
  val_path: Optional[str] = None
  val_split: float = 0.1
  image_size: int = 32
  preprocessing: str = "caffe"
  augmentation: str = "crop_flip"
  seed: int = 0
  deterministic: bool = False
  cache_bytes: int = 2 << 30
  strict: bool = False
  label_offset: int = 0
  synthetic_size: int = 2048
  tfds_data_dir: Optional[str] = None

  def __post_init__(self):
    if self.source not in SOURCES:
      raise SqznetError(f"data source {self.source!r} is not accepted; expected one of {', '.join(SOURCES)}")
    if self.augmentation not in AUGMENTATIONS:
      raise SqznetError(f"augmentation={self.augmentation!r} is not accepted; expected one of "
                        f"{', '.join(AUGMENTATIONS)}")
    if not 0 <= self.val_split < 1:
      raise SqznetError(f"val_split={self.val_split!r} is not accepted; expected a fraction in [0, 1)")
    if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 8:
      raise SqznetError(f"image_size={self.image_size!r} is not accepted; expected an integer >= 8")
    if self.source in ("folder", "tfrecord", "tfds") and not self.path:
      raise SqznetError(f"data source {self.source!r} needs a path (--data)")

  @property
  def prep(self) -> prep_lib.Preprocessing:
    return prep_lib.get_preprocessing(self.preprocessing, crop_size=self.image_size)
