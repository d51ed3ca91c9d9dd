"""sqznet_tf side of bench/vs_torchvision.py (runs in the project's .venv).

Inference modes: "function" (the model called in a tf.function with a fixed input signature,
what sqznet_tf.inference.Predictor does), "predict_on_batch" and "predict" (Keras' own).
Training modes: "fit" (Keras fit on an in-memory dataset, per-step times from a callback) and
"step" (a tf.function with GradientTape and the optimizer, the loop torchvision users write).
Threads: intra-op and inter-op pools set from --threads / --inter_threads before TF starts.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _protocol  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--inter_threads", type=int, default=0, help="0: TensorFlow's default")
  args = parser.parse_args()
  import numpy as np  # pylint: disable=g-import-not-at-top
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import keras, tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  if args.inter_threads:
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
  rng = np.random.default_rng(0)

  cache = {}

  def build(name, size, weights=None):
    key = (name, size, weights)
    if key not in cache:
      cache[key] = sqznet_tf.get_model(name, input_shape=(size, size, 3), classes=1000, weights=weights)
    return cache[key]

  def function(m, size):
    key = ("function", id(m))
    if key not in cache:
      cache[key] = tf.function(lambda t: m(t, training=False), input_signature=[tf.TensorSpec([None, size, size, 3])])
    return cache[key]

  def infer(model, batch, size, iters, mode="function", weights=None):
    m = build(model, size, weights)
    x = tf.constant(rng.standard_normal((batch, size, size, 3), dtype=np.float32))
    if mode == "function":
      fn = function(m, size)
      call = lambda: fn(x).numpy()  # noqa: E731
    elif mode == "predict_on_batch":
      call = lambda: m.predict_on_batch(x)  # noqa: E731
    else:
      call = lambda: m.predict(x, batch_size=batch, verbose=0)  # noqa: E731
    return {"seconds": _protocol.timed(call, iters)}

  def train(model, batch, size, iters, mode="fit"):
    key = ("train", model, batch, size, mode)
    if key in cache:  # a later repetition: the model is built and traced already
      m, step, ds = cache[key]
    else:
      m = sqznet_tf.get_model(model, input_shape=(size, size, 3), classes=1000)
      x = rng.standard_normal((batch, size, size, 3), dtype=np.float32)
      y = keras.utils.to_categorical(rng.integers(0, 1000, batch), 1000)
      opt = keras.optimizers.SGD(0.001, momentum=0.9)
      loss_fn = keras.losses.CategoricalCrossentropy()
      xt, yt = tf.constant(x), tf.constant(y)

      @tf.function
      def step():
        with tf.GradientTape() as tape:
          loss = loss_fn(yt, m(xt, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, m.trainable_variables), m.trainable_variables))
        return loss

      m.compile(optimizer=opt, loss=loss_fn)
      ds = tf.data.Dataset.from_tensors((x, y)).repeat()
      cache[key] = (m, step, ds)
    if mode == "step":
      return {"seconds": _protocol.timed(lambda: step().numpy(), iters)}
    times = []

    class Clock(keras.callbacks.Callback):
      def on_train_batch_begin(self, b, logs=None):
        self.t = time.perf_counter()

      def on_train_batch_end(self, b, logs=None):
        times.append(time.perf_counter() - self.t)

    m.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace and warm up
    m.fit(ds, steps_per_epoch=iters, epochs=1, verbose=0, callbacks=[Clock()])
    return {"seconds": times}

  def matmul(n, iters):
    a = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    b = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    fn = tf.function(tf.linalg.matmul)
    return {"seconds": _protocol.timed(lambda: fn(a, b).numpy(), iters)}

  def flatbuffer(name, kind, weights=None, sparse=False, photos=None):
    key = ("tflite", name, kind, weights, sparse)
    if key not in cache:
      from sqznet_tf.data import preprocessing  # pylint: disable=g-import-not-at-top
      from sqznet_tf.export import portable  # pylint: disable=g-import-not-at-top
      m = build(name, 227 if name.endswith("_caffe") else 224, weights)
      rep = None
      if kind == "int8":
        prep = preprocessing.with_crop(preprocessing.PRESETS["caffe"], int(m.input_shape[1]))
        rep = portable.representative_images(photos, prep, 100)
      cache[key] = portable.tflite(m, kind, rep, sparse=sparse)
    return cache[key]

  def tflite(model, kind, iters, weights=None, sparse=False, xnnpack=True, photos=None):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # pylint: disable=g-import-not-at-top
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_content=flatbuffer(model, kind, weights, sparse, photos), num_threads=args.threads,
                     experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], rng.standard_normal(inp["shape"], dtype=np.float32))
    return {"seconds": _protocol.timed(it.invoke, iters)}

  def onnx(model, iters, weights=None):
    import onnxruntime  # pylint: disable=g-import-not-at-top
    from sqznet_tf.export import portable  # pylint: disable=g-import-not-at-top
    m = sqznet_tf.get_model(model, input_shape=(224, 224, 3), classes=1000, weights=weights)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(portable.onnx(m), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = rng.standard_normal((1, 224, 224, 3), dtype=np.float32)
    return {"seconds": _protocol.timed(lambda: session.run(None, {name: x}), iters)}

  def versions():
    return {"tensorflow": tf.__version__, "tf_keras": keras.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}

  _protocol.serve({"infer": infer, "train": train, "matmul": matmul, "tflite": tflite, "onnx": onnx,
                   "versions": versions})


if __name__ == "__main__":
  main()
