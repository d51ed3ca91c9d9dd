"""A measured roofline: each layer's achieved GFLOP/s against its arithmetic intensity.

Every layer that costs time on its own (convolutions, dense, pooling, concatenation, addition, batch
norm; not the activations and dropout that runtimes fuse into the op before them) is timed alone:
a one-layer Keras model from the layer's input tensors to its output, called as a `tf.function`
on random inputs of the layer's input shapes at `batch` images; the median of `repeats` calls after
a warm-up. Its arithmetic intensity at that batch is FLOPs over bytes moved, 2 * MACs * batch over
(batch * (input + output bytes) + weight bytes): activations cross memory once per image, weights
once per batch. The roof is min(peak, bandwidth * intensity), with the peak and the bandwidth
measured on the machine at hand (`machine_roof`: TensorFlow's fp32 matmul, a large array copy).

Timing layers alone leaves out what a whole-model call shares between them (one dispatch, caches
warm with the previous layer's output), so the sum of the layer times is reported beside the
whole model's time.
"""

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from sqznet_tf._keras import keras, tf
from sqznet_tf.analysis import cost
from sqznet_tf.errors import SqznetError
from sqznet_tf.reporting import median_seconds

GROUPS = ("conv 1x1", "conv 3x3", "conv other", "dense", "no MACs")


def machine_roof(matmul_size: int = 2048, copy_mib: int = 256, repeats: int = 5) -> Dict[str, float]:
  """Peak fp32 GFLOP/s (TF matmul of two n x n matrices) and memory bandwidth in GB/s (a numpy copy
  of `copy_mib` MiB: bytes read plus bytes written), measured here."""
  a = tf.random.uniform((matmul_size, matmul_size))
  b = tf.random.uniform((matmul_size, matmul_size))
  mm = tf.function(lambda: tf.matmul(a, b))
  t = median_seconds(lambda: mm().numpy(), repeats, 2)
  src = np.ones(copy_mib << 18, np.float32)
  dst = np.empty_like(src)
  tc = median_seconds(lambda: np.copyto(dst, src), repeats, 1)
  return {"peak_gflops": 2 * matmul_size ** 3 / t / 1e9, "bandwidth_gbs": 2 * src.nbytes / tc / 1e9,
          "matmul_size": matmul_size, "copy_mib": copy_mib}


def _group(layer, macs: int) -> str:
  if isinstance(layer, keras.layers.Conv2D):
    k = tuple(layer.kernel_size)
    return "conv 1x1" if k == (1, 1) else "conv 3x3" if k == (3, 3) else "conv other"
  if isinstance(layer, keras.layers.Dense):
    return "dense"
  return "no MACs" if not macs else "conv other"


def _looped(sub, multi: bool, inner: int):
  """`sub` called `inner` times in one graph call (a while loop), so the per-call dispatch is
  spread over the calls; one element of each output feeds the loop, so no call can be dropped."""
  @tf.function
  def f(*xs):
    def body(i, acc):
      y = sub(list(xs) if multi else xs[0], training=False)
      return i + 1, acc + tf.reshape(y, [-1])[0]
    return tf.while_loop(lambda i, acc: i < inner, body, (tf.constant(0), tf.constant(0.0)))[1]
  return f


def time_layers(model, batch: int = 1, repeats: int = 10, warmup: int = 2, inner: int = 10,
                progress: Optional[Callable[[int, int], None]] = None) -> dict:
  """Per-layer time, achieved GFLOP/s and intensity of a built Keras `model` (module docstring).

  Returns {"batch", "layers": [{"name", "type", "group", "macs", "flops", "bytes", "intensity",
  "seconds", "gflops"}], "model_seconds", "layers_seconds"}; FLOPs, bytes and seconds per batch.
  """
  for name, v, lo in (("batch", batch, 1), ("repeats", repeats, 1), ("warmup", warmup, 0), ("inner", inner, 1)):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
      raise SqznetError(f"{name}={v!r} is not accepted; expected an integer >= {lo}")
  report = cost.analyze_model(model)
  costs = {l.name: l for l in report.layers}
  todo = [l for l in model.layers if costs[l.name].type not in cost.FUSED_TYPES]
  rows = []
  for i, layer in enumerate(todo):
    if progress:
      progress(i, len(todo))
    c = costs[layer.name]
    inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    sub = keras.Model(inputs, layer.output)
    xs = [tf.random.uniform((batch,) + tuple(t.shape[1:])) for t in inputs]
    fn = _looped(sub, len(xs) > 1, inner)
    seconds = median_seconds(lambda fn=fn, xs=xs: fn(*xs).numpy(), repeats, warmup) / inner
    moved = batch * (c.input_bytes + c.activation_bytes) + c.weight_bytes
    flops = 2 * c.macs * batch
    rows.append({"name": c.name, "type": c.type, "group": _group(layer, c.macs), "macs": c.macs * batch,
                 "flops": flops, "bytes": moved, "intensity": flops / moved if moved else 0.0,
                 "seconds": seconds, "gflops": flops / seconds / 1e9})
  x = tf.random.uniform((batch,) + tuple(model.inputs[0].shape[1:]))
  whole = _looped(model, False, inner)
  model_seconds = median_seconds(lambda: whole(x).numpy(), repeats, warmup) / inner
  if progress:
    progress(len(todo), len(todo))
  return {"batch": batch, "layers": rows, "model_seconds": model_seconds,
          "layers_seconds": sum(r["seconds"] for r in rows), "macs": report.macs * batch}


