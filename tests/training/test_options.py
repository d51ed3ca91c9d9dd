"""Each documented training option takes effect (one short run or one call is enough to show it).

--optimizer=adam|adamw, --lr_schedule=cosine, --warmup_epochs, --label_smoothing, --dropout,
--mixed_precision, --augmentation=random_resized_crop, --init_weights.
"""

import dataclasses
import math

import numpy as np
import pytest

from sqznet_tf.data.pipeline import DataSpec, make_datasets
from sqznet_tf.training import schedules
from sqznet_tf.training.config import TrainConfig

TINY = DataSpec(source="synthetic", image_size=24, val_split=0.0)


def _config(tmp_path, **kw):
  return TrainConfig(model="squeezenet_v1_1", overrides={"batch_norm": True}, data=TINY, classes=4, batch_size=8,
                     epochs=1, steps_per_epoch=2, histogram_freq=0, save_model=False, verbose=0, model_dir=str(tmp_path),
                     **kw)


@pytest.mark.parametrize("name, cls", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW")])
def test_optimizer_flag_picks_the_class(name, cls, tmp_path):
  from sqznet_tf.training import train  # pylint: disable=g-import-not-at-top
  opt = train._optimizer(_config(tmp_path, optimizer=name), 0.01)  # pylint: disable=protected-access
  assert type(opt).__name__ == cls
  if name == "adamw":
    assert math.isclose(float(opt.weight_decay), 2e-4)  # the decoupled decay is --weight_decay


def test_cosine_schedule_and_warm_up_values():
  cos = schedules.make_schedule("cosine", 0.1, total_steps=100)
  assert math.isclose(float(cos(0)), 0.1, rel_tol=1e-6)
  assert math.isclose(float(cos(50)), 0.05, rel_tol=1e-5)  # half way down a cosine
  assert float(cos(100)) < 1e-6
  warm = schedules.make_schedule("poly", 0.1, total_steps=110, warmup_steps=10)
  assert float(warm(0)) == 0.0 and math.isclose(float(warm(5)), 0.05, rel_tol=1e-6)
  assert math.isclose(float(warm(10)), 0.1, rel_tol=1e-6) and float(warm(60)) < 0.1


def test_one_run_with_every_other_option(tmp_path, release_path):
  """adamw + cosine + warm-up + label smoothing + dropout + mixed precision + random resized crops,
  started from the release's conv1..fire9 (a 4-class classifier starts fresh)."""
  from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
  from sqznet_tf.formats import net  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.train import train  # pylint: disable=g-import-not-at-top
  cfg = dataclasses.replace(
      _config(tmp_path, optimizer="adamw", lr_schedule="cosine", warmup_epochs=0.5, label_smoothing=0.1,
              dropout=0.2, mixed_precision="mixed_bfloat16", init_weights=str(release_path)),
      model="squeezenet_v1_0_caffe", overrides={}, learning_rate=1e-9,
      data=dataclasses.replace(TINY, image_size=64, augmentation="random_resized_crop"))
  result = train(cfg)
  model = result.model
  try:
    assert type(model.optimizer).__name__ == "AdamW"
    assert model.loss.get_config()["label_smoothing"] == 0.1
    assert model.get_layer("drop9").rate == 0.2
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    # Learning rate 1e-9 for two steps: conv1 is still the release's (init_weights took effect).
    release = net.read(release_path).by_name()["conv1"].keras_kernel
    np.testing.assert_allclose(model.get_layer("conv1").get_weights()[0], release, atol=1e-5)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert result.epochs_run == 1


def test_steps_per_execution_reaches_fit_and_the_pruning_phase_keeps_one(tmp_path):
  """--steps_per_execution goes into compile (5 steps in groups of 3: the last group is cut to the
  epoch); a pruning phase (tfmot counts its step per batch) runs one step per call whatever was asked."""
  from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
  from sqznet_tf.pruning import dsd, prune  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.train import train  # pylint: disable=g-import-not-at-top
  plain = train(dataclasses.replace(_config(tmp_path / "plain", steps_per_execution=3), steps_per_epoch=5))
  assert int(plain.model._steps_per_execution.numpy()) == 3  # pylint: disable=protected-access
  assert plain.epochs_run == 1 and int(plain.model.optimizer.iterations.numpy()) == 5
  seen = []

  class Probe(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
      seen.append(int(self.model._steps_per_execution.numpy()))  # pylint: disable=protected-access
  train(dataclasses.replace(_config(tmp_path / "sparse", steps_per_execution=3), steps_per_epoch=5),
        wrap=dsd.sparse_wrapper(0.5, ("conv1",)), unwrap=prune.strip,
        extra_callbacks=lambda out_dir: prune.pruning_callbacks() + [Probe()])
  assert seen == [1]


def test_random_resized_crop_changes_the_view():
  """The same images in the same order (same seed), without and with random resized crops: same
  labels, other pixels; and the crops are reproducible for a seed."""
  def first_batch(augmentation):
    spec = DataSpec(source="embedded", image_size=24, val_split=0.0, augmentation=augmentation, seed=1,
                    deterministic=True)
    x, y = next(iter(make_datasets(spec, batch_size=16).train))
    return x.numpy(), y.numpy()
  plain, labels = first_batch("none")
  cropped, labels_cropped = first_batch("random_resized_crop")
  again, _ = first_batch("random_resized_crop")
  assert cropped.shape == (16, 24, 24, 3)
  np.testing.assert_array_equal(labels, labels_cropped)
  assert not np.array_equal(plain, cropped)
  np.testing.assert_array_equal(cropped, again)


def test_the_optimizer_slots_are_made_before_the_first_trace():
  """sqznet_tf.training.optimizers.build_slots (train(), the tuner's models, QAT): Keras's train
  function is traced once. Without it the first trace makes the momenta and tf.function traces
  again (two traces here: the control below)."""
  from sqznet_tf import get_model  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training import optimizers  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).uniform(size=(4, 24, 24, 3)).astype("float32")
  y = keras.utils.to_categorical(np.arange(4) % 3, 3)
  traces = {}
  for built in (True, False):
    model = get_model("squeezenet_v1_1", classes=3, input_shape=(24, 24, 3))
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "categorical_crossentropy")
    if built:
      optimizers.build_slots(model)
      assert len(model.optimizer.variables) == 1 + len(model.trainable_variables)  # iterations + a momentum each
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    traces[built] = model.train_function.experimental_get_tracing_count()
  assert traces == {True: 1, False: 2}, traces
