"""Codebook fine-tuning by distillation and code widths to a byte budget, on the shipped CIFAR-10 model."""

import itertools
import json

import numpy as np
import pytest

from sqznet_tf.compression import budget, sharing
from sqznet_tf.compression.config import CompressConfig, DistillConfig
from sqznet_tf.errors import SqznetError
from tests.conftest import class_subset, shared_data_dir


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """48 CIFAR-10 test photos (labels not used)."""
  return class_subset(shared_data_dir("cifar10_subset", "test"), tmp_path_factory.mktemp("distill") / "photos", 5)


def _shipped():
  from sqznet_tf import loading
  return loading.load_model("cifar10", model="squeezenet_v1_1_cifar")


def test_distillation_trains_only_the_shared_values_and_resumes(photos, tmp_path):
  from sqznet_tf.compression import cluster, distill, pipeline
  student, info = _shipped()
  teacher = pipeline._copy_model(student)  # pylint: disable=protected-access
  names = pipeline.coded_layers(student)
  shared = cluster.share_model(student, 3, "optimal", names)
  before = {l.name: [w.numpy().copy() for w in l.weights] for l in student.layers}
  prep = pipeline._preprocessing(info, student)  # pylint: disable=protected-access
  cfg = DistillConfig(data=str(photos), epochs=1, batch_size=16, work_dir=str(tmp_path / "d"))
  lines = []
  out = distill.distill(student, teacher, shared, cfg, prep, lines.append)
  cfg2 = DistillConfig(data=str(photos), epochs=3, batch_size=16, work_dir=str(tmp_path / "d"))
  out = distill.distill(student, teacher, shared, cfg2, prep, lines.append)
  assert any("resuming after epoch 1 of 3" in l for l in lines), lines
  log = (tmp_path / "d" / distill.LOG).read_text().splitlines()
  assert log[0].startswith("epoch,") and [l.split(",")[0] for l in log[1:]] == ["0", "1", "2", "3"]
  start, end = float(log[1].split(",")[3]), float(log[-1].split(",")[3])
  # 3-bit sharing moves the model off its teacher; the trained codebooks bring it back on the
  # photos they were trained on (measured: divergence 0.09 -> 0.04).
  assert end < 0.8 * start, log
  assert json.loads((tmp_path / "d" / distill.STATE).read_text())["epochs_done"] == 3
  for layer in student.layers:
    if layer.name in names:
      kernel = layer.kernel.numpy()
      codes = shared[layer.name].codes
      assert np.array_equal(out[layer.name].codes, codes)  # every code and every zero stays
      np.testing.assert_array_equal(kernel, out[layer.name].codebook[codes])
      assert np.array_equal(kernel == 0, codes == 0) and np.array_equal(kernel == 0, before[layer.name][0] == 0)
      assert not np.array_equal(out[layer.name].codebook, shared[layer.name].codebook)  # values trained
      # A value trained beside other layers' values stays a shared value: at most 2^3 - 1 non-zeros.
      assert np.unique(kernel[kernel != 0]).size <= 7
  # Another run's settings in the same folder are refused, naming what differs.
  with pytest.raises(SqznetError, match="other settings .*temperature"):
    distill.distill(student, teacher, shared, DistillConfig(data=str(photos), epochs=4, temperature=3.0,
                                                            work_dir=str(tmp_path / "d")), prep)


