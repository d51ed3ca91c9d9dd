"""The search space and the keras-tuner HyperModel: the registry's networks, clear errors."""

import pytest

from sqznet_tf.errors import SqznetError
from sqznet_tf.search import space as space_lib


def test_space_parsing_and_errors(tmp_path):
  s = space_lib.parse('{"squeeze_ratio": [0.125, 0.25], "pct3x3": {"min": 0.25, "max": 0.75, "step": 0.25}, '
                      '"base_e": {"min": 64, "max": 192, "step": 64}, "batch_norm": true}')
  assert s.searched == ["squeeze_ratio", "pct3x3", "base_e"] and s.fixed() == {"batch_norm": True}
  assert s.params["pct3x3"].kind == "float" and s.params["base_e"].kind == "int"
  f = tmp_path / "space.yaml"
  f.write_text("squeeze_ratio: [0.5, 1.0]\nfreq: 2\n")
  assert space_lib.parse(str(f)).to_dict() == {"squeeze_ratio": [0.5, 1.0], "freq": 2}
  for text, message in [("{}", "search space is empty"),
                        ('{"squeeze_ratio": 0.5, "batch_norm": true}', "search space is empty"),
                        ('{"squeeze_ratio": [0.25]}', "search space is empty"),
                        ('{"squeeze_ratio": []}', "empty list of values"),
                        ('{"width": [1, 2]}', "'width' is not a searchable hyperparameter"),
                        ('{"pct3x3": {"min": 0.7, "max": 0.2}}', "empty range"),
                        ('[1, 2]', "a search space is a mapping")]:
    with pytest.raises(SqznetError, match=message):
      space_lib.parse(text)


def test_impossible_networks_are_refused_before_search():
  # SR 0.001 gives fire2 (e = 128) 0 squeeze filters.
  s = space_lib.parse('{"squeeze_ratio": {"min": 0.001, "max": 0.5}}')
  with pytest.raises(SqznetError, match="impossible squeezenet_v1_0: squeeze_ratio=0.001 gives fire2 0 squeeze"):
    space_lib.check_buildable(s, "squeezenet_v1_0")
  s = space_lib.parse('{"pct3x3": [0.5, 0.999]}')  # 0.999 of 128 rounds to 128: no 1x1 expand filters
  with pytest.raises(SqznetError, match="pct3x3=0.999 gives fire2 0 expand 1x1 filters"):
    space_lib.check_buildable(s, "squeezenet_v1_0")
  space_lib.check_buildable(space_lib.parse(space_lib.SR_SWEEP), "squeezenet_v1_0")
  space_lib.check_buildable(space_lib.parse(space_lib.PCT3X3_SWEEP), "squeezenet_v1_0")


def test_hypermodel_builds_the_registry_networks():
  from sqznet_tf import analysis
  from sqznet_tf._keras import keras_tuner
  from sqznet_tf.search.tuner import Budget, SqueezeNetHyperModel
  kt = keras_tuner()
  hm = SqueezeNetHyperModel(space_lib.parse('{"squeeze_ratio": [0.125, 0.25]}'), "squeezenet_v1_0",
                            input_shape=(224, 224, 3), classes=1000)
  for sr in (0.125, 0.25):
    hp = kt.HyperParameters()
    hm.values(hp)
    hp.values["squeeze_ratio"] = sr
    model = hm.build(hp)
    assert len(model.optimizer.variables) == 1 + len(model.trainable_variables)  # slots made before fit's trace
    expected = analysis.analyze("squeezenet_v1_0", 224, squeeze_ratio=sr)
    assert model.count_params() == expected.params
    cost = hm.cost(hp, Budget(max_params=1_300_000))
    assert cost["params"] == expected.params and cost["macs"] == expected.macs
    if sr == 0.125:
      assert model.count_params() == 1_248_424  # squeezenet_v1_0 itself at the defaults
  assert Budget(max_params=1_300_000).check({"params": 1_248_424, "macs": 0, "bytes": 0}) is None
  assert "params 1,300,001 > 1,300,000" in Budget(max_params=1_300_000).check(
      {"params": 1_300_001, "macs": 0, "bytes": 0})


def test_every_tuner_runs_a_tiny_search(tmp_path):
  from sqznet_tf.data.pipeline import DataSpec, make_datasets
  from sqznet_tf.search import tuner as tuner_lib
  data = make_datasets(DataSpec("synthetic", image_size=24, synthetic_size=64), 16, 4)
  val = make_datasets(DataSpec("synthetic", image_size=24, synthetic_size=32, seed=1), 16, 4).train
  space = space_lib.parse('{"squeeze_ratio": [0.125, 0.25], "pct3x3": {"min": 0.25, "max": 0.75}, '
                          '"batch_norm": true}')
  hm = tuner_lib.SqueezeNetHyperModel(space, "squeezenet_v1_1", (24, 24, 3), 4)
  for name in ("hyperband", "bayesian"):  # random and grid: tests/tools/test_tune.py
    t = tuner_lib.make_tuner(name, hm, str(tmp_path), name, max_trials=2, max_epochs=2, overwrite=True,
                             budget=tuner_lib.Budget(max_params=10 ** 7))
    t.search(data.train.repeat(), validation_data=val, steps_per_epoch=2, epochs=1, verbose=0)
    rows = tuner_lib.trial_rows(t)
    # Accuracy over the 32 validation images: a whole number of them (k / 32), measured for every trial.
    assert rows and all(r.status == "COMPLETED" and r.val_accuracy is not None
                        and abs(r.val_accuracy * 32 - round(r.val_accuracy * 32)) < 1e-4 for r in rows), (name, rows)
    assert all(0.25 <= r.values["pct3x3"] <= 0.75 and r.params > 0 for r in rows)
  with pytest.raises(SqznetError, match="tuner 'annealing' is not accepted"):
    tuner_lib.make_tuner("annealing", hm, str(tmp_path))
