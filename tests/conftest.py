"""Shared fixtures: one cache of built models for the whole session, and the shared data folder."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# Converted models for the batch-1 runtimes (sqznet_tf.runtimes) go to a folder of the session, not
# the user's ~/.cache; xdist workers and the binaries the tests run inherit it.
_RUNTIME_CACHE = None
if not os.environ.get("SQZNET_CACHE_DIR"):
  import tempfile  # pylint: disable=g-import-not-at-top
  _RUNTIME_CACHE = os.environ["SQZNET_CACHE_DIR"] = tempfile.mkdtemp(prefix="sqznet-test-runtime-cache-")


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


# REFERENCE.md section 7 / imagenet_sample/REFERENCE_ACCURACY.txt: an independent numpy Caffe
# forward pass (PIL decode, antialiased bilinear resize to 256x256, crop 227, conv10 pad 1) gives
# top-1 65.2%, top-5 86.4% (326 and 432 of 500).
REF_TOP1, REF_TOP5 = 0.652, 0.864


# The shared CIFAR-10 run: sqznet-train as a user runs it, started in the background when the session
# starts (by the xdist controller, or by pytest itself without xdist) so that no worker sits idle
# while it trains; the tests that use it wait for its exit status. Files that use `cifar_run`:
CIFAR_RUN_USERS = ("tests/training/test_train.py", "tests/tools/test_model_forms.py",
                   "tests/tools/test_compress.py")
CIFAR_RUN_ENV = "SQZNET_TEST_CIFAR_RUN"  # the run's folder, inherited by the xdist workers
CIFAR_RUN_FLAGS = ("--batch_norm", "--image_size=32", "--batch_size=64", "--epochs=4", "--learning_rate=0.04",
                   "--verbose=0")
_background = []


def _wants_cifar_run(config) -> bool:
  """Whether the selected paths include a file that uses the shared run (`-k` is not looked at)."""
  root = pathlib.Path(config.rootpath)
  for arg in config.args or ["tests"]:
    path = (pathlib.Path(config.invocation_params.dir) / arg.split("::")[0]).resolve()
    for user in CIFAR_RUN_USERS:
      target = (root / user).resolve()
      if target == path or path in target.parents:
        return True
  return False


def pytest_configure(config):
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False  # xdist keeps the order of pytest_collection_modifyitems
  import shlex  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  if hasattr(config, "workerinput") or os.environ.get(CIFAR_RUN_ENV) or not _wants_cifar_run(config):
    return
  root = pathlib.Path(os.environ.get("SQZNET_SHARED_DATA", REPO.parent / "shared" / "data")) / "cifar10_subset"
  if not (root / "train").is_dir() or not (root / "test").is_dir():
    return  # the fixture skips (or fails under SQZNET_REQUIRE_SHARED_DATA=1)
  work = pathlib.Path(tempfile.mkdtemp(prefix="sqznet-test-cifar-"))
  model_dir = work / "cifar_run"
  os.environ[CIFAR_RUN_ENV] = str(model_dir)
  cmd = [sys.executable, str(REPO / "tools" / "train.py"), f"--data={root / 'train'}", f"--val_data={root / 'test'}",
         f"--model_dir={model_dir}", *CIFAR_RUN_FLAGS]
  # The exit status goes to a file the workers can read, written (then renamed) once training exits.
  q = lambda p: shlex.quote(str(p))  # noqa: E731
  script = f"{shlex.join(cmd)} > {q(work / 'train.log')} 2>&1; echo $? > {q(work / 'rc.tmp')} && " \
           f"mv {q(work / 'rc.tmp')} {q(work / 'rc')}"
  proc = subprocess.Popen(["sh", "-c", script], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                          start_new_session=True)
  _background.append((proc, work))


# Seconds each test file took on the slower CPU (2-core AMD EPYC without AVX-512, 2026-12-05,
# `pytest -n 2 --dist loadfile`, compress and distillation after that day's changes). Used for the
# order only: the files are handed to the xdist workers longest first, so that the last ones to
# finish are short and neither worker waits long for the other at the end (xdist's own order, by
# number of tests, put the two longest single-test files last: 26 s of one worker idle). A file not
# listed counts as 5 s. The files that wait for the shared CIFAR-10 run do not go first.
FILE_SECONDS = {
    "tools/test_compress.py": 160, "tools/test_model_forms.py": 108, "tools/test_tune.py": 105,
    "tools/test_dsd_binary.py": 98, "training/test_train.py": 84, "compression/test_cluster_quantize_tflite.py": 78,
    "tools/test_robustness.py": 71, "tools/test_export.py": 69, "pruning/test_dsd.py": 65,
    "compression/test_distill_budget.py": 63, "export/test_server.py": 63, "tools/test_prune_channels.py": 59,
    "pruning/test_channels.py": 58, "models/test_builders.py": 38, "analysis/test_roofline.py": 37,
    "test_runtimes.py": 36, "tools/test_pretrained.py": 35, "search/test_space.py": 33, "training/test_options.py": 31,
    "test_keras_stack.py": 28, "pruning/test_sensitivity.py": 26, "test_evaluation.py": 25,
    "formats/test_hostile_files.py": 20, "export/test_serving.py": 15, "formats/test_net.py": 12,
    "tools/test_forkserver.py": 12, "compression/test_container.py": 12, "models/test_pointwise.py": 11,
    "test_loading.py": 8, "training/test_pipeline.py": 4, "test_inference.py": 3, "analysis/test_cost.py": 3,
    "test_structure.py": 2,
}


def file_order(files):
  """`files` (paths under tests/, as in node ids) longest first by FILE_SECONDS; no CIFAR_RUN_USERS file
  among the first two (the workers' first files, started while the shared run trains)."""
  key = lambda f: -FILE_SECONDS.get(f.split("/", 1)[-1], 5)  # noqa: E731
  order = sorted(files, key=key)
  first = [f for f in order if f not in CIFAR_RUN_USERS][:2]
  return first + [f for f in order if f not in first]


def pytest_collection_modifyitems(session, config, items):  # pylint: disable=unused-argument
  files = {}
  for item in items:
    files.setdefault(item.nodeid.split("::")[0], []).append(item)
  items[:] = [item for f in file_order(list(files)) for item in files[f]]


def pytest_collection_finish(session):  # pylint: disable=unused-argument
  """The test modules' imports (TensorFlow's ~300,000 objects) are never garbage: out of the
  collector's passes for the rest of the session (tests/tools/forkserver.py does the same)."""
  import gc  # pylint: disable=g-import-not-at-top
  gc.collect()
  gc.freeze()


def pytest_unconfigure(config):
  import shutil  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  for proc, work in _background:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGTERM)
      proc.wait()
    shutil.rmtree(work, ignore_errors=True)
  _background.clear()
  if _RUNTIME_CACHE and not hasattr(config, "workerinput"):  # made by this process, not inherited
    shutil.rmtree(_RUNTIME_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def cifar_run():
  """SqueezeNet v1.1 (batch norm) trained 4 epochs by sqznet-train on the real CIFAR-10 subset at 32 px.

  Returns its summary.json as a TrainResult. The run was started in the background when the session
  started (see pytest_configure); this waits for it (bounded) and fails with its log if it failed.
  """
  import json  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.train import TrainResult  # pylint: disable=g-import-not-at-top
  shared_data_dir("cifar10_subset", "train")  # skips (or fails) without the shared data
  shared_data_dir("cifar10_subset", "test")
  if not os.environ.get(CIFAR_RUN_ENV):
    pytest.fail(f"the shared CIFAR-10 run was not started: add the test's file to CIFAR_RUN_USERS in {__file__}")
  model_dir = pathlib.Path(os.environ[CIFAR_RUN_ENV])
  rc_file, deadline = model_dir.parent / "rc", time.monotonic() + 1200
  while not rc_file.exists():
    if time.monotonic() > deadline:
      pytest.fail(f"the shared CIFAR-10 run did not finish in 20 minutes: {model_dir.parent / 'train.log'}")
    time.sleep(0.5)
  log = (model_dir.parent / "train.log").read_text(encoding="utf-8", errors="replace")
  if rc_file.read_text().strip() != "0":
    pytest.fail(f"sqznet-train exited {rc_file.read_text().strip()}:\n{log[-3000:]}")
  summary = json.loads((model_dir / "summary.json").read_text(encoding="utf-8"))
  fields = TrainResult.__dataclass_fields__
  return TrainResult(**{k: v for k, v in summary.items() if k in fields})


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