def test_reassigned_codes_move_keep_zeros_and_resume(photos, tmp_path):
  from sqznet_tf.compression import cluster, distill, pipeline
  student, info = _shipped()
  names = pipeline.coded_layers(student)
  for layer in student.layers:  # a third of each kernel pruned: those zeros must stay zeros
    if layer.name in names:
      k = layer.kernel.numpy()
      layer.kernel.assign(np.where(np.abs(k) < np.quantile(np.abs(k), 1 / 3), 0, k))
  teacher = pipeline._copy_model(student)  # pylint: disable=protected-access
  shared = cluster.share_model(student, 3, "optimal", names)
  prep = pipeline._preprocessing(info, student)  # pylint: disable=protected-access
  # The shipped weights are 6-bit values already, so the 3-bit codes' boundaries lie in gaps of at
  # least 0.03 weight scales: Adam's steps of about 0.001 (in those units) cross some in 96 steps.
  cfg = DistillConfig(data=str(photos), epochs=4, batch_size=2, reassign=True, work_dir=str(tmp_path / "d"))
  lines = []
  out = distill.distill(student, teacher, shared, cfg, prep, lines.append)
  assert any("codes moving" in l for l in lines), lines
  log = (tmp_path / "d" / distill.LOG).read_text().splitlines()
  assert float(log[-1].split(",")[3]) < 0.8 * float(log[1].split(",")[3]), log
  moved = 0
  for layer in student.layers:
    if layer.name in names:
      kernel, before = layer.kernel.numpy(), shared[layer.name].codes
      after = out[layer.name].codes
      np.testing.assert_array_equal(kernel, out[layer.name].codebook[after])
      assert np.array_equal(after == 0, before == 0) and np.mean(before == 0) > 0.3  # zeros stay, no new zero
      assert np.unique(kernel[kernel != 0]).size <= 7
      moved += int(np.sum(after != before))
  # Measured: 404 of the about 483,000 non-zero weights change code (none can with the codes fixed).
  assert moved >= 40, moved
  # Resuming restores the moved codes with the values: a finished run returns them unchanged.
  again = distill.distill(student, teacher, shared, cfg, prep)
  for name in names:
    np.testing.assert_array_equal(again[name].codes, out[name].codes)
    np.testing.assert_array_equal(again[name].codebook, out[name].codebook)


def test_logits_model_strips_the_softmax():
  from sqznet_tf.compression import distill
  from sqznet_tf.models import get_model
  m = get_model("squeezenet_v1_1", input_shape=(32, 32, 3), classes=5, weights=None)
  logits, is_logits = distill.logits_model(m)
  x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  assert is_logits
  np.testing.assert_allclose(np.exp(logits(x)) / np.exp(logits(x)).sum(-1, keepdims=True), m(x), rtol=1e-5, atol=1e-6)
  raw = get_model("squeezenet_v1_1", input_shape=(32, 32, 3), classes=5, weights=None, classifier_activation=None)
  assert distill.logits_model(raw) == (raw, True)


def _costs(rng, layers=4, widths=(3, 4, 5, 6)):
  out = []
  for i in range(layers):
    size = int(rng.integers(500, 3000))
    out.append(budget.LayerCosts(f"l{i}", {w: size * w // 8 + 40 for w in widths},
                                 {w: float(rng.uniform(0.5, 2)) / 2 ** w for w in widths}))
  return out


def test_choose_widths_is_the_exact_optimum():
  rng = np.random.default_rng(1)
  for _ in range(20):
    costs = _costs(rng)
    least, most = (sum(f(c.nbytes.values()) for c in costs) for f in (min, max))
    room = int(rng.integers(least, most + 1))
    chosen = budget.choose_widths(costs, room, units=100000)  # 1-byte units: exact
    best = min((sum(c.sensitivity[w] for c, w in zip(costs, ws)), ws)
               for ws in itertools.product(*[sorted(c.nbytes) for c in costs])
               if sum(c.nbytes[w] for c, w in zip(costs, ws)) <= room)
    assert sum(c.nbytes[chosen[c.name]] for c in costs) <= room
    assert sum(c.sensitivity[chosen[c.name]] for c in costs) == pytest.approx(best[0])
    coarse = budget.choose_widths(costs, room)  # coarse units never break the budget
    assert sum(c.nbytes[coarse[c.name]] for c in costs) <= room
  with pytest.raises(SqznetError, match="at least .* bytes at the narrowest widths"):
    budget.choose_widths(costs, least - 1)


def test_record_bytes_are_the_files_bytes():
  from sqznet_tf.formats import sqz
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(3, 3, 8, 16)).astype(np.float32) * (rng.uniform(size=(3, 3, 8, 16)) > 0.6)
  for bits in (3, 5, 8):
    s = sharing.share(kernel, bits)
    _, stats = sqz.encode([("a", 0, rng.normal(size=4).astype(np.float32)),
                           ("conv", 0, sqz.Coded(s.codebook, s.codes, bits))], {"x": 1})
    assert budget.record_bytes("conv", 0, s, bits) == stats[1].nbytes


