"""Channel dependency groups: a removable unit, zeroed, makes what reads it irrelevant.

For every registry network family (random weights, small inputs): zero a unit's filters, biases
and batch-norm entries, then overwrite the input slices the unit names in every layer that reads
it with large random values. If the mapping is right (offsets through the Fire concat, channels
tied by a bypass addition, a Flatten's period), the logits do not move; the controls show that the
same overwrite moves them when the unit is live, or when only one of two tied filters is zeroed.
"""

import numpy as np
import pytest

import sqznet_tf
from sqznet_tf.models import configs
from sqznet_tf.analysis.cost import analyze_model
from sqznet_tf.pruning.channel_select import CostModel
from sqznet_tf.pruning.channels import channel_units, shrink, width_overrides

NETWORKS = [("squeezenet_v1_0", {}), ("squeezenet_v1_0_simple_bypass", {}), ("squeezenet_v1_0_complex_bypass", {}),
            ("squeezenet_v1_1", {"batch_norm": True}), ("squeezenet_v1_1_simple_bypass", {"batch_norm": True}),
            ("squeezenet_v1_1_cifar", {}),
            # fc6/fc7 at 64 units: the same Flatten period and grouped convolutions, not 37 M weights in fc6
            ("alexnet", {"fc_units": 64}), ("alexnet_owt", {"fc_units": 64})]


SIZES = {"alexnet": 227, "alexnet_owt": 224}  # the classifier needs their 6x6 pool5 map


def _build(name, overrides):
  size = SIZES.get(name) or configs.min_input_size(configs.get_config(name, **overrides))
  model = sqznet_tf.get_model(name, classes=10, input_shape=(size, size, 3), classifier_activation=None,
                              **overrides)  # logits: a softmax could saturate and hide a change
  rng = np.random.default_rng(0)
  for layer in model.layers:  # batch norm away from the identity, so its entries matter
    if type(layer).__name__ == "BatchNormalization":
      gamma, beta, mean, var = (w.shape for w in layer.get_weights())
      layer.set_weights([rng.uniform(0.5, 1.5, gamma).astype("float32"), rng.normal(0, 0.2, beta).astype("float32"),
                         rng.normal(0, 0.1, mean).astype("float32"), rng.uniform(0.5, 1.5, var).astype("float32")])
  x = rng.uniform(-1, 1, (2, size, size, 3)).astype("float32")
  return model, x


def _zero(model, unit, filters=None):
  for name, j in unit.filters if filters is None else filters:
    weights = model.get_layer(name).get_weights()
    weights[0][..., j] = 0
    if len(weights) > 1:
      weights[1][j] = 0
    model.get_layer(name).set_weights(weights)
  zeroed = {layer for layer, _ in (unit.filters if filters is None else filters)}
  for name, c in unit.per_channel:
    if not any(name.startswith(layer) for layer in zeroed):
      continue  # the batch norm of a filter left live (named after its convolution)
    layer = model.get_layer(name)
    w = layer.get_weights()  # gamma, beta, moving mean, moving variance
    w[0][c], w[1][c] = 0, 0
    layer.set_weights(w)


def _scramble_inputs(model, unit, rng):
  for name, c, period in unit.inputs:
    weights = model.get_layer(name).get_weights()
    kernel = weights[0]
    if kernel.ndim == 4:
      kernel[:, :, c, :] = rng.normal(0, 10, kernel[:, :, c, :].shape)
    else:
      rows = slice(c, None, period) if period else slice(c, c + 1)
      kernel[rows] = rng.normal(0, 10, kernel[rows].shape)
    model.get_layer(name).set_weights(weights)


