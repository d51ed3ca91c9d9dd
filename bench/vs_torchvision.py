"""This package against torchvision on the same CPU, and against the CPU's matrix-multiply peak.

Run by hand (not a test); results go to BENCHMARKS.md with the machine, date and command, and as
JSON to --output. Needs the optional PyTorch venv: `make bench-torch-env` (torch and torchvision
in .venv-torch; PyTorch is not a dependency of the package).

Two long-lived worker processes, one per framework (bench/_tf_worker.py in this venv,
bench/_torch_worker.py in .venv-torch), take turns: for every measurement and repetition the TF
worker runs, then the torch worker, while the other waits, so each pair sees the same machine
state. Every figure is the median over --reps repetitions of the median call time of one
repetition (warm-up calls excluded); ratios are medians of the per-repetition ratios.

Measured:
  inference   batch 32 throughput and batch 1 latency at 224 px: squeezenet_v1_0, squeezenet_v1_1,
              alexnet_owt vs torchvision squeezenet1_0, squeezenet1_1, alexnet (random weights)
  predictor   batch 1 through sqznet_tf.runtimes.Predictor (runtime "auto": what sqznet-predict uses;
              --predictor_runtimes=auto,tf also TF alone, its traced or frozen form as measured)
  training    images/s of one SGD step (forward, backward, update) at 64 and 224 px, batch 32
  matmul      a 4096 x 4096 fp32 product, GFLOP/s, in both frameworks (the CPU's practical peak)
  portable    batch-1 latency of squeezenet_v1_1 as TFLite float32 / int8 (XNNPACK) and ONNX Runtime
  sparsity    dense vs pruned SqueezeNet v1.0 (the release: 2/3 zeros): TF and TFLite latency
Settings: threads = --threads (default: all cores) in both; torch: channels_last,
inference_mode; TF: the model in a tf.function with a fixed input signature. --latency_tf_threads
adds the batch-1 rows with TF's threads set apart (a second TF worker), e.g. one core per op.

  python bench/vs_torchvision.py --output=bench/results/vs_torchvision.json
  python bench/vs_torchvision.py --quick   # the targets only: v1.0 and v1.1, 3 pairs, about 5 minutes

The record names the CPU, whether it has AVX-512 and the measured matmul peak: the project's
machines differ 4x in matmul between AVX-512 and AVX2-only CPUs.
"""

import json
import os
import platform
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402


FLAGS = flags.FLAGS
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
flags.DEFINE_string("torch_python", os.path.join(REPO, ".venv-torch", "bin", "python"),
                    "Python of the PyTorch venv (make bench-torch-env); empty: TF only.")
flags.DEFINE_integer("threads", os.cpu_count(), "Threads for both frameworks.")
flags.DEFINE_integer("reps", 5, "Paired repetitions of every measurement.")
flags.DEFINE_list("models", ["squeezenet_v1_0", "squeezenet_v1_1", "alexnet_owt"], "Registry names.")
flags.DEFINE_list("parts", ["matmul", "bandwidth", "infer", "latency", "predictor", "train", "portable",
                           "sparsity"], "What to measure.")
flags.DEFINE_bool("quick", False, "The targets only: --models=squeezenet_v1_0,squeezenet_v1_1 "
                  "--parts=matmul,infer,latency,predictor,train --train_sizes=64 --reps=3 "
                  "--predictor_runtimes=auto,tf (flags given win).")
flags.DEFINE_integer("steps_per_execution", None, "Training steps per call into the graph in fit (default: "
                     "what train() uses in runs of 2,000 steps or more, 8).")
flags.DEFINE_list("train_sizes", ["64", "224"], "Image sizes of the training measurements.")
flags.DEFINE_enum("tf_mode", "function", ["function", "frozen", "frozen_session", "predict_on_batch", "predict"],
                  "TF inference mode: the package's traced function (inference.Predictor), the same with "
                  "its variables frozen into constants, predict_on_batch or predict.")
flags.DEFINE_list("latency_modes", [], "More TF inference modes for the batch-1 part, measured in the same "
                  "repetitions (each repetition: every mode, then torchvision once), e.g. function,frozen; "
                  "the results go to latency_modes in the record.")
flags.DEFINE_list("modes_batches", ["1"], "Batch sizes of the --latency_modes comparison (1 goes to latency_modes "
                  "in the record, others to modes_batch_<n>).")