def test_config_rejects_bad_distillation_settings(photos, tmp_path):
  d = DistillConfig(data=str(photos), work_dir=str(tmp_path))
  for cfg, message in [
      (CompressConfig(distill=DistillConfig(data=str(tmp_path / "none"))), "is not a folder"),
      (CompressConfig(distill=DistillConfig(data=str(photos), temperature=0)), "temperature=0 is not accepted"),
      (CompressConfig(distill=DistillConfig(data=str(photos), reassign=True, reassign_rate=-1.0)),
       "reassign_rate=-1.0 is not accepted"),
      (CompressConfig(distill=DistillConfig(data=str(photos), reassign_rate=0.01)),
       "reassign_rate=0.01 is not accepted without reassign=True"),
      (CompressConfig(max_bytes=1000, output="x.sqz"), "give --distill_data"),
      (CompressConfig(max_bytes=0, distill=d, output="x.sqz"), "max_bytes=0 is not accepted"),
      (CompressConfig(max_bytes=1000, distill=d), "give --output"),
      (CompressConfig(distill=d, cluster_epochs=1), "use one"),
      (CompressConfig(distill=d, cluster=False), "drop --nocluster")]:
    with pytest.raises(SqznetError, match=message):
      cfg.validate(train_data=True)


def test_augmented_batches_crop_flip_and_blend():
  from sqznet_tf.compression import distill
  from sqznet_tf.data.preprocessing import PRESETS
  prep = PRESETS["tf"].replace(crop_size=24, resize_size=28)
  images = np.random.default_rng(0).integers(0, 256, (10, 28, 28, 3), dtype=np.uint8)
  plain = [b.numpy() for b in distill.augmented(images, prep, 4, 0, augment=False)]
  assert [b.shape for b in plain] == [(4, 24, 24, 3), (4, 24, 24, 3), (2, 24, 24, 3)]
  centre = (images[:, 2:26, 2:26].astype(np.float32) / 127.5 - 1)
  assert all(any(np.allclose(x, c, atol=1e-5) for c in centre) for b in plain for x in b)  # shuffled centre crops
  mixed = np.concatenate([b.numpy() for b in distill.augmented(images, prep, 4, 0, augment=True, mixup=True)])
  assert mixed.shape == (10, 24, 24, 3) and -1 <= mixed.min() and mixed.max() <= 1
  assert not any(np.allclose(x, c, atol=1e-5) for x in mixed for c in centre)
  assert distill.augmented(images, prep, 4, 0).options().autotune.enabled is False  # pipeline.dataset_options


def test_importance_weighted_sharing_puts_centroids_where_it_matters():
  rng = np.random.default_rng(3)
  kernel = rng.normal(size=(64, 32)).astype(np.float32)
  plain = sharing.share(kernel, 3)
  important = np.zeros_like(kernel, dtype=np.float64)
  picked = np.argsort(np.abs(kernel).reshape(-1))[-3:]  # the three largest weights matter, the rest hardly
  important.reshape(-1)[picked] = 1.0
  weighted = sharing.share(kernel, 3, importance=important)
  err = lambda s: np.abs(s.kernel.reshape(-1)[picked] - kernel.reshape(-1)[picked]).max()  # noqa: E731
  # Seven values beside zero: the three weights that matter get (almost) their own.
  assert err(weighted) < 1e-3 and err(plain) > 0.05, (err(weighted), err(plain))
  assert np.array_equal(weighted.codes == 0, kernel == 0)
  with pytest.raises(SqznetError, match="importance must be"):
    sharing.share(kernel, 3, importance=-important)
