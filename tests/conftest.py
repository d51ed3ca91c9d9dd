"""Shared fixtures: one cache of built models for the whole session, and the shared data folder."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def shared_data_dir(*parts) -> pathlib.Path:
  """Path under the shared data folder; skips (or fails under SQZNET_REQUIRE_SHARED_DATA=1).

  The folder is $SQZNET_SHARED_DATA, else ../shared/data beside the repository.
  """
  root = pathlib.Path(os.environ.get("SQZNET_SHARED_DATA", REPO.parent / "shared" / "data"))
  path = root.joinpath(*parts)
  if not path.exists():
    msg = f"shared data {path} not found (set SQZNET_SHARED_DATA or place ../shared/data)"
    if os.environ.get("SQZNET_REQUIRE_SHARED_DATA") == "1":
      pytest.fail(msg + "; required because SQZNET_REQUIRE_SHARED_DATA=1")
    pytest.skip(msg)
  return path


class ModelCache:
  """Builds each (name, input size, options) once per test session."""

  def __init__(self):
    self._models = {}

  def get(self, name, size=None, **kwargs):
    import sqznet_tf  # pylint: disable=g-import-not-at-top
    key = (name, size, tuple(sorted(kwargs.items())))
    if key not in self._models:
      args = dict(kwargs)
      if size is not None:
        args["input_shape"] = (size, size, 3)
      self._models[key] = sqznet_tf.get_model(name, **args)
    return self._models[key]


@pytest.fixture(scope="session")
def models():
  return ModelCache()


@pytest.fixture(scope="session")
def release_path():
  """The Deep Compression release file in ../shared/data."""
  return shared_data_dir("squeezenet_v1_0_deep_compression", "compressed_SqueezeNet.net")


@pytest.fixture(scope="session")
def sample_dir():
  """The 500 ImageNet sample photos (flat folder, nXXXXXXXX_label.JPEG)."""
  return shared_data_dir("imagenet_sample", "images")


@pytest.fixture(scope="session")
def synsets():
  return shared_data_dir("imagenet_sample", "synset_words.txt")


@pytest.fixture(scope="session")
def pretrained(models, release_path):
  """squeezenet_v1_0_caffe with the release weights, built once per session."""
  return models.get("squeezenet_v1_0_caffe", 227, weights=str(release_path))


@pytest.fixture(scope="session")
def cifar_run(tmp_path_factory):
  """SqueezeNet v1.1 (batch norm) trained 4 epochs on the real CIFAR-10 subset at 32 px.

  Trained once per test run: under pytest-xdist (`make test` runs two workers) the first worker
  that asks trains it under a file lock in the run's shared temporary folder, the other reads it.
  """
  import dataclasses  # pylint: disable=g-import-not-at-top
  import fcntl  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data.pipeline import DataSpec  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.config import TrainConfig  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.train import TrainResult, train  # pylint: disable=g-import-not-at-top
  train_dir = shared_data_dir("cifar10_subset", "train")
  test_dir = shared_data_dir("cifar10_subset", "test")
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # shared by the workers of this run
  model_dir = root / "cifar_run"
  with open(root / "cifar_run.lock", "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    done = root / "cifar_run.json"
    if done.exists():
      return TrainResult(**json.loads(done.read_text(encoding="utf-8")))
    config = TrainConfig(model="squeezenet_v1_1", overrides={"batch_norm": True},
                         data=DataSpec("folder", str(train_dir), val_path=str(test_dir), image_size=32),
                         batch_size=64, epochs=4, learning_rate=0.04, model_dir=str(model_dir), verbose=0)
    result = train(config)
    done.write_text(json.dumps(dataclasses.asdict(result)), encoding="utf-8")
    return result


def assert_figure(path, min_size=(200, 150), min_colours=3):
  """A PNG that is a picture: big enough and not blank (more than `min_colours` colours drawn)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as img:
    assert img.format == "PNG" and img.width >= min_size[0] and img.height >= min_size[1], (path, img.size)
    colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) >= min_colours, (path, colours[:5] if colours else None)


def class_subset(source, dest, per_class: int):
  """A folder of links to the first `per_class` images of each class folder of `source` (fast and
  small: for fine-tuning steps that never see more than that many photos)."""
  dest = pathlib.Path(dest)
  for cls in sorted(p for p in pathlib.Path(source).iterdir() if p.is_dir()):
    (dest / cls.name).mkdir(parents=True, exist_ok=True)
    for img in sorted(cls.iterdir())[:per_class]:
      os.symlink(img, dest / cls.name / img.name)
  return dest


def photos_apart(a: float, b: float, n: int) -> int:
  """How many photos of `n` two accuracies differ by, counted exactly (0.44 - 0.42 is 2 photos of 100,
  not 0.020000000000000018 of them)."""
  return abs(round(a * n) - round(b * n))
