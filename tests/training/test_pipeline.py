"""Input pipelines: sources, splits, augmentation, unreadable files."""

import shutil

import numpy as np
import pytest

from sqznet_tf.data import pipeline
from sqznet_tf.data.pipeline import DataSpec
from sqznet_tf.errors import SqznetError


def test_embedded_digits_split():
  (xtr, ytr), (xte, yte) = pipeline.embedded_split(0)
  assert xtr.shape == (4500, 28, 28) and xte.shape == (500, 28, 28) and xtr.dtype == np.uint8
  assert np.bincount(yte).tolist() == [50] * 10 and np.bincount(ytr).tolist() == [450] * 10
  d = pipeline.make_datasets(DataSpec("embedded", image_size=32), batch_size=100)
  x, y = next(iter(d.train))
  assert x.shape == (100, 32, 32, 3) and y.shape == (100, 10)
  assert d.train_size == 4500 and d.val_size == 500 and d.num_classes == 10
  # Caffe preprocessing: BGR 0-255 minus (104, 117, 123); MNIST background is 0.
  assert float(x.numpy().min()) == pytest.approx(-123.0)


def test_seeded_augmentation_is_reproducible():
  spec = DataSpec("embedded", image_size=24, seed=3, deterministic=True)
  a = next(iter(pipeline.make_datasets(spec, 16).train))[0].numpy()
  b = next(iter(pipeline.make_datasets(spec, 16).train))[0].numpy()
  np.testing.assert_array_equal(a, b)
  c = next(iter(pipeline.make_datasets(DataSpec("embedded", image_size=24, seed=4, deterministic=True), 16).train))[0]
  assert not np.array_equal(a, c.numpy())


@pytest.fixture()
def tiny_tree(tmp_path):
  """Two CIFAR classes, 20 photos each, plus one file that is not an image."""
  from tests.conftest import shared_data_dir
  src = shared_data_dir("cifar10_subset", "train")
  root = tmp_path / "tree"
  for cls in ("cat", "dog"):
    (root / cls).mkdir(parents=True)
    for f in sorted((src / cls).iterdir())[:20]:
      shutil.copy(f, root / cls / f.name)
  (root / "dog" / "zz_broken.jpg").write_bytes(b"GARBAGE" * 10)
  return root


def test_unreadable_images_are_skipped_and_counted(tiny_tree):
  d = pipeline.make_datasets(DataSpec("folder", str(tiny_tree), val_split=0.25, image_size=32), batch_size=8)
  assert d.class_names == ["cat", "dog"] and d.num_classes == 2
  assert len(d.skipped) == 1 and d.skipped[0].endswith("zz_broken.jpg")
  assert d.train_size + d.val_size == 40 and d.val_size == 10
  assert sum(int(x.shape[0]) for x, _ in d.train) == 30
  # tf.data's autotuning model is off on every dataset (the end-of-fit stall, pipeline.dataset_options),
  # also once Keras repeats the training set.
  assert [ds.options().autotune.enabled for ds in (d.train, d.val, d.train.repeat())] == [False] * 3


def test_strict_data_stops_with_the_path(tiny_tree):
  with pytest.raises(SqznetError, match="unreadable image .*zz_broken.jpg"):
    pipeline.make_datasets(DataSpec("folder", str(tiny_tree), image_size=32, strict=True), batch_size=8)


