"""The compiled forward pass that evaluation and prediction use."""

import numpy as np

from sqznet_tf._keras import keras
from sqznet_tf.inference import ConcatConv2D, Predictor, fold_batch_norm, predictor, split_concat


def test_predictor_matches_keras_at_any_batch_size(models):
  model = models.get("squeezenet_v1_1", 64, classes=10)
  run = Predictor(model)
  x = np.random.default_rng(0).uniform(-1, 1, (5, 64, 64, 3)).astype(np.float32)
  ref = model.predict(x, verbose=0)
  np.testing.assert_allclose(run(x), ref, atol=1e-5)
  np.testing.assert_allclose(run.predict_on_batch(x[:1]), ref[:1], atol=1e-5)
  np.testing.assert_allclose(run.predict(x, batch_size=2), ref, atol=1e-5)
  assert run.output_shape == model.output_shape and run.input_shape == model.input_shape
  assert run._fn.experimental_get_tracing_count() == 1  # pylint: disable=protected-access  # one trace for all batch sizes
  other = object()
  assert predictor(other) is other and isinstance(predictor(model), Predictor)


def _randomise_batch_norm(model, seed=0):
  """Batch-norm statistics and scales far from the identity, so that a wrong fold shows."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 2.0, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n),
                         rng.uniform(0.2, 3.0, n)])


def test_batch_norm_is_folded_into_the_convolutions():
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  model = sqznet_tf.get_model("squeezenet_v1_1_cifar", input_shape=(16, 16, 3), classes=10,
                              conv1_filters=8, fires=[[4, 8, 8]] * 8)
  _randomise_batch_norm(model)
  folded = fold_batch_norm(model)
  bns = [l.name for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) == 26 and not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
  assert len(folded.layers) == len(model.layers) - len(bns)
  assert folded.get_layer("fire2_expand3x3").use_bias and folded.get_layer("fire2_expand3x3").bias.shape == (8,)
  x = np.random.default_rng(1).uniform(-1, 1, (6, 16, 16, 3)).astype(np.float32)
  ref = model(x, training=False).numpy()
  np.testing.assert_allclose(folded(x, training=False).numpy(), ref, atol=1e-5)
  np.testing.assert_allclose(Predictor(model)(x), ref, atol=1e-5)
  # The original is untouched and still has its batch norms.
  assert model.get_layer("fire2_expand3x3_bn") is not None
  np.testing.assert_allclose(model(x, training=False).numpy(), ref)


def test_batch_norm_that_cannot_be_folded_stays():
  inputs = keras.Input((8, 8, 3))
  a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
  shared = keras.layers.BatchNormalization(name="after_shared")(a)  # `a` also feeds the addition
  b = keras.layers.Conv2D(4, 1, activation="relu", name="b")(inputs)
  after_relu = keras.layers.BatchNormalization(name="after_relu")(b)  # the conv's ReLU comes first
  c = keras.layers.Conv2D(4, 1, use_bias=False, name="c")(inputs)
  plain = keras.layers.BatchNormalization(name="plain")(c)  # foldable: no bias, the fold adds one
  out = keras.layers.Add()([shared, after_relu, plain, a])
  model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(out))
  _randomise_batch_norm(model, seed=2)
  folded = fold_batch_norm(model)
  names = {l.name for l in folded.layers}
  assert {"after_shared", "after_relu"} <= names and "plain" not in names and folded.get_layer("c").use_bias
  x = np.random.default_rng(3).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(folded(x).numpy(), model(x, training=False).numpy(), atol=1e-5)
  nothing = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
  assert fold_batch_norm(nothing) is nothing
  def batch_norm_ops(run):
    graph = run._fn.get_concrete_function().graph  # pylint: disable=protected-access
    return sum(op.type.startswith("FusedBatchNorm") for op in graph.get_operations())
  assert batch_norm_ops(Predictor(model, fold=False)) == 3 and batch_norm_ops(Predictor(model)) == 2


def test_inference_traces_pool_with_max_pool_v2_and_training_keeps_max_pool(models):
  """`Predictor(pool_v2=True)`'s traced function pools with MaxPoolV2 (faster at large batches on
  the AVX2 CPU, BENCHMARKS.md "Max pooling at inference"), `pool_v2=False`'s with MaxPool, the
  default as `max_pool_v2_pays` says for this CPU (x86 without AVX-512); the frozen form and every
  other trace keep MaxPool, and the model's layers are left as they were."""
  from sqznet_tf import reporting  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.inference import max_pool_v2_pays  # pylint: disable=g-import-not-at-top
  from sqznet_tf.models.layers import CeilMaxPool2D  # pylint: disable=g-import-not-at-top
  model = models.get("squeezenet_v1_0", 64, classes=10)  # its pools take the VALID and the SAME path
  x = np.random.default_rng(4).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
  run, plain = Predictor(model, pool_v2=True), Predictor(model, pool_v2=False)
  ref = model(x, training=False).numpy()
  np.testing.assert_allclose(run(x), ref, atol=1e-5)
  np.testing.assert_allclose(plain(x), ref, atol=1e-5)
  np.testing.assert_allclose(run.frozen()(x), ref, atol=1e-5)

  def pools(graph):
    return sorted(op.type for op in graph.get_operations() if op.type.startswith("MaxPool"))
  pooled = pools(run._fn.get_concrete_function().graph)  # pylint: disable=protected-access
  assert pooled and set(pooled) == {"MaxPoolV2"}, pooled
  assert set(pools(plain._fn.get_concrete_function().graph)) == {"MaxPool"}  # pylint: disable=protected-access
  assert set(pools(run._fn_frozen.get_concrete_function().graph)) == {"MaxPool"}  # pylint: disable=protected-access
  assert Predictor(model).pool_v2 is max_pool_v2_pays() is (reporting.X86 and not reporting.machine()["avx512"])
  assert not any("pool_op" in l.__dict__ for l in model.layers if isinstance(l, CeilMaxPool2D))
  step = tf.function(lambda t: model(t, training=True)).get_concrete_function(tf.TensorSpec(x.shape, tf.float32))
  assert set(pools(step.graph)) == {"MaxPool"}