flags.DEFINE_list("predictor_runtimes", ["auto"], "Runtimes of the predictor part (sqznet_tf.runtimes.Predictor): "
                  "auto goes to predictor in the record, each other one to predictor_<runtime> (tf: TF alone, its "
                  "traced or frozen form as measured on this machine).")
flags.DEFINE_string("train_mode", "fit", "TF training mode: fit or step.")
flags.DEFINE_bool("pointwise_matmul", True, "TF training: 1x1 convolutions as matrix products, as train() "
                  "runs them (--nopointwise_matmul: as Conv2D).")
flags.DEFINE_integer("inter_threads", 0, "TF inter-op threads (0: TensorFlow's default).")
flags.DEFINE_list("latency_tf_threads", [], "INTRA,INTER: also measure the batch-1 part with TF in a second worker "
                  "with these intra-op / inter-op threads (e.g. 1,2: every op on one core, two ops side by side), "
                  "paired with the same torchvision worker; results in latency_tf_threads.")
flags.DEFINE_string("release", os.path.join(REPO, "..", "shared", "data", "squeezenet_v1_0_deep_compression",
                                            "compressed_SqueezeNet.net"), "The pruned model for the sparsity part.")
flags.DEFINE_string("photos", os.path.join(REPO, "..", "shared", "data", "imagenet_sample", "images"),
                    "Photos to calibrate the int8 TFLite model on.")
flags.DEFINE_string("output", None, "Also write the results here (JSON).")


class Worker:
  """A worker process answering JSON requests (bench/_protocol.py)."""

  def __init__(self, python, script, *args):
    self.proc = subprocess.Popen([python, os.path.join(HERE, script), *args], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))

  def ask(self, **req):
    self.proc.stdin.write(json.dumps(req) + "\n")
    self.proc.stdin.flush()
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"worker {self.proc.args[1]} died on {req}")
    answer = json.loads(line)
    if "error" in answer:
      raise RuntimeError(f"{self.proc.args[1]}: {answer['error']} on {req}")
    return answer

  def close(self):
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


def log(msg):
  sys.stderr.write(msg + "\n")
  sys.stderr.flush()


def paired(tf_worker, torch_worker, per_call, **req):
  """Median over reps of (TF, torch) median call seconds, and the median per-rep torch/TF time ratio."""
  tf_s, torch_s, ratios = [], [], []
  for _ in range(FLAGS.reps):
    a = statistics.median(tf_worker.ask(**req)["seconds"])
    tf_s.append(a)
    if torch_worker:
      torch_req = {k: v for k, v in req.items()
                   if k not in ("mode", "steps_per_execution", "cache_dir", "pointwise", "runtime")}
      if torch_req["task"] == "predictor":  # torchvision's side of it: the same eager inference
        torch_req["task"] = "infer"
      b = statistics.median(torch_worker.ask(**torch_req)["seconds"])
      torch_s.append(b)
      ratios.append(b / a)  # > 1: this package is faster
  out = {"tf_seconds": statistics.median(tf_s), "tf_per_second": per_call / statistics.median(tf_s)}
  if torch_worker:
    out.update(torch_seconds=statistics.median(torch_s), torch_per_second=per_call / statistics.median(torch_s),
               speedup=statistics.median(ratios), speedup_min=min(ratios), speedup_max=max(ratios))
  return out


def paired_modes(tf_worker, torch_worker, modes, **req):
  """As `paired`, for several TF modes at once: per repetition every mode, then torch once; per mode
  the median of its per-repetition ratios to that repetition's torch time."""
  tf_s, torch_s, ratios = {m: [] for m in modes}, [], {m: [] for m in modes}
  for _ in range(FLAGS.reps):
    for mode in modes:
      tf_s[mode].append(statistics.median(tf_worker.ask(mode=mode, **req)["seconds"]))
    b = statistics.median(torch_worker.ask(**req)["seconds"])
    torch_s.append(b)
    for mode in modes:
      ratios[mode].append(b / tf_s[mode][-1])
  return {mode: {"tf_seconds": statistics.median(tf_s[mode]), "torch_seconds": statistics.median(torch_s),
                 "speedup": statistics.median(ratios[mode]), "speedup_min": min(ratios[mode]),
                 "speedup_max": max(ratios[mode])} for mode in modes}