def test_folder_errors(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(SqznetError, match="no class sub-folders|no images"):
    pipeline.make_datasets(DataSpec("folder", str(tmp_path / "empty")), batch_size=8)
  with pytest.raises(SqznetError, match="does not exist"):
    pipeline.make_datasets(DataSpec("folder", str(tmp_path / "nope")), batch_size=8)
  with pytest.raises(SqznetError, match="data source 'parquet' is not accepted"):
    DataSpec("parquet")


def test_tfrecord_labels_checked_before_training(tmp_path, tiny_tree):
  from sqznet_tf._keras import tf
  path = tmp_path / "train.tfrecord"
  with tf.io.TFRecordWriter(str(path)) as w:
    for i, f in enumerate(sorted((tiny_tree / "cat").iterdir())[:4]):
      label = 7 if i == 3 else 1
      feats = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f.read_bytes()])),
               "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
      w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
  with pytest.raises(SqznetError, match="label 7 .* outside the 3 classes"):
    pipeline.make_datasets(DataSpec("tfrecord", str(path), image_size=32), 2, num_classes=3)
  d = pipeline.make_datasets(DataSpec("tfrecord", str(path), image_size=32), 2, num_classes=8)
  assert d.train_size == 4 and next(iter(d.train))[0].shape == (2, 32, 32, 3)


def test_tfds_without_the_package_is_a_clear_error():
  try:
    import tensorflow_datasets  # noqa: F401  pylint: disable=unused-import
    pytest.skip("tensorflow-datasets is installed here")
  except ImportError:
    pass
  with pytest.raises(SqznetError, match="needs tensorflow-datasets"):
    pipeline.make_datasets(DataSpec("tfds", "mnist"), 8)


def test_large_tfrecords_are_not_counted(tmp_path, tiny_tree, monkeypatch):
  from sqznet_tf._keras import tf
  path = tmp_path / "train.tfrecord"
  with tf.io.TFRecordWriter(str(path)) as w:
    for f in sorted((tiny_tree / "cat").iterdir())[:3]:
      feats = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f.read_bytes()])),
               "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}
      w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
  monkeypatch.setattr(pipeline, "COUNT_LIMIT_BYTES", 10)  # as if the records were over 1 GB
  d = pipeline.make_datasets(DataSpec("tfrecord", str(path), image_size=32), 2, num_classes=2)
  # Batches of a non-deterministic pipeline may arrive in any order: look at all of them.
  assert d.train_size == 0 and sorted(tuple(x.shape) for x, _ in d.train) == [(1, 32, 32, 3), (2, 32, 32, 3)]
  from sqznet_tf.training.config import TrainConfig
  from sqznet_tf.training.train import train
  with pytest.raises(SqznetError, match="pass --steps_per_epoch"):
    train(TrainConfig(data=DataSpec("tfrecord", str(path), image_size=32), classes=2, model_dir=str(tmp_path / "m")))


def test_pad_crop_flip_takes_windows_of_the_reflected_image():
  """pad_crop_flip (the CIFAR recipe): each training image is a 32x32 window of the image with 4
  reflected pixels on every side, mirrored or not; evaluation sees the image itself (the cifar
  preset neither resizes nor crops)."""
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  spec = DataSpec("folder", "unused", image_size=32, preprocessing="cifar", augmentation="pad_crop_flip")
  assert pipeline.resize_size_for(spec) == 32
  train_map, eval_map = pipeline._augmenter(spec, 32)  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
  labels = tf.zeros([64], tf.int32)
  prep = spec.prep
  scale, mean, std = prep.scale, np.array(prep.mean), np.array(prep.std)
  out = train_map(tf.constant(images), labels, tf.constant([5, 7], tf.int64))[0].numpy()
  raw = np.rint((out * std + mean) / scale).astype(np.int64)  # back to 0-255
  padded = np.pad(images, [(0, 0), (4, 4), (4, 4), (0, 0)], mode="reflect").astype(np.int64)
  offsets = set()
  for i in range(64):
    found = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
             if np.array_equal(raw[i], (padded[i, dy:dy + 32, dx:dx + 32, :][:, ::-1] if flip
                                        else padded[i, dy:dy + 32, dx:dx + 32, :]))]
    assert found, f"image {i} is not a window of its padded image"
    offsets.add(found[0])
  assert len(offsets) > 20 and {f for _, _, f in offsets} == {False, True}  # windows and mirrors vary
  ev = eval_map(tf.constant(images), labels)[0].numpy()
  np.testing.assert_array_equal(np.rint((ev * std + mean) / scale).astype(np.int64), images)