@pytest.mark.parametrize("name, overrides", NETWORKS, ids=[n for n, _ in NETWORKS])
def test_a_zeroed_unit_makes_its_readers_irrelevant_and_removing_it_keeps_the_logits(name, overrides):
  model, x = _build(name, overrides)
  units = channel_units(model)
  assert units, name
  rng = np.random.default_rng(1)
  tied = [u for u in units if len(u.filters) > 1]
  if "bypass" in name:
    assert tied, "a bypass addition ties channels of both its inputs"
  # Units spread over the network (and a tied one) whose readers matter (control: overwriting
  # their input slices moves the output); random weights leave some channels dead behind a ReLU.
  spread = units[::max(1, len(units) // 12)] + tied[::max(1, len(tied) // 4)]
  live = []
  for unit in spread:
    before = _snapshot(model, unit)
    _scramble_inputs(model, unit, rng)
    moved = not np.allclose(model.predict_on_batch(x), _predict_restored(model, before, x), rtol=0, atol=1e-6)
    _restore(model, before)
    if moved:
      live.append(unit)
  assert len(live) >= 3, (name, len(live), len(spread))
  if tied:
    assert any(len(u.filters) > 1 for u in live), "no live tied unit to test"
  for unit in live:
    assert unit.inputs, unit  # every removable unit is read by someone
    before = _snapshot(model, unit)
    _zero(model, unit)
    zeroed = model.predict_on_batch(x)
    _scramble_inputs(model, unit, rng)
    np.testing.assert_allclose(model.predict_on_batch(x), zeroed, rtol=1e-5, atol=1e-6, err_msg=str(unit))
    _restore(model, before)
  tied = [u for u in live if len(u.filters) > 1]
  if tied:
    # Control: zeroing one of two tied filters leaves the sum live (random weights may leave one
    # of them dead for these inputs: leaving either one live must move the output at least once).
    unit = tied[0]
    moved = []
    for kept in range(len(unit.filters)):
      before = _snapshot(model, unit)
      _zero(model, unit, filters=[f for i, f in enumerate(unit.filters) if i != kept])
      half = model.predict_on_batch(x)
      _scramble_inputs(model, unit, rng)
      moved.append(not np.allclose(model.predict_on_batch(x), half, rtol=0, atol=1e-6))
      _restore(model, before)
    assert any(moved), unit
  _check_removal(name, overrides, model, x, units)


def _check_removal(name, overrides, model, x, units):
  """Zeroed units removed: a smaller network of the same family (its widths as config data) with the
  same logits, whose parameters and MACs are what the cost model predicted and what the registry
  builds from the pruned config."""
  drop = list(range(1, len(units), 3))
  for i in drop:
    _zero(model, units[i])
  zeroed = model.predict_on_batch(x)
  config = configs.get_config(name, **overrides)
  pruned_config, pruned = shrink(model, config, units, drop)
  assert pruned.count_params() < model.count_params()
  np.testing.assert_allclose(pruned.predict_on_batch(x), zeroed, rtol=1e-4, atol=1e-5)
  cost = analyze_model(pruned)
  assert CostModel(model, units).cost(drop) == {"params": cost.params, "macs": cost.macs}
  rebuilt = sqznet_tf.get_model(name, classes=10, input_shape=model.input_shape[1:], classifier_activation=None,
                                **{**overrides, **width_overrides(pruned_config)})
  assert [w.shape for w in rebuilt.weights] == [w.shape for w in pruned.weights]
  assert analyze_model(rebuilt).macs == cost.macs


def _snapshot(model, unit):
  """The weights of the layers `unit` touches (whole-model copies of AlexNet are 240 MB each)."""
  names = {n for n, _ in unit.filters} | {n for n, _ in unit.per_channel} | {n for n, _, _ in unit.inputs}
  return {n: model.get_layer(n).get_weights() for n in names}


def _restore(model, snapshot):
  for name, weights in snapshot.items():
    model.get_layer(name).set_weights(weights)


def _predict_restored(model, snapshot, x):
  current = {n: model.get_layer(n).get_weights() for n in snapshot}
  _restore(model, snapshot)
  try:
    return model.predict_on_batch(x)
  finally:
    _restore(model, current)


def test_what_cannot_be_removed_alone_is_left_out():
  model, _ = _build("alexnet", {})
  names = {f[0] for u in channel_units(model) for f in u.filters}
  # conv1, conv2 feed LRN; conv2, conv4, conv5 are grouped and conv3 feeds a grouped conv; fc8 is
  # the classifier: only fc6 and fc7 units can go alone.
  assert names == {"fc6", "fc7"}, names
  model, _ = _build("squeezenet_v1_1", {})
  units = channel_units(model)
  names = {f[0] for u in units for f in u.filters}
  assert "conv10" not in names and "fire2_squeeze1x1" in names and "fire9_expand3x3" in names
  # Fire concat offsets: expand3x3 filter j of fire2 is input channel 64 + j of fire3's squeeze.
  unit = next(u for u in units if u.filters == [("fire2_expand3x3", 5)])
  assert ("fire3_squeeze1x1", 64 + 5, 0) in unit.inputs


def test_a_constant_channel_removed_moves_into_the_readers_bias():
  """A channel whose batch norm has scale 0 is the constant max(0, beta): removed with compensation,
  its readers' biases take it over exactly (here a 1x1 reader); without, the logits move."""
  model, x = _build("squeezenet_v1_1_cifar", {})
  units = channel_units(model)
  i = next(k for k, u in enumerate(units) if u.filters == [("fire3_expand1x1", 7)])
  assert [name for name, _, _ in units[i].inputs] == ["fire4_squeeze1x1"]
  bn = model.get_layer("fire3_expand1x1_bn")
  w = bn.get_weights()
  w[0][7], w[1][7] = 0.0, 0.7
  bn.set_weights(w)
  want = model.predict_on_batch(x)
  config = configs.get_config("squeezenet_v1_1_cifar")
  _, kept = shrink(model, config, units, [i], compensate=True)
  np.testing.assert_allclose(kept.predict_on_batch(x), want, rtol=1e-4, atol=1e-5)
  _, lost = shrink(model, config, units, [i], compensate=False)
  assert not np.allclose(lost.predict_on_batch(x), want, rtol=1e-4, atol=1e-5)
