"""Time per image of SqueezeNet v1.0, v1.1 and AlexNet (both kinds) against batch size, in TF and TFLite.

For each model (at its own input size: 224 px, AlexNet-Caffe 227 px) and batch size 1, 2, 4, ...,
64: the median time of repeated calls (a `tf.function` on random inputs; the TFLite float32 file
with XNNPACK, `num_threads` = cores, its input resized to the batch), divided by the batch. Beside
it, the memory traffic per image from the cost model (fp32): weights / batch (read once per call)
and activations (each layer's output written once, the input read once). The crossover is the
smallest batch at which an AlexNet answers an image faster than a SqueezeNet.

Writes the JSON and a PNG of time per image against batch size (and weight bytes per image on a
second axis).

Usage (from the repository root, nothing else running):
  python bench/crossover.py --out=bench/results/crossover.json --png=bench/results/crossover.png
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _ledger import cpu_name  # noqa: E402

MODELS = ["squeezenet_v1_0", "squeezenet_v1_1", "alexnet", "alexnet_owt"]


def median_seconds(call, min_seconds=0.5, repeats=5):
  call()
  t = time.perf_counter()
  call()
  one = time.perf_counter() - t
  inner = max(1, int(min_seconds / repeats / max(one, 1e-6)))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(inner):
      call()
    times.append((time.perf_counter() - t) / inner)
  return statistics.median(times)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--models", default=",".join(MODELS))
  ap.add_argument("--batches", default="1,2,4,8,16,32,64")
  ap.add_argument("--runtimes", default="tf,tflite")
  ap.add_argument("--out", default=None)
  ap.add_argument("--png", default=None)
  args = ap.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  sys.argv = sys.argv[:1]
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import keras, tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.analysis import cost  # pylint: disable=g-import-not-at-top
  from sqznet_tf.compression import tflite  # pylint: disable=g-import-not-at-top

  batches = [int(b) for b in args.batches.split(",")]
  runtimes = args.runtimes.split(",")
  result = {"cpu": cpu_name(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
            "command": "python bench/crossover.py " + " ".join(f"--{k}={v}" for k, v in vars(args).items() if v),
            "models": {}}
  for name in args.models.split(","):
    model = sqznet_tf.get_model(name)
    size = int(model.input_shape[1])
    report = cost.analyze_model(model)
    entry = {"input_size": size, "params": report.params, "macs": report.macs, "weight_bytes": report.weight_bytes,
             "activation_bytes": report.activation_bytes, "ms_per_image": {}}
    if "tf" in runtimes:
      fn = tf.function(lambda x, m=model: m(x, training=False))
      entry["ms_per_image"]["tf"] = {}
      for b in batches:
        x = tf.random.uniform((b, size, size, 3), 0, 255)
        t = median_seconds(lambda: fn(x).numpy())
        entry["ms_per_image"]["tf"][b] = t / b * 1e3
        print(f"{name:16} tf     batch {b:3}: {t / b * 1e3:8.3f} ms/image", flush=True)
    if "tflite" in runtimes:
      from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
      flat = tflite.convert(model, "float32")
      entry["ms_per_image"]["tflite"] = {}
      for b in batches:
        it = Interpreter(model_content=flat, num_threads=os.cpu_count())
        inp = it.get_input_details()[0]
        it.resize_tensor_input(inp["index"], [b, size, size, 3])
        it.allocate_tensors()
        it.set_tensor(inp["index"], np.random.default_rng(0).uniform(0, 255, (b, size, size, 3)).astype(np.float32))
        t = median_seconds(it.invoke)
        entry["ms_per_image"]["tflite"][b] = t / b * 1e3
        print(f"{name:16} tflite batch {b:3}: {t / b * 1e3:8.3f} ms/image", flush=True)
        del it
      del flat
    result["models"][name] = entry
    keras.backend.clear_session()

  crossover = {}
  for rt in runtimes:
    for a in ("alexnet", "alexnet_owt"):
      for s in ("squeezenet_v1_0", "squeezenet_v1_1"):
        if a in result["models"] and s in result["models"]:
          ta, ts = result["models"][a]["ms_per_image"][rt], result["models"][s]["ms_per_image"][rt]
          first = next((b for b in batches if ta[b] < ts[b]), None)
          crossover[f"{rt}: {a} faster than {s} from batch"] = first
  result["crossover"] = crossover
  print(json.dumps(crossover, indent=1))
  if args.out:
    from sqznet_tf.io import write_json_atomic  # pylint: disable=g-import-not-at-top
    write_json_atomic(args.out, result)
  if args.png:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    colours = dict(zip(MODELS, ["tab:red", "tab:orange", "tab:blue", "tab:purple"]))
    for name, e in result["models"].items():
      for rt, style in (("tf", "-o"), ("tflite", "--s")):
        if rt in e["ms_per_image"]:
          ys = e["ms_per_image"][rt]
          ax.plot(batches, [ys[b] for b in batches], style, color=colours.get(name), ms=4, label=f"{name} ({rt})")
      ax2.plot(batches, [e["weight_bytes"] / b / 2 ** 20 for b in batches], "-o", color=colours.get(name), ms=4,
               label=f"{name}: weights / batch")
      ax2.axhline(e["activation_bytes"] / 2 ** 20, color=colours.get(name), ls=":", lw=1)
    for a in (ax, ax2):
      a.set_xscale("log", base=2)
      a.set_yscale("log")
      a.set_xlabel("batch size")
      a.grid(True, which="both", alpha=0.3)
    ax.set_ylabel("ms per image (median)")
    ax.set_title(f"Time per image ({result['cpu']}, {result['cores']} cores)")
    ax.legend(fontsize=7)
    ax2.set_ylabel("MiB per image (fp32)")
    ax2.set_title("Weight traffic per image (solid) vs activations (dotted)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.png + ".tmp.png", dpi=110)
    os.replace(args.png + ".tmp.png", args.png)


if __name__ == "__main__":
  main()