def main(argv):
  del argv
  from sqznet_tf import reporting  # pylint: disable=g-import-not-at-top
  from sqznet_tf.analysis import cost  # pylint: disable=g-import-not-at-top
  if FLAGS.quick:  # flags given on the command line win
    quick = {"models": ["squeezenet_v1_0", "squeezenet_v1_1"], "parts": ["matmul", "infer", "latency", "predictor",
             "train"], "train_sizes": ["64"], "reps": 3, "predictor_runtimes": ["auto", "tf"]}
    for name, value in quick.items():
      if not FLAGS[name].present:
        setattr(FLAGS, name, value)
  threads = str(FLAGS.threads)
  tf_w = Worker(sys.executable, "_tf_worker.py", f"--threads={threads}", f"--inter_threads={FLAGS.inter_threads}")
  torch_w = Worker(FLAGS.torch_python, "_torch_worker.py", f"--threads={threads}") if FLAGS.torch_python else None
  if FLAGS.latency_tf_threads and (len(FLAGS.latency_tf_threads) != 2 or not all(
      t.isdigit() and int(t) > 0 for t in FLAGS.latency_tf_threads)):
    raise app.UsageError(f"--latency_tf_threads={','.join(FLAGS.latency_tf_threads)} is not accepted; "
                         "expected INTRA,INTER (two positive integers, e.g. 1,2)")
  import datetime  # pylint: disable=g-import-not-at-top
  results = {"machine": dict(reporting.machine(), python=platform.python_version()),
             "date": datetime.date.today().isoformat(), "command": " ".join(sys.argv),
             "settings": {"threads": FLAGS.threads, "reps": FLAGS.reps, "tf_mode": FLAGS.tf_mode,
                          "train_mode": FLAGS.train_mode, "steps_per_execution": FLAGS.steps_per_execution,
                          "pointwise_matmul": FLAGS.pointwise_matmul, "inter_threads": FLAGS.inter_threads,
                          "latency_tf_threads": FLAGS.latency_tf_threads},
             "versions": {"tf": tf_w.ask(task="versions"), "torch": torch_w.ask(task="versions") if torch_w else None}}
  macs = {m: cost.analyze(m, input_size=224).macs for m in FLAGS.models}
  try:
    if "matmul" in FLAGS.parts:
      log("matmul 4096")
      r = paired(tf_w, torch_w, 2 * 4096 ** 3 / 1e9, task="matmul", n=4096, iters=3)
      results["matmul_gflops"] = r
    if "bandwidth" in FLAGS.parts:
      log("memory bandwidth")
      results["bandwidth_gb_per_s"] = _bandwidth()
    peak = results.get("matmul_gflops", {}).get("tf_per_second")
    for part, batch, size, iters in (("infer", 32, 224, 5), ("latency", 1, 224, 20)):
      if part not in FLAGS.parts:
        continue
      results[part] = {}
      for m in FLAGS.models:
        log(f"{part} {m} batch {batch}")
        r = paired(tf_w, torch_w, batch, task="infer", model=m, batch=batch, size=size, iters=iters,
                   mode=FLAGS.tf_mode)
        r["macs_per_image"] = macs[m]
        if peak:
          r["tf_fraction_of_peak"] = 2 * macs[m] * r["tf_per_second"] / 1e9 / peak
          if "torch_per_second" in r:
            r["torch_fraction_of_peak"] = 2 * macs[m] * r["torch_per_second"] / 1e9 / peak
        results[part][m] = r
    if FLAGS.latency_tf_threads and "latency" in FLAGS.parts:
      intra, inter = FLAGS.latency_tf_threads
      tf_b1 = Worker(sys.executable, "_tf_worker.py", f"--threads={intra}", f"--inter_threads={inter}")
      try:
        results["latency_tf_threads"] = {"intra_op_threads": int(intra), "inter_op_threads": int(inter)}
        for m in FLAGS.models:
          log(f"latency {m} batch 1, TF with {intra} intra-op / {inter} inter-op threads")
          results["latency_tf_threads"][m] = paired(tf_b1, torch_w, 1, task="infer", model=m, batch=1, size=224,
                                                    iters=20, mode=FLAGS.tf_mode)
      finally:
        tf_b1.close()
    for batch in map(int, FLAGS.modes_batches) if FLAGS.latency_modes and torch_w else ():
      part = "latency_modes" if batch == 1 else f"modes_batch_{batch}"
      results[part] = {}
      for m in FLAGS.models:
        log(f"{m} batch {batch}, TF modes {','.join(FLAGS.latency_modes)}")
        results[part][m] = paired_modes(tf_w, torch_w, FLAGS.latency_modes, task="infer", model=m, batch=batch,
                                        size=224, iters=20 if batch == 1 else 5)
    for runtime in FLAGS.predictor_runtimes if "predictor" in FLAGS.parts else ():
      part = "predictor" if runtime == "auto" else f"predictor_{runtime}"
      results[part] = {}
      import tempfile  # pylint: disable=g-import-not-at-top
      cache = tempfile.mkdtemp(prefix="sqznet-bench-cache-")  # measured afresh, not a choice from before
      for m in FLAGS.models:
        log(f"predictor {m} batch 1, runtime {runtime}")
        r = paired(tf_w, torch_w, 1, task="predictor", model=m, batch=1, size=224, iters=20, cache_dir=cache,
                   runtime=runtime)
        r["runtime"] = tf_w.ask(task="predictor", model=m, batch=1, size=224, iters=1, cache_dir=cache,
                                runtime=runtime)["choice"]
        results[part][m] = r
    if "train" in FLAGS.parts:
      results["train"] = {}
      for size in map(int, FLAGS.train_sizes):
        for m in FLAGS.models:
          log(f"train {m} {size} px")
          try:
            results["train"][f"{m}@{size}"] = paired(tf_w, torch_w, 32, task="train", model=m, batch=32, size=size,
                                                     iters=8 if size == 224 else 48, mode=FLAGS.train_mode,
                                                     steps_per_execution=FLAGS.steps_per_execution,
                                                     pointwise=FLAGS.pointwise_matmul)
          except RuntimeError as e:  # alexnet_owt has no 64 px form (fc6 needs a 6x6 pool5 map)
            results["train"][f"{m}@{size}"] = {"error": str(e)}
    if "portable" in FLAGS.parts or "sparsity" in FLAGS.parts:
      results.update(_portable(tf_w))
  finally:
    tf_w.close()
    if torch_w:
      torch_w.close()
  text = json.dumps(results, indent=2)
  print(text)
  if FLAGS.output:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w", encoding="utf-8") as f:
      f.write(text + "\n")


