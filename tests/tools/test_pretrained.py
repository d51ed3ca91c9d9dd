"""The CIFAR-10 model the package ships (`weights="cifar10"`), as a user runs it: offline, by name."""

import json
import os

from tests.conftest import shared_data_dir
from tests.tools import last_json, run_tool

# The shipped file scores 88.13% on the 3,000 test photos (2,644 of them; BENCHMARKS.md, "CIFAR-10
# recipe": 40 epochs with fire6-9 on 8x8, 6-bit .sqz). The evaluation is deterministic; the floor is
# the promise (at least 88%), 4 photos under the measured count, for differences between CPUs.
FLOOR = 0.88


def test_the_shipped_cifar10_model_keeps_its_measured_accuracy():
  test_dir = shared_data_dir("cifar10_subset", "test")
  r = run_tool("evaluate", "--model=squeezenet_v1_1_cifar", "--weights=cifar10", f"--data_dir={test_dir}",
               "--format=json")
  assert r.returncode == 0, r.stderr
  d = last_json(r.stdout)
  assert d["n"] == 3000 and d["skipped"] == 0 and d["preprocessing"]["mode"] == "cifar"
  assert d["top1"] >= FLOOR, d


def test_predict_names_the_class_of_a_cifar_photo():
  test_dir = shared_data_dir("cifar10_subset", "test")
  photos = [str(test_dir / c / "0000.jpg") for c in ("airplane", "ship", "truck")]
  r = run_tool("predict", "--weights=cifar10", "--top_k=1", "--format=json", *photos)
  assert r.returncode == 0, r.stderr
  tops = [p["top"][0] for p in last_json(r.stdout)["predictions"]]
  names = sorted(os.listdir(test_dir))
  assert all(t["label"] == names[t["class"]] for t in tops), tops
  r = run_tool("predict", "--weights=cifar10", photos[1])  # the table: the class name, no --labels
  assert r.returncode == 0 and "no --labels" not in r.stderr, r.stderr
  assert any(n in r.stdout for n in names), r.stdout


def test_the_library_builds_it_by_name():
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf import weights as weights_lib  # pylint: disable=g-import-not-at-top
  model = sqznet_tf.get_model("squeezenet_v1_1_cifar", weights="cifar10")
  info = weights_lib.weights_info(model)
  assert model.output_shape == (None, 10) and info.preprocessing.mode == "cifar"
  assert info.labels.split(",") == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                    "ship", "truck"]
  assert os.path.getsize(weights_lib.pretrained_path("cifar10")) < 600 * 1024
  json.dumps(info.to_dict())  # the metadata is plain data


def test_make_demo_lists_the_shipped_file():
  """`make demo` names the shipped file's path itself (no Python process just to print it)."""
  from sqznet_tf import weights as weights_lib  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  with open(os.path.join(root, "Makefile"), encoding="utf-8") as f:
    named = [line.split(":=", 1)[1].strip() for line in f if line.startswith("SHIPPED :=")]
  assert named and os.path.samefile(os.path.join(root, named[0]), weights_lib.pretrained_path("cifar10"))


def test_training_starts_from_the_shipped_model(tmp_path):
  """--init_weights=cifar10 (what make demo's DSD fine-tuning starts from): every tensor is the
  shipped one before the first step (learning rate 1e-9 for one step leaves them in place)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data.pipeline import DataSpec  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.config import TrainConfig  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.train import train  # pylint: disable=g-import-not-at-top
  config = TrainConfig(model="squeezenet_v1_1_cifar", data=DataSpec("embedded", image_size=32, augmentation="none"),
                       init_weights="cifar10", batch_size=8, epochs=1, steps_per_epoch=1, learning_rate=1e-9,
                       weight_decay=0.0, histogram_freq=0, save_model=False, verbose=0, model_dir=str(tmp_path / "run"))
  train(config)
  shipped = sqznet_tf.get_model("squeezenet_v1_1_cifar", weights="cifar10")
  trained = sqznet_tf.get_model("squeezenet_v1_1_cifar", classes=10, weights=str(tmp_path / "run" / "final.weights.h5"))
  for name in ("conv1", "fire5_expand3x3", "conv10"):
    np.testing.assert_allclose(trained.get_layer(name).get_weights()[0], shipped.get_layer(name).get_weights()[0],
                               atol=1e-6)
