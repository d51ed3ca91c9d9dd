"""1x1 convolutions as matrix products (models/pointwise.py, train()'s --pointwise_matmul)."""

import dataclasses

import numpy as np

from sqznet_tf import get_model
from sqznet_tf._keras import keras, tf
from sqznet_tf.models import pointwise
from sqznet_tf.training.config import TrainConfig
from sqznet_tf.data.pipeline import DataSpec


def _ops(fn, x):
  graph = fn.get_concrete_function(tf.TensorSpec(x.shape, tf.float32)).graph
  types = [op.type for op in graph.get_operations()]
  return types.count("Conv2D"), types.count("MatMul")


def _forward_and_gradients(model, x, y):
  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      loss = keras.losses.categorical_crossentropy(y, model(x, training=True))
    return loss, tape.gradient(loss, model.trainable_variables)
  return step


def test_the_same_numbers_through_matrix_products_and_convolutions_again_afterwards():
  model = get_model("squeezenet_v1_1", input_shape=(32, 32, 3), classes=10, dropout=0.0)
  layers = pointwise.pointwise_layers(model)
  # 8 Fire modules x (squeeze1x1, expand1x1) + conv10; conv1 (3x3, stride 2) and the expand3x3 are not
  assert len(layers) == 17
  assert {l.name for l in layers} >= {"fire2_squeeze1x1", "fire9_expand1x1", "conv10"}
  assert not any("expand3x3" in l.name for l in layers)
  rng = np.random.default_rng(0)
  x = tf.constant(rng.standard_normal((4, 32, 32, 3)), tf.float32)
  y = tf.one_hot([1, 2, 3, 4], 10)
  conv_loss, conv_grads = _forward_and_gradients(model, x, y)(x)
  with pointwise.pointwise_as_matmul(model) as n:
    assert n == 17
    fn = _forward_and_gradients(model, x, y)
    mm_loss, mm_grads = fn(x)
    assert _ops(tf.function(lambda t: model(t, training=False)), x) == (9, 17)
  np.testing.assert_allclose(mm_loss.numpy(), conv_loss.numpy(), rtol=1e-5)
  for a, b, v in zip(mm_grads, conv_grads, model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5 * float(tf.reduce_max(tf.abs(b))),
                               err_msg=v.name)
  # afterwards: the layers convolve again (and the config never changed)
  assert not any("convolution_op" in l.__dict__ for l in layers)
  assert _ops(tf.function(lambda t: model(t, training=False)), x) == (26, 0)
  assert all(type(l) is keras.layers.Conv2D for l in layers)  # pylint: disable=unidiomatic-typecheck


def test_layers_inside_tfmot_wrappers_are_found():
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  model = get_model("squeezenet_v1_1", input_shape=(32, 32, 3), classes=10)
  pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
  assert len(pointwise.pointwise_layers(pruned)) == 17


def test_train_runs_the_matrix_products_and_trains_the_same_weights(tmp_path, monkeypatch):
  from sqznet_tf.training.train import train  # pylint: disable=g-import-not-at-top
  calls = []
  op = pointwise._matmul_op  # pylint: disable=protected-access

  def counted(inputs, kernel):
    calls.append(kernel.shape)
    return op(inputs, kernel)
  monkeypatch.setattr(pointwise, "_matmul_op", counted)
  # deterministic: the same first batch in both runs. Without it the parallel map may hand over
  # its second batch first when the CPU is loaded (1 run of 6 under two busy loops, 2026-12-05:
  # conv1's kernel then differed by 1.3e-4 after the step).
  base = TrainConfig(model="squeezenet_v1_1",
                     data=DataSpec(source="synthetic", image_size=24, val_split=0.0, deterministic=True),
                     classes=4, batch_size=8, epochs=1, steps_per_epoch=1, dropout=0.0, histogram_freq=0,
                     save_model=False, verbose=0)
  # One step: its update is the learning rate times gradients that agree to round-off. Over several
  # steps from random weights on random photos the two runs drift apart chaotically (measured: 1e-7
  # after one step, up to O(1) after three at the default learning rate with batch norm).
  weights = {}
  for on in (True, False):
    before = len(calls)
    result = train(dataclasses.replace(base, pointwise_matmul=on, model_dir=str(tmp_path / str(on))))
    assert (len(calls) > before) == on  # traced through the matrix products only when asked
    weights[on] = result.model.get_weights()
    assert not any("convolution_op" in l.__dict__ for l in pointwise.pointwise_layers(result.model))
  assert len(weights[True]) == len(weights[False]) > 0
  for a, b in zip(weights[True], weights[False]):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * float(np.abs(b).max()))