def _portable(tf_w):
  out = {}
  reps = lambda **req: statistics.median(statistics.median(tf_w.ask(**req)["seconds"]) for _ in range(FLAGS.reps))  # noqa: E731
  if "portable" in FLAGS.parts:
    out["portable_latency_ms"] = {}
    for kind in ("float32", "int8"):
      log(f"TFLite {kind}")
      out["portable_latency_ms"][f"tflite_{kind}"] = 1e3 * reps(task="tflite", model="squeezenet_v1_1", kind=kind,
                                                               photos=FLAGS.photos, iters=30)
    log("ONNX Runtime")
    out["portable_latency_ms"]["onnxruntime"] = 1e3 * reps(task="onnx", model="squeezenet_v1_1", iters=30)
    out["portable_latency_ms"]["tf_function"] = 1e3 * reps(task="infer", model="squeezenet_v1_1", batch=1, size=224,
                                                           iters=30)
  if "sparsity" in FLAGS.parts:
    out["sparsity_latency_ms"] = {}
    for weights in (None, FLAGS.release):
      name = "pruned (release, 33.4% non-zero)" if weights else "dense (random weights)"
      row = {}
      log(f"sparsity: {name}")
      row["tf_function"] = 1e3 * reps(task="infer", model="squeezenet_v1_0_caffe", batch=1, size=227, iters=30,
                                      weights=weights)
      for sparse in (False, True):
        for delegate in (True, False):
          key = f"tflite_{'sparse' if sparse else 'dense'}_flatbuffer_{'xnnpack' if delegate else 'builtin'}"
          row[key] = 1e3 * reps(task="tflite", model="squeezenet_v1_0_caffe", kind="float32", weights=weights,
                                sparse=sparse, xnnpack=delegate, iters=30)
      out["sparsity_latency_ms"][name] = row
  return out


def _bandwidth(mib: int = 512) -> float:
  """Memory bandwidth (GB/s) of a numpy copy of `mib` MiB: bytes read + bytes written, median of 5."""
  import time  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  a = np.ones(mib * 2 ** 20 // 4, np.float32)
  b = np.empty_like(a)
  seconds = []
  for _ in range(6):
    t = time.perf_counter()
    np.copyto(b, a)
    seconds.append(time.perf_counter() - t)
  return 2 * a.nbytes / statistics.median(seconds[1:]) / 1e9


if __name__ == "__main__":
  app.run(main)