def _ops(run, kind):
  return sum(op.type == kind for op in run._fn.get_concrete_function().graph.get_operations())  # pylint: disable=protected-access


def test_concats_read_only_by_convolutions_are_split_into_their_parts(models):
  """`split_concat`: each Fire's concat goes (its readers, through pools and dropout, take the two
  expand outputs apart); what reads it otherwise keeps it; the outputs stay the same."""
  model = models.get("squeezenet_v1_0", 64, classes=10)  # pools after fire4 and fire8 read concats
  split = split_concat(model)
  kinds = [type(l).__name__ for l in split.layers]
  assert "Concatenate" not in kinds and kinds.count("ConcatConv2D") == 8, kinds
  assert kinds.count("CeilMaxPool2D") == 5 and split.get_layer("pool4_part1") is not None
  assert list(split.get_layer("fire3_squeeze1x1").part_channels) == [64, 64]
  x = np.random.default_rng(5).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
  ref = model(x, training=False).numpy()
  np.testing.assert_allclose(split(x, training=False).numpy(), ref, atol=1e-5)
  run, plain = Predictor(model), Predictor(model, split=False)
  np.testing.assert_allclose(run(x), ref, atol=1e-5)
  np.testing.assert_allclose(run.frozen()(x), ref, atol=1e-5)
  assert _ops(run, "ConcatV2") == 0 and _ops(plain, "ConcatV2") == 8
  assert _ops(run, "Conv2D") == 26 + 8  # one more convolution per split reader

  # By hand: parts of 3 and 5 channels read by a 3x3 convolution (the kernel's input slices in
  # order), a concat of a split concat (flattened), and concats that must stay.
  inputs = keras.Input((8, 8, 2))
  a = keras.layers.Conv2D(3, 1, name="a")(inputs)
  b = keras.layers.Conv2D(5, 3, padding="same", name="b")(inputs)
  ab = keras.layers.Concatenate(name="ab")([a, b])
  abc = keras.layers.Concatenate(name="abc")([keras.layers.ReLU(name="r")(ab), inputs])
  y = keras.layers.Conv2D(4, 3, padding="same", name="y")(keras.layers.MaxPooling2D(2, name="p")(abc))
  kept = keras.layers.Concatenate(name="kept")([a, b])  # also read by the addition
  z = keras.layers.Add()([keras.layers.Conv2D(8, 1, name="z")(kept), kept])
  out = keras.layers.Concatenate(name="out")([keras.layers.GlobalAveragePooling2D()(y),
                                              keras.layers.GlobalAveragePooling2D()(z)])  # an output
  model = keras.Model(inputs, keras.layers.Softmax()(out))
  split = split_concat(model)
  assert isinstance(split.get_layer("y"), ConcatConv2D) and list(split.get_layer("y").part_channels) == [3, 5, 2]
  names = {l.name for l in split.layers}
  assert {"kept", "out"} <= names and not {"ab", "abc", "r", "p"} & names
  assert {"r_part0", "r_part1", "p_part0", "p_part2"} <= names
  x = np.random.default_rng(6).uniform(-1, 1, (2, 8, 8, 2)).astype(np.float32)
  np.testing.assert_allclose(split(x).numpy(), model(x).numpy(), atol=1e-5)
  nothing = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
  assert split_concat(nothing) is nothing

  class Halves(keras.layers.Layer):  # two outputs, no get_config: the model runs as it is
    def __init__(self, scale):
      super().__init__()
      self.scale = scale

    def call(self, t):
      return t[..., :1] * self.scale, t[..., 1:]
  h = Halves(2.0)(inputs)
  custom = keras.Model(inputs, keras.layers.Conv2D(2, 1)(keras.layers.Concatenate()(list(h))))
  assert split_concat(custom) is custom
  np.testing.assert_allclose(Predictor(custom)(x), custom(x).numpy(), atol=1e-6)
