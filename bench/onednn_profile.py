"""Where a step's time goes, per oneDNN primitive: convolutions, matrix products, pooling, reorders.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

Runs one model's inference call (`sqznet_tf.inference.Predictor`, as the package runs it) or training
step (a `tf.function` with GradientTape and SGD, the 1x1 convolutions as matrix products as `train()`
runs them) in a child process with `ONEDNN_VERBOSE=profile_exec`, then adds up the primitives' own
times over `--steps` calls after the warm-up. Prints the wall time per call (a second child, without
the verbose log), the time per primitive kind and the `--top` most expensive primitives with their
achieved GFLOP/s (convolutions and matrix products). With TensorFlow's default inter-op pool, ops
that may run side by side (a Fire module's two expand convolutions) overlap and each one's time
includes its wait for the cores: `--inter_threads=1` runs them one after the other, so the times add
up to the oneDNN part of the call. Ops outside oneDNN (TensorFlow's own kernels: MaxPoolV2, concat,
bias gradients) show only as the difference to the wall time.

  python bench/onednn_profile.py --model=squeezenet_v1_0 --size=224 --batch=32 --mode=infer --inter_threads=1
  python bench/onednn_profile.py --model=squeezenet_v1_0 --size=64 --batch=32 --mode=train --inter_threads=1
"""

import collections
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "squeezenet_v1_0", "Registry name of the network.")
flags.DEFINE_integer("size", 224, "Input height and width.")
flags.DEFINE_integer("classes", 1000, "Output classes (10 for the CIFAR-10 network).")
flags.DEFINE_integer("batch", 32, "Batch size.")
flags.DEFINE_enum("mode", "infer", ["infer", "train"], "An inference call or a training step.")
flags.DEFINE_integer("steps", 10, "Calls profiled after the warm-up.")
flags.DEFINE_integer("threads", 0, "TF intra-op threads (0: the core count).")
flags.DEFINE_integer("inter_threads", 0, "TF inter-op threads (0: TensorFlow's default).")
flags.DEFINE_integer("top", 25, "Primitives listed.")
flags.DEFINE_bool("child", False, "Internal: run the calls in this process.")

_MARK = "--- profiled calls ---"
_CONV = re.compile(r"mb(\d+)_ic(\d+)oc(\d+)_ih\d+oh(\d+)kh(\d+)\S*?_iw\d+ow(\d+)kw(\d+)")
_GEMM = re.compile(r"^(\d+)x(\d+):(\d+)x(\d+)$")


