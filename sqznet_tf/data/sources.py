"""Labelled image sources for evaluation: class folders, flat WordNet-id folders, TFRecords.

Each source yields (id, label, encoded bytes). Images are decoded later, one at a time, so an
unreadable file can be skipped and counted instead of stopping the run. Folder layouts are
listed round-robin over the classes, so the first N images (`--limit`) cover every class.

Layouts:
  folders:  DATA_DIR/<class>/<image>; classes are the sorted folder names, or, when a synset
            file is given and the folders are WordNet ids, the synset file's order.
  flat:     DATA_DIR/nXXXXXXXX_anything.JPEG; the WordNet id prefix is mapped to a class through
            a synset file (`--labels`).
  tfrecord: ImageNet-style tf.train.Example records with `image/encoded` (JPEG/PNG bytes) and
            `image/class/label` (int64); files named *.tfrecord*, *.record* or train-/validation-
            shards, or one file or glob given directly.
"""

import dataclasses
import glob
import os
from typing import Iterator, List, Optional, Tuple

from sqznet_tf.errors import SqznetError
from sqznet_tf.formats.labels import Labels, wnid_of_filename

FORMATS = ("auto", "folders", "flat", "tfrecord")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TFRECORD_PATTERNS = ("*.tfrecord", "*.tfrecord-*", "*.tfrecords", "*.record", "*.record-*",
                     "train-*-of-*", "validation-*-of-*")


def _is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


@dataclasses.dataclass
class ImageSource:
  """A labelled set of encoded images.

  Attributes:
    layout: "folders", "flat" or "tfrecord".
    location: the folder or files read.
    class_names: name of each class index used by the labels (may be empty for TFRecords).
    files: (path, label) pairs for folder layouts; empty for TFRecords.
    tfrecords: record files for the tfrecord layout.
    label_offset: subtracted from TFRecord labels (1 for Inception-style ImageNet records).
  """
  layout: str
  location: str
  class_names: List[str]
  files: List[Tuple[str, int]] = dataclasses.field(default_factory=list)
  tfrecords: List[str] = dataclasses.field(default_factory=list)
  label_offset: int = 0

  def __len__(self) -> int:
    return len(self.files)

  @property
  def size_known(self) -> bool:
    return self.layout != "tfrecord"

  def __iter__(self) -> Iterator[Tuple[str, int, bytes]]:
    if self.layout != "tfrecord":
      for path, label in self.files:
        try:
          with open(path, "rb") as f:
            data = f.read()
        except OSError as e:
          data = e  # reported as a skipped example
        yield path, label, data
      return
    from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top  (TensorFlow only when images are decoded: binaries parse flags first)
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
    for path in self.tfrecords:
      try:
        for i, record in enumerate(tf.data.TFRecordDataset(path)):
          try:
            ex = tf.io.parse_single_example(record, spec)
          except tf.errors.InvalidArgumentError as e:
            raise SqznetError(f"{path}, record {i}: not an ImageNet-style example ({str(e).splitlines()[0][:120]}); "
                              "expected features image/encoded and image/class/label") from None
          yield f"{path}#{i}", int(ex["image/class/label"]) - self.label_offset, ex["image/encoded"].numpy()
      except tf.errors.DataLossError as e:
        raise SqznetError(f"{path}: corrupted TFRecord file ({str(e).splitlines()[0][:120]})") from None


def tfrecord_files(path: str) -> List[str]:
  if os.path.isdir(path):
    found = set()
    for pat in TFRECORD_PATTERNS:
      found.update(glob.glob(os.path.join(path, pat)))
    return sorted(found)
  if os.path.isfile(path):
    return [path]
  return sorted(glob.glob(path))


def detect_layout(path: str) -> str:
  """Guesses the layout of `path`; SqznetError when it cannot tell."""
  if not os.path.isdir(path):
    if tfrecord_files(path):
      return "tfrecord"
    raise SqznetError(f"data_dir {path!r} does not exist")
  entries = sorted(os.listdir(path))
  subdirs = [e for e in entries if os.path.isdir(os.path.join(path, e)) and not e.startswith(".")]
  images = [e for e in entries if _is_image(e)]
  if subdirs and any(any(_is_image(f) for f in os.listdir(os.path.join(path, d))) for d in subdirs):
    return "folders"
  if images and any(wnid_of_filename(e) for e in images):
    return "flat"
  if tfrecord_files(path):
    return "tfrecord"
  if not entries or (not images and not subdirs):
    raise SqznetError(f"no images found in {path!r} (looked for {', '.join(IMAGE_EXTENSIONS)} files, "
                      "class sub-folders and TFRecords)")
  raise SqznetError(f"cannot tell the layout of {path!r}: no class sub-folders with images, no files "
                    "named nXXXXXXXX_*, no TFRecords; pass --data_format")


