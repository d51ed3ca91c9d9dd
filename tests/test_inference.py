"""The compiled forward pass that evaluation and prediction use."""

import numpy as np

from sqznet_tf.inference import Predictor, predictor


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
