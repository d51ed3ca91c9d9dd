"""sqznet_tf side of bench/vs_torchvision.py (runs in the project's .venv).

Inference modes: "function" (sqznet_tf.inference.Predictor: the package's TF runtime), "frozen" (its
concrete function with the variables as constants), "frozen_session" (Predictor(freeze=True): that
graph in a session with one inter-op thread, the package's "tf-frozen"),
"predict_on_batch" and "predict" (Keras' own).
The "predictor" task: sqznet_tf.runtimes.Predictor (runtime "auto": the batch-1 choice it measures).
Training modes: "fit" (Keras fit on an in-memory dataset, compiled as train() compiles it, with its
steps_per_execution; whole fit calls timed, seconds per step) and
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


def sgd_step(model, opt, loss_fn, xt, yt):
  """One training step on a fixed batch as a `tf.function`, the loop torchvision users write:
  forward in training mode, GradientTape, the optimizer's update; returns the loss."""
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = loss_fn(yt, model(xt, training=True))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss

  return step


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--inter_threads", type=int, default=0, help="0: TensorFlow's default")
  args = parser.parse_args()
  import numpy as np  # pylint: disable=g-import-not-at-top
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf import runtimes  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import keras, tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.inference import Predictor  # pylint: disable=g-import-not-at-top
  from sqznet_tf.models.pointwise import pointwise_layers, use_matmul  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.config import GROUPED_STEPS  # pylint: disable=g-import-not-at-top
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

  def function(m):
    key = ("function", id(m))
    if key not in cache:
      cache[key] = Predictor(m)  # the package's TF runtime (a traced concrete function)
    return cache[key]

  def frozen(m, x):
    """The package's traced function with its variables frozen into constants, once per model."""
    key = ("frozen", id(m))
    if key not in cache:
      from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # pylint: disable=g-import-not-at-top
      fn = function(m)
      cache[key] = convert_variables_to_constants_v2(fn._fn.get_concrete_function())  # pylint: disable=protected-access
    return cache[key]

  def infer(model, batch, size, iters, mode="function", weights=None):
    m = build(model, size, weights)
    x = tf.constant(rng.standard_normal((batch, size, size, 3), dtype=np.float32))
    if mode == "function":
      fn = function(m)
      xn = x.numpy()
      call = lambda: fn(xn)  # noqa: E731
    elif mode == "frozen":
      fn = frozen(m, x)
      call = lambda: fn(x)  # noqa: E731
    elif mode == "frozen_session":  # the package's frozen form: constants, a session, one inter-op thread
      key = ("frozen_session", id(m))
      if key not in cache:
        cache[key] = Predictor(m, freeze=True)
      fn, xn = cache[key], x.numpy()
      call = lambda: fn(xn)  # noqa: E731
    elif mode == "predict_on_batch":
      call = lambda: m.predict_on_batch(x)  # noqa: E731
    else:
      call = lambda: m.predict(x, batch_size=batch, verbose=0)  # noqa: E731
    return {"seconds": _protocol.timed(call, iters)}

  def train(model, batch, size, iters, mode="fit", steps_per_execution=None, pointwise=True):
    per_call = steps_per_execution or GROUPED_STEPS  # what train() uses in long runs
    key = ("train", model, batch, size, mode, per_call, pointwise)
    if key in cache:  # a later repetition: the model is built and traced already
      m, step, ds = cache[key]
    else:
      m = sqznet_tf.get_model(model, input_shape=(size, size, 3), classes=1000)
      if pointwise:  # as train() runs it: every 1x1 convolution as a matrix product
        use_matmul(pointwise_layers(m))
      x = rng.standard_normal((batch, size, size, 3), dtype=np.float32)
      y = keras.utils.to_categorical(rng.integers(0, 1000, batch), 1000)
      opt = keras.optimizers.SGD(0.001, momentum=0.9)
      loss_fn = keras.losses.CategoricalCrossentropy()
      step = sgd_step(m, opt, loss_fn, tf.constant(x), tf.constant(y))
      # fit as train() compiles it for a long run (--steps_per_execution: other group sizes)
      m.compile(optimizer=opt, loss=loss_fn, steps_per_execution=per_call)
      # One in-memory batch, repeated: nothing for tf.data's autotuner to tune, and with it on, each
      # fit call's end waited for the autotuner's next wake-up (0-1.4 s per 48-step call; train()'s
      # one fit call paid it too, 27 s after some one-epoch runs, until its pipelines turned the
      # autotuner off: sqznet_tf.data.pipeline.dataset_options, BUILD_NOTES).
      options = tf.data.Options()
      options.autotune.enabled = False
      ds = tf.data.Dataset.from_tensors((x, y)).repeat().with_options(options)
      m.fit(ds, steps_per_epoch=2 * per_call, epochs=1, verbose=0)  # trace and warm up
      cache[key] = (m, step, ds)
    if mode == "step":
      return {"seconds": _protocol.timed(lambda: step().numpy(), iters)}
    # Whole fit calls of `iters` steps (rounded up to whole groups), timed; seconds per step.
    steps = -(-iters // per_call) * per_call
    times = []
    for _ in range(3):
      t = time.perf_counter()
      m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
      times.append((time.perf_counter() - t) / steps)
    return {"seconds": times}

  def predictor(model, batch, size, iters, runtime="auto", cache_dir=None):
    """Latency through sqznet_tf.runtimes.Predictor (what sqznet-predict and sqznet-evaluate use)."""
    key = ("predictor", model, size, runtime)
    if key not in cache:
      cache[key] = runtimes.Predictor(build(model, size), runtime, cache=cache_dir)
    p = cache[key]
    x = rng.standard_normal((batch, size, size, 3), dtype=np.float32)
    return {"seconds": _protocol.timed(lambda: p(x), iters), "runtime": p.runtime_for(batch),
            "choice": p.choice}

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

  def _onednn():
    """Whether TF runs oneDNN's kernels, and why: TF_ENABLE_ONEDNN_OPTS as the process saw it."""
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    return (f"{'on' if _pywrap_util_port.IsMklEnabled() else 'off'} "
            f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})")

  def versions():
    return {"tensorflow": tf.__version__, "tf_keras": keras.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "onednn": _onednn()}

  _protocol.serve({"infer": infer, "train": train, "matmul": matmul, "tflite": tflite, "onnx": onnx,
                   "predictor": predictor, "versions": versions})


if __name__ == "__main__":
  main()