def resolve_source(data: str, data_format: str = "auto"):
  """(source, path) of a DataSpec for a data argument (embedded, synthetic, tfds:NAME, a folder or
  TFRecords) and a layout (auto, folders or tfrecord)."""
  if data in ("embedded", "synthetic"):
    return data, None
  if data.startswith("tfds:"):
    return "tfds", data[len("tfds:"):]
  if data_format == "flat":
    raise SqznetError("--data_format=flat is for evaluation; training reads class folders or TFRecords")
  if data_format != "auto":
    return {"folders": "folder"}.get(data_format, data_format), data
  if tfrecord_files(data):
    return "tfrecord", data
  if not os.path.exists(data):
    raise SqznetError(f"--data {data!r} does not exist (expected embedded, synthetic, tfds:NAME, an "
                      "image folder or TFRecords)")
  return "folder", data


def interleave_classes(files: List[Tuple[str, int]]) -> List[Tuple[str, int]]:
  """(path, label) pairs reordered round-robin over the classes, each class keeping its own order.

  A listing sorted by class would make "the first N images" (--limit) the first class or two;
  interleaved, any prefix covers the classes evenly.
  """
  by_class = {}
  for path, label in files:
    by_class.setdefault(label, []).append((path, label))
  queues = [by_class[k] for k in sorted(by_class)]
  out = []
  for i in range(max(len(q) for q in queues)):
    out.extend(q[i] for q in queues if i < len(q))
  return out


def open_source(path: str, data_format: str = "auto", labels: Optional[Labels] = None,
                label_offset: int = 0) -> ImageSource:
  """Lists a labelled image source (see the module docstring for the layouts)."""
  if data_format not in FORMATS:
    raise SqznetError(f"data_format={data_format!r} is not accepted; expected one of {', '.join(FORMATS)}")
  path = os.fspath(path)
  layout = detect_layout(path) if data_format == "auto" else data_format
  if layout != "tfrecord" and not os.path.isdir(path):
    raise SqznetError(f"data_dir {path!r} is not a folder (needed for data_format={layout})")

  if layout == "folders":
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))
    if not classes:
      raise SqznetError(f"no class sub-folders in {path!r} (data_format=folders expects DATA_DIR/<class>/<image>)")
    if labels is not None and labels.wnids and all(wnid_of_filename(c) == c for c in classes):
      index = labels.index_of_wnid()
      missing = [c for c in classes if c not in index]
      if missing:
        raise SqznetError(f"synset file {labels.source!r} does not cover folder {missing[0]!r} "
                          f"({len(missing)} folders not covered)")
      class_index = {c: index[c] for c in classes}
      class_names = list(labels.names)
    else:
      class_index = {c: i for i, c in enumerate(classes)}
      class_names = classes
    files = [(os.path.join(path, c, f), class_index[c]) for c in classes
             for f in sorted(os.listdir(os.path.join(path, c))) if _is_image(f)]
    if not files:
      raise SqznetError(f"no images found in the class folders of {path!r}")
    return ImageSource("folders", path, class_names, files=interleave_classes(files))

  if layout == "flat":
    if labels is None or not labels.wnids:
      raise SqznetError(f"{path!r} holds files named by WordNet id; pass a synset file with --labels "
                        "(lines 'nXXXXXXXX name', line i = class i) to map them to classes")
    index = labels.index_of_wnid()
    files = []
    for f in sorted(os.listdir(path)):
      if not _is_image(f):
        continue
      wnid = wnid_of_filename(f)
      if wnid is None:
        raise SqznetError(f"file {f!r} in {path!r} does not start with a WordNet id (nXXXXXXXX_...)")
      if wnid not in index:
        raise SqznetError(f"synset file {labels.source!r} does not cover {wnid} (file {f!r})")
      files.append((os.path.join(path, f), index[wnid]))
    if not files:
      raise SqznetError(f"no images found in {path!r}")
    return ImageSource("flat", path, list(labels.names), files=interleave_classes(files))

  records = tfrecord_files(path)
  if not records:
    raise SqznetError(f"no TFRecord files found at {path!r} (looked for {', '.join(TFRECORD_PATTERNS)})")
  return ImageSource("tfrecord", path, list(labels.names) if labels else [], tfrecords=records,
                     label_offset=label_offset)
