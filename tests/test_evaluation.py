"""Evaluation of the real pretrained SqueezeNet on the 500 sample photos, and the data sources."""

import os
import shutil

import pytest

from sqznet_tf import evaluation
from sqznet_tf.data import preprocessing as P
from sqznet_tf.data import sources
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats import labels as labels_lib
from tests.conftest import REF_TOP1, REF_TOP5



@pytest.fixture(scope="module")
def labels(synsets):
  return labels_lib.read_labels(synsets)


@pytest.fixture(scope="module")
def sample(sample_dir, labels):
  return sources.open_source(sample_dir, labels=labels)


def test_sample_source(sample, labels):
  assert sample.layout == "flat" and len(sample) == 500 and len(labels) == 1000
  path, label = sample.files[0]
  assert os.path.basename(path).startswith("n01440764") and label == 0  # tench is class 0


def test_pretrained_accuracy_matches_reference(pretrained, sample):
  # PIL's decoder here; TF's decoder (the binaries' default) on the same 500 photos is held by
  # tests/tools/test_compress.py::test_six_bit_release_is_under_470_kib_within_a_point, whose
  # sqznet-compress run scores the loaded release with it (one evaluation of the 500 photos each).
  r = evaluation.evaluate(pretrained, sample, P.Preprocessor(P.PRESETS["caffe"], "pil"), progress=False)
  assert r.n == 500 and not r.skipped
  assert abs(r.top1 - REF_TOP1) <= 0.01, r.top1
  assert abs(r.top5 - REF_TOP5) <= 0.015, r.top5


@pytest.fixture()
def small_folders(tmp_path, sample_dir):
  """Three classes as sub-folders (WordNet ids), two photos each, plus one broken image."""
  root = tmp_path / "folders"
  picks = {"n02123597": "n02123597_Siamese_cat.JPEG", "n01440764": "n01440764_tench.JPEG",
           "n02124075": "n02124075_Egyptian_cat.JPEG"}
  for wnid, f in picks.items():
    os.makedirs(root / wnid)
    shutil.copy(sample_dir / f, root / wnid / "a.JPEG")
  (root / "n01440764" / "broken.JPEG").write_bytes(b"not a jpeg at all")
  (root / "n01440764" / "notes.txt").write_text("ignored: not an image name")
  return root


def test_class_folders_with_synsets_and_a_broken_image(pretrained, small_folders, labels):
  src = sources.open_source(small_folders, labels=labels)
  assert src.layout == "folders" and len(src) == 4
  r = evaluation.evaluate(pretrained, src, P.Preprocessor(P.PRESETS["caffe"]), batch_size=2,
                          per_class=True, progress=False)
  assert r.n == 3 and len(r.skipped) == 1 and r.skipped[0][0].endswith("broken.JPEG")
  assert "not a decodable image" in r.skipped[0][1]
  assert r.top1 == 1.0  # Siamese cat, tench and Egyptian cat are each classified right (measured)
  assert sorted(r.per_class) == [0, 284, 285]
  d = r.to_dict(src.class_names)
  assert d["skipped"] == 1 and d["per_class"][1]["name"].startswith("Siamese cat")


def _write_records(path, items):
  from sqznet_tf._keras import tf
  with tf.io.TFRecordWriter(str(path)) as w:
    for data, label in items:
      feats = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
               "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
      w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())


def test_tfrecords(pretrained, tmp_path, sample_dir):
  cat, tench = (sample_dir / "n02123597_Siamese_cat.JPEG").read_bytes(), (sample_dir / "n01440764_tench.JPEG").read_bytes()
  _write_records(tmp_path / "val.tfrecord", [(cat, 285), (tench, 1)])  # 1-based, as in Inception records
  src = sources.open_source(str(tmp_path), label_offset=1)
  assert src.layout == "tfrecord"
  prep = P.Preprocessor(P.PRESETS["caffe"])
  r = evaluation.evaluate(pretrained, src, prep, progress=False)
  assert r.n == 2 and r.top1 == 1.0
  r0 = evaluation.evaluate(pretrained, sources.open_source(str(tmp_path)), prep, progress=False)
  assert r0.top1 == 0.0  # without the offset every label is one off
  bad = tmp_path / "bad"
  bad.mkdir()
  _write_records(bad / "x.tfrecord", [(tench, 1000)])
  with pytest.raises(SqznetError, match="label 1000 is outside the model's 1000 classes"):
    evaluation.evaluate(pretrained, sources.open_source(str(bad)), prep, progress=False)


def test_first_images_cover_every_class(tmp_path, sample):
  for c, n in (("a", 3), ("b", 1), ("c", 2)):
    (tmp_path / c).mkdir()
    for i in range(n):
      (tmp_path / c / f"{i}.png").write_bytes(b"")
  src = sources.open_source(tmp_path)
  order = [(os.path.basename(os.path.dirname(p)) + os.path.basename(p), l) for p, l in src.files]
  assert order == [("a0.png", 0), ("b0.png", 1), ("c0.png", 2), ("a1.png", 0), ("c1.png", 2), ("a2.png", 0)]
  labels = [l for _, l in sample.files]  # flat ImageNet files, named by WordNet id: the same
  assert len(set(labels[:100])) == 100


def test_source_errors(tmp_path, labels, sample_dir):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(SqznetError, match="no images found in"):
    sources.open_source(empty)
  flat = tmp_path / "flat"
  flat.mkdir()
  shutil.copy(sample_dir / "n01440764_tench.JPEG", flat / "n09999999_unknown.JPEG")
  with pytest.raises(SqznetError, match="does not cover n09999999 .file 'n09999999_unknown.JPEG'"):
    sources.open_source(flat, labels=labels)
  with pytest.raises(SqznetError, match="pass a synset file with --labels"):
    sources.open_source(flat)
  with pytest.raises(SqznetError, match="does not exist"):
    sources.open_source(tmp_path / "missing")


def test_label_file_errors(tmp_path):
  bad = tmp_path / "bad.txt"
  bad.write_text("n01440764 tench\nrubbish line\n")
  with pytest.raises(SqznetError, match="line 2: 'rubbish line' does not start with a WordNet id"):
    labels_lib.read_labels(bad)
  (tmp_path / "empty.txt").write_text("\n")
  with pytest.raises(SqznetError, match="is empty"):
    labels_lib.read_labels(tmp_path / "empty.txt")


def test_predict_files(pretrained, sample_dir, labels, tmp_path):
  out = evaluation.predict_files(pretrained, [str(sample_dir / "n02123597_Siamese_cat.JPEG")],
                                 P.Preprocessor(P.PRESETS["caffe"]), labels, top_k=3)
  top = out[0]["top"]
  assert top[0]["label"] == "Siamese cat" and top[0]["probability"] > 0.5
  assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
  bad = tmp_path / "x.jpg"
  bad.write_bytes(b"\x00" * 10)
  with pytest.raises(SqznetError, match="x.jpg: not a decodable image"):
    evaluation.predict_files(pretrained, [str(bad)], P.Preprocessor(P.PRESETS["caffe"]), labels)
