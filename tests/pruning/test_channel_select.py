"""Criteria, budgets and batch-norm recalibration of channel pruning on a small batch-norm SqueezeNet
(random weights)."""

import numpy as np
import pytest

import sqznet_tf
from sqznet_tf.errors import SqznetError
from sqznet_tf.pruning import channel_select as cs
from sqznet_tf.pruning.channels import channel_units


@pytest.fixture(scope="module")
def net():
  model = sqznet_tf.get_model("squeezenet_v1_1_cifar", classes=10, input_shape=(16, 16, 3))
  units = channel_units(model)
  return model, units, cs.CostModel(model, units)


def test_each_criterion_ranks_what_it_measures(net):
  model, units, _ = net
  i = next(k for k, u in enumerate(units) if u.filters == [("fire4_expand3x3", 3)])
  j = next(k for k, u in enumerate(units) if u.filters == [("fire4_expand3x3", 4)])
  conv, bn = model.get_layer("fire4_expand3x3"), model.get_layer("fire4_expand3x3_bn")
  w = conv.get_weights()
  w[0][..., 3] *= 0.01  # filter 3: tiny weights
  conv.set_weights(w)
  g = bn.get_weights()
  g[0][4] = 0.001  # channel 4: tiny batch-norm scale
  bn.set_weights(g)
  l1, l2, scale = (cs.scores(model, units, c) for c in ("l1", "l2", "bn_scale"))
  same_layer = [k for k, u in enumerate(units) if u.filters[0][0] == "fire4_expand3x3"]
  assert min(same_layer, key=lambda k: l1[k]) == i and min(same_layer, key=lambda k: l2[k]) == i
  assert min(same_layer, key=lambda k: scale[k]) == j
  rng = np.random.default_rng(0)
  batches = [(rng.uniform(-1, 1, (4, 16, 16, 3)).astype("float32"), np.eye(10, dtype="float32")[rng.integers(0, 10, 4)])
             for _ in range(2)]
  taylor = cs.scores(model, units, "taylor", batches)
  assert taylor.shape == (len(units),) and np.all(taylor >= 0) and np.count_nonzero(taylor) > len(units) // 2
  norm = cs.normalise(units, l1)
  assert np.isclose(np.mean(norm[same_layer]), 1.0)


def test_bn_scale_needs_batch_norm_and_taylor_needs_data():
  model = sqznet_tf.get_model("squeezenet_v1_1", classes=10, input_shape=(32, 32, 3))
  units = channel_units(model)
  with pytest.raises(SqznetError, match="bn_scale needs batch norm"):
    cs.scores(model, units, "bn_scale")
  with pytest.raises(SqznetError, match="taylor needs training data"):
    cs.scores(model, units, "taylor")
  with pytest.raises(SqznetError, match="criterion='l3' is not accepted"):
    cs.scores(model, units, "l3")


@pytest.mark.parametrize("mode", cs.MODES)
@pytest.mark.parametrize("metric", cs.METRICS)
def test_budgets_meet_the_target_and_keep_a_floor(net, mode, metric):
  model, units, cost = net
  full = cost.cost([])[metric]
  target = cs.resolve_target(0.4, metric, full)
  score = cs.normalise(units, cs.scores(model, units, "l1"))
  drop = cs.select(units, score, cost, metric, target, mode=mode, min_keep=0.1)
  assert cost.cost(drop)[metric] <= target
  per_layer = {}
  for k, u in enumerate(units):
    per_layer.setdefault(u.filters[0][0], []).append(k in drop)
  assert all(sum(1 for d in v if not d) >= max(1, int(np.ceil(0.1 * len(v)))) for v in per_layer.values())
  if mode == "uniform":  # the same share of every layer, to within one unit
    shares = [sum(v) / len(v) for v in per_layer.values() if len(v) >= 20]
    assert max(shares) - min(shares) <= 0.1, shares
  else:  # the fewest: one unit fewer misses the target
    ranked = sorted(drop, key=lambda k: (score[k], k))
    assert cost.cost(ranked[:-1])[metric] > target


@pytest.mark.parametrize("mode", cs.MODES)
def test_rounded_widths(net, mode):
  """round_to=8: every layer keeps a multiple of 8 channels (or all of them), and the target holds."""
  model, units, cost = net
  target = cs.resolve_target(0.5, "macs", cost.cost([])["macs"])
  drop = set(cs.select(units, cs.scores(model, units, "l2"), cost, "macs", target, mode=mode, round_to=8))
  assert cost.cost(drop)["macs"] <= target
  kept = {}
  for k, u in enumerate(units):
    kept.setdefault(u.filters[0][0], []).append(k not in drop)
  assert all(sum(v) % 8 == 0 for v in kept.values()), {k: sum(v) for k, v in kept.items()}
  assert sum(not all(v) for v in kept.values()) >= 5  # channels went from several layers, rounded
  with pytest.raises(SqznetError, match="round_to=0 is not accepted"):
    cs.select(units, cs.scores(model, units, "l2"), cost, "macs", target, round_to=0)


def test_targets_out_of_range_are_refused(net):
  model, units, cost = net
  full = cost.cost([])["macs"]
  for bad in (0, -1, 1.0, full, 2 * full):
    with pytest.raises(SqznetError, match="is not accepted"):
      cs.resolve_target(bad, "macs", full)
  assert cs.resolve_target(0.5, "macs", full) == round(full / 2) and cs.resolve_target(1000, "macs", full) == 1000
  with pytest.raises(SqznetError, match="below the smallest network"):
    cs.select(units, cs.scores(model, units, "l1"), cost, "macs", 1000, min_keep=0.1)


def test_batch_norm_recalibration_averages_the_batch_statistics():
  from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
  from sqznet_tf.pruning.channel_prune import recalibrate_batch_norm  # pylint: disable=g-import-not-at-top
  model = sqznet_tf.get_model("squeezenet_v1_1_cifar", classes=10, input_shape=(16, 16, 3))
  bn = model.get_layer("conv1_bn")
  bn.set_weights([w + 5 for w in bn.get_weights()[:2]] + [np.full_like(w, 7.0) for w in bn.get_weights()[2:]])
  rng = np.random.default_rng(0)
  batches = [(rng.uniform(-1, 1, (8, 16, 16, 3)).astype("float32"), None) for _ in range(3)]
  conv1 = keras.Model(model.input, model.get_layer("conv1").output)
  means = [conv1(x).numpy().mean(axis=(0, 1, 2)) for x, _ in batches]
  rate = model.get_layer("drop9").rate
  recalibrate_batch_norm(model, batches)
  np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
  assert bn.momentum == 0.9 and model.get_layer("drop9").rate == rate  # restored
