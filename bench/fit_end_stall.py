"""How long Keras `fit` takes to return after its last step, with tf.data's autotuning model on/off.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

With the autotuning model on (tf.data's default), the iterator's destructor can wait for the
model's thread, which optimises at 10 ms * (2^k - 1) after the first batch (10.23 s, 20.47 s,
40.95 s, 81.9 s, then every 60 s): a `fit` then ends at the next of those times instead of after
its last step. `sqznet_tf.data.pipeline.dataset_options` turns the model off for every dataset of
the package. Each fit here creates a new iterator over the same in-memory batch, as
`train()` does over its pipeline; the squeezenet_v1_1_cifar model of the demo trains on it.

  python bench/fit_end_stall.py --steps=20 --repeats=3
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 20, "Training steps per fit.")
flags.DEFINE_integer("repeats", 3, "Fits per setting.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_string("model", "squeezenet_v1_1_cifar", "Registered model.")
flags.DEFINE_integer("image_size", 32, "Image size (pixels).")


def main(_):
  import numpy as np
  from sqznet_tf._keras import keras, tf
  from sqznet_tf.data import pipeline
  from sqznet_tf.models import build, get_config, pointwise
  from sqznet_tf.training import optimizers

  rng = np.random.default_rng(0)
  x = tf.constant(rng.uniform(-1, 1, (FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size, 3)).astype("float32"))
  y = tf.one_hot(rng.integers(0, 10, FLAGS.batch_size), 10)
  rows = []
  for autotune in (True, False):
    keras.backend.clear_session()
    model = build(get_config(FLAGS.model), input_shape=(FLAGS.image_size, FLAGS.image_size, 3), classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="categorical_crossentropy")
    optimizers.build_slots(model)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    if not autotune:
      ds = ds.with_options(pipeline.dataset_options())

    class LastStep(keras.callbacks.Callback):
      def on_train_batch_end(self, batch, logs=None):
        self.t = time.perf_counter()

    with pointwise.pointwise_as_matmul(model):
      model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # traces
      for r in range(FLAGS.repeats):
        last = LastStep()
        start = time.perf_counter()
        model.fit(ds, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0, callbacks=[last])
        end = time.perf_counter()
        rows.append(("on" if autotune else "off", r + 1, last.t - start, end - last.t))
        print(f"autotune {rows[-1][0]:3s} fit {r + 1}: {FLAGS.steps} steps in {last.t - start:6.2f} s, "
              f"returned {end - last.t:6.2f} s after the last step", flush=True)
  print(f"\n| autotuning model | fit | {FLAGS.steps} steps (s) | last step to return (s) |\n|---|---|---|---|")
  for on, r, steps_s, tail_s in rows:
    print(f"| {on} | {r} | {steps_s:.2f} | {tail_s:.2f} |")


if __name__ == "__main__":
  app.run(main)