def _child():
  """Builds the model, warms it up, prints the marker, then makes FLAGS.steps calls."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import keras, tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads or os.cpu_count())
  if FLAGS.inter_threads:
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_threads)
  model = sqznet_tf.get_model(FLAGS.model, input_shape=(FLAGS.size, FLAGS.size, 3), classes=FLAGS.classes)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((FLAGS.batch, FLAGS.size, FLAGS.size, 3), dtype=np.float32)
  if FLAGS.mode == "infer":
    from sqznet_tf.inference import Predictor  # pylint: disable=g-import-not-at-top
    run = Predictor(model)
    call = lambda: run(x)  # noqa: E731
  else:
    from sqznet_tf.models.pointwise import pointwise_layers, use_matmul  # pylint: disable=g-import-not-at-top
    use_matmul(pointwise_layers(model))
    from _tf_worker import sgd_step  # pylint: disable=g-import-not-at-top  # the step vs_torchvision.py times
    y = keras.utils.to_categorical(rng.integers(0, FLAGS.classes, FLAGS.batch), FLAGS.classes)
    step = sgd_step(model, keras.optimizers.SGD(0.001, momentum=0.9), keras.losses.CategoricalCrossentropy(),
                    tf.constant(x), tf.constant(y))
    call = lambda: step().numpy()  # noqa: E731
  for _ in range(5):
    call()
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  print(f"onednn {'on' if _pywrap_util_port.IsMklEnabled() else 'off'}", flush=True)
  print(_MARK, flush=True)
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    call()
  print(f"wall_ms {(time.perf_counter() - start) / FLAGS.steps * 1000:.3f}", flush=True)


def _flops(kind, prop, desc):
  """Floating-point operations of one primitive call, or None where not counted."""
  if kind == "convolution":
    m = _CONV.search(desc)
    if m:
      mb, ic, oc, oh, kh, ow, kw = map(int, m.groups())
      return 2 * mb * oc * oh * ow * ic * kh * kw
  if kind == "gemm_api":
    m = _GEMM.match(desc)
    if m:
      rows, inner, _, cols = map(int, m.groups())
      return 2 * rows * inner * cols
  del prop
  return None


def _run_child(verbose):
  args = [sys.executable, os.path.abspath(__file__), "--child", f"--model={FLAGS.model}", f"--size={FLAGS.size}",
          f"--batch={FLAGS.batch}", f"--classes={FLAGS.classes}", f"--mode={FLAGS.mode}", f"--steps={FLAGS.steps}", f"--threads={FLAGS.threads}",
          f"--inter_threads={FLAGS.inter_threads}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  if verbose:
    env["ONEDNN_VERBOSE"] = "profile_exec"
  done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
  if done.returncode or _MARK not in done.stdout:
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    sys.exit(f"onednn_profile: the run failed (exit {done.returncode}): {last}")
  before, after = done.stdout.split(_MARK, 1)
  return before.splitlines()[-1].split()[-1], after.splitlines()


def main(argv):
  del argv
  if FLAGS.child:
    _child()
    return
  onednn, lines = _run_child(verbose=False)
  wall = next(float(l.split()[1]) for l in lines if l.startswith("wall_ms"))
  per = collections.defaultdict(float)
  calls = collections.Counter()
  for line in _run_child(verbose=True)[1]:
    parts = line.strip().split(",")
    if not line.startswith("onednn_verbose") or "exec" not in parts:
      continue
    i = parts.index("exec")
    try:
      ms = float(parts[-1])
    except ValueError:
      continue
    key = (parts[i + 2], parts[i + 3], parts[i + 4], parts[-2])  # kind, implementation, propagation, shape
    per[key] += ms
    calls[key] += 1
  if not per:
    sys.exit("onednn_profile: no oneDNN primitive ran: TensorFlow's oneDNN kernels are off here "
             f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}, or not an x86 CPU)")
  steps = FLAGS.steps
  total = sum(per.values()) / steps
  print(f"{FLAGS.model}, {FLAGS.size} px, batch {FLAGS.batch}, {FLAGS.mode}, inter-op threads "
        f"{FLAGS.inter_threads or 'default'}, TensorFlow's oneDNN kernels {onednn}: {wall:.1f} ms per call "
        f"(no log), oneDNN primitives {total:.1f} ms per call (with the log)\n")
  if onednn == "off":
    print("(TensorFlow's own kernels ran; only the matrix products they hand to oneDNN are listed)\n")
  kinds = collections.defaultdict(float)
  for (kind, _, prop, _), ms in per.items():
    kinds[(kind, prop)] += ms
  print("| primitive | propagation | ms per call |\n|---|---|---|")
  for (kind, prop), ms in sorted(kinds.items(), key=lambda kv: -kv[1]):
    print(f"| {kind} | {prop} | {ms / steps:.2f} |")
  print("\n| ms per call | calls | GFLOP/s | primitive | implementation | propagation | shape |\n|---|---|---|---|---|---|---|")
  for key, ms in sorted(per.items(), key=lambda kv: -kv[1])[:FLAGS.top]:
    kind, impl, prop, desc = key
    flops = _flops(kind, prop, desc)
    rate = f"{flops * calls[key] / (ms / 1000) / 1e9:.0f}" if flops else ""
    print(f"| {ms / steps:.2f} | {calls[key] / steps:g} | {rate} | {kind} | {impl} | {prop} | {desc} |")


if __name__ == "__main__":
  app.run(main)