def summarise(timed: dict, roof: Dict[str, float]) -> dict:
  """Share of time per layer group and whether each layer sits under the memory or the compute roof."""
  ridge = roof["peak_gflops"] / roof["bandwidth_gbs"]  # FLOP per byte where the two roofs meet
  total = timed["layers_seconds"]
  share = {g: sum(r["seconds"] for r in timed["layers"] if r["group"] == g) / total for g in GROUPS}
  for r in timed["layers"]:
    r["bound"] = "memory" if r["intensity"] < ridge else "compute"
    attainable = min(roof["peak_gflops"], roof["bandwidth_gbs"] * r["intensity"])
    r["of_roof"] = r["gflops"] / attainable if attainable else None
  memory_time = sum(r["seconds"] for r in timed["layers"] if r["bound"] == "memory") / total
  return {"ridge_flop_per_byte": ridge, "time_share": share, "memory_bound_time_share": memory_time,
          "model_gflops": 2 * timed["macs"] / timed["model_seconds"] / 1e9}


def plot(results: Sequence[dict], roof: Dict[str, float], path: str, title: str = "") -> None:
  """Log-log roofline PNG: one marker per model, one colour per layer group, the measured roof.
  `results`: [{"model": name, "layers": [...]}] as `time_layers` returns them (layers with MACs)."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (heavy, only when a figure is drawn)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sqznet_tf.io import write_atomic  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(8, 5.5))
  markers = "osD^vP*X"
  colours = {"conv 1x1": "tab:blue", "conv 3x3": "tab:red", "conv other": "tab:green", "dense": "tab:purple"}
  xs = [r["intensity"] for res in results for r in res["layers"] if r["flops"]]
  lo, hi = min(xs + [1.0]) / 2, max(xs + [roof["peak_gflops"] / roof["bandwidth_gbs"]]) * 2
  grid = np.geomspace(lo, hi, 200)
  ax.plot(grid, np.minimum(roof["peak_gflops"], roof["bandwidth_gbs"] * grid), "k-", lw=2,
          label=f"roof: {roof['peak_gflops']:.0f} GFLOP/s matmul, {roof['bandwidth_gbs']:.1f} GB/s copy")
  seen = set()
  for i, res in enumerate(results):
    for r in res["layers"]:
      if not r["flops"]:
        continue
      key = (res["model"], r["group"])
      ax.scatter(r["intensity"], r["gflops"], marker=markers[i % len(markers)], color=colours.get(r["group"], "grey"),
                 s=40, alpha=0.8, edgecolors="none",
                 label=f"{res['model']}: {r['group']}" if key not in seen else None)
      seen.add(key)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("arithmetic intensity (FLOP per byte moved, fp32)")
  ax.set_ylabel("achieved GFLOP/s (layer timed alone)")
  ax.set_title(title or "Measured roofline, per layer")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  write_atomic(path, buf.getvalue())


def rows_for_table(timed: dict) -> List[dict]:
  out = []
  for r in timed["layers"]:
    out.append({"layer": r["name"], "type": r["type"], "MFLOP": f"{r['flops'] / 1e6:.1f}",
                "bytes": f"{r['bytes']:,}", "FLOP/byte": f"{r['intensity']:.2f}",
                "ms": f"{r['seconds'] * 1e3:.3f}", "GFLOP/s": f"{r['gflops']:.1f}" if r["flops"] else "",
                "bound": r.get("bound", ""), "of roof": f"{r['of_roof']:.0%}" if r.get("of_roof") else ""})
  return out
