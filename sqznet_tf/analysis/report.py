"""What sqznet-analyze reports: one model per layer, several side by side, the 5x5 vs 3x3 example.

Each `*_report` returns a JSON-ready dict; each `render_*` turns one into the text table
(or Markdown) the binary prints.
"""

from typing import Dict, List, Optional, Sequence

from sqznet_tf import reporting
from sqznet_tf.analysis import cost
from sqznet_tf.errors import SqznetError
from sqznet_tf.models import configs

LAYER_COLUMNS = ["name", "type", "output_shape", "params", "macs", "weight_bytes", "activation_bytes",
                 "intensity"]
COMPARE_COLUMNS = ["model", "input", "params", "x params", "macs", "x macs", "fp32", "weight_bytes",
                   "activation_bytes", "intensity"]


def label(name: str, overrides: Dict) -> str:
  """`name(k=v, ...)` for a model with overrides, else `name`."""
  if not overrides:
    return name
  return f"{name}({', '.join(f'{k}={v}' for k, v in overrides.items())})"


def kernel_example_report(values: Sequence[str]) -> dict:
  """One 5x5 conv against two stacked 3x3 convs for "C,C',N": closed form and measured on Keras."""
  try:
    c, c_prime, n = (int(v) for v in values)
  except ValueError:
    raise SqznetError(f"--kernel_example={','.join(values)!r} is not accepted; expected three "
                      "integers C,C',N") from None
  closed = cost.five_by_five_vs_two_3x3(c, c_prime, n)
  one, two = cost.kernel_example_models(c, c_prime, n)
  measured = {"conv5x5_macs": cost.analyze_model(one).macs, "two_3x3_macs": cost.analyze_model(two).macs,
              "conv5x5_weights": one.count_params(), "two_3x3_weights": two.count_params()}
  return {"c": c, "c_prime": c_prime, "n": n, "closed_form": closed, "measured": measured,
          "agree": closed == measured, "ratio_macs": closed["two_3x3_macs"] / closed["conv5x5_macs"]}


def render_kernel_example(d: dict, md: bool = False) -> str:
  rows = [{"": k, "closed form": d["closed_form"][k], "measured (Keras)": d["measured"][k]} for k in d["closed_form"]]
  return "\n".join([
      reporting.heading(f"One 5x5 conv (1->{d['c']}) vs two 3x3 convs (1->{d['c']}->{d['c_prime']}) on "
                        f"{d['n']}x{d['n']}", md),
      reporting.table(rows, ["", "closed form", "measured (Keras)"], markdown=md),
      f"\nTwo 3x3 convs cost {d['ratio_macs']:.2f}x the multiplies of one 5x5 conv (9*C*(1+C')*N^2 vs 25*C*N^2)."])


def model_report(model, name: str, density=None, bits=None, index_bits: int = 4, all_layers: bool = False,
                 weights: Optional[str] = None) -> dict:
  """Per-layer costs of a built `model` (with the share of zero kernel weights when it has `weights`)."""
  report = cost.analyze_model(model)
  report.model = name
  d = report.to_dict(density, bits, index_bits, all_layers)
  if weights:
    d["weights"] = weights
    d["sparsity_layers"] = report.sparsity_rows()
  return d


def render_model(d: dict, md: bool = False) -> str:
  size = "x".join(str(s) for s in d["input_size"])
  rows = [dict(layer) for layer in d["layers"]]
  rows.append({"name": "total", "params": d["params"], "macs": d["macs"], "weight_bytes": d["weight_bytes"],
               "activation_bytes": d["activation_bytes"], "intensity": d["intensity"]})
  columns = list(LAYER_COLUMNS)
  if "sparsity_layers" in d:
    columns.append("sparsity")
    sparsity = {r["layer"]: r["sparsity"] for r in d["sparsity_layers"]}
    for r in rows:
      if r.get("name") in sparsity:
        r["sparsity"] = round(sparsity[r["name"]], 3)
    rows[-1]["sparsity"] = d["kernel_sparsity"]
  sizes = d["sizes"]
  pairs = [("parameters", f"{d['params']:,}"),
           ("multiply-accumulates", f"{d['macs']:,} ({reporting.human(d['macs'])} per image)"),
           ("size fp32 / fp16 / int8", " / ".join(f"{reporting.human_bytes(sizes[k])} ({sizes[k]:,} B)"
                                                  for k in ("fp32", "fp16", "int8")))]
  if "deep_compression" in sizes:
    dc = sizes["deep_compression"]
    pairs.append((f"Deep Compression at density {dc['density']:g}, {dc['bits']}-bit codes, "
                  f"{dc['index_bits']}-bit index",
                  f"{reporting.human_bytes(dc['total'])} ({dc['total']:,} B; "
                  f"{sizes['fp32'] / dc['total']:.1f}x smaller than fp32)"))
  return "\n".join([reporting.heading(f"{d['model']} at {size}", md), reporting.table(rows, columns, markdown=md),
                    "", reporting.kv_lines(pairs, md),
                    "\nintensity = MACs / (input + weight + output bytes) of each layer, fp32."])


def compare_report(names: Sequence[str], overrides: Dict, input_size=None, classes: int = 1000, density=None,
                   bits=None, index_bits: int = 4, log=lambda s: None) -> List[dict]:
  """One row per registered model (each override applied to the models that have it)."""
  used, reports = set(), []
  for i, name in enumerate(names):
    fields = configs.config_fields(configs.get_config(name))
    own = {k: v for k, v in overrides.items() if k in fields}
    used.update(own)
    log(f"[{i + 1}/{len(names)}] analysing {name}")
    r = cost.analyze(name, input_size, classes, **own)
    r.model = label(name, own)
    reports.append(r)
  unused = sorted(set(overrides) - used)
  if unused:
    raise SqznetError(f"--{unused[0]} does not apply to any of {', '.join(names)}")
  first = reports[0]
  return [{"model": r.model, "input": list(r.input_size[:2]), "params": r.params,
           "x params": round(r.params / first.params, 2), "macs": r.macs, "x macs": round(r.macs / first.macs, 2),
           "fp32": reporting.human_bytes(r.sizes()["fp32"]), "weight_bytes": r.weight_bytes,
           "activation_bytes": r.activation_bytes, "intensity": round(r.intensity, 2),
           "sizes": r.sizes(density, bits, index_bits)} for r in reports]


def render_compare(rows: List[dict], md: bool = False) -> str:
  return "\n".join([reporting.heading("Model comparison (per image; x = relative to the first model)", md),
                    reporting.table(rows, COMPARE_COLUMNS, markdown=md),
                    "\nintensity = MACs / (weight bytes + activation bytes), fp32: how much compute each byte "
                    "moved buys."])


def roofline_report(models: Sequence[tuple], batch: int = 1, repeats: int = 10, png: Optional[str] = None,
                    log=lambda s: None, bar=None, inner: int = 10, roof: Optional[dict] = None) -> dict:
  """Measured roofline of built models [(name, keras model), ...] (see `analysis.roofline`): the
  machine's roof, and per model its time, achieved GFLOP/s, time per layer group and per layer."""
  from sqznet_tf.analysis import roofline  # pylint: disable=g-import-not-at-top  (times, only when asked)
  if roof is None:
    log("measuring the roof: fp32 matmul peak and copy bandwidth")
    roof = roofline.machine_roof()
  out = []
  for i, (name, model) in enumerate(models):
    log(f"[{i + 1}/{len(models)}] timing {name} layer by layer at batch {batch}")
    timed = roofline.time_layers(model, batch=batch, repeats=repeats, inner=inner,
                                 progress=bar(name) if bar else None)
    summary = roofline.summarise(timed, roof)
    out.append({"model": name, "batch": batch, "macs_per_image": timed["macs"] // batch,
                "model_ms": timed["model_seconds"] * 1e3, "layers_ms": timed["layers_seconds"] * 1e3,
                "model_gflops": summary["model_gflops"], "time_share": summary["time_share"],
                "memory_bound_time_share": summary["memory_bound_time_share"], "layers": timed["layers"]})
  d = {"roof": dict(roof, ridge_flop_per_byte=roof["peak_gflops"] / roof["bandwidth_gbs"]), "models": out}
  if png:
    roofline.plot(out, roof, png, title=f"Measured roofline, per layer, batch {batch}")
    d["png"] = png
  return d


def render_roofline(d: dict, md: bool = False) -> str:
  from sqznet_tf.analysis import roofline  # pylint: disable=g-import-not-at-top
  r = d["roof"]
  parts = [reporting.heading(f"Roof: {r['peak_gflops']:.0f} GFLOP/s (fp32 matmul {r['matmul_size']}), "
                             f"{r['bandwidth_gbs']:.1f} GB/s (copy); ridge {r['ridge_flop_per_byte']:.1f} FLOP/byte", md)]
  if len(d["models"]) == 1:
    parts.append(reporting.table(roofline.rows_for_table(d["models"][0]), ["layer", "type", "MFLOP", "bytes",
                                 "FLOP/byte", "ms", "GFLOP/s", "bound", "of roof"], markdown=md))
  rows = [{"model": m["model"], "batch": m["batch"], "GMAC/img": f"{m['macs_per_image'] / 1e9:.3f}",
           "ms (model)": f"{m['model_ms']:.2f}", "ms (layers)": f"{m['layers_ms']:.2f}",
           "GFLOP/s": f"{m['model_gflops']:.1f}",
           **{k: f"{v:.0%}" for k, v in m["time_share"].items()},
           "memory-bound": f"{m['memory_bound_time_share']:.0%}"} for m in d["models"]]
  cols = ["model", "batch", "GMAC/img", "ms (model)", "ms (layers)", "GFLOP/s", *roofline.GROUPS, "memory-bound"]
  parts += ["", reporting.table(rows, cols, markdown=md),
            "\nms (layers): each layer timed alone, summed; time shares are of that sum. memory-bound: the share "
            "of time in layers whose intensity is under the ridge."]
  if d.get("png"):
    parts.append(f"Roofline drawn to {d['png']}.")
  return "\n".join(parts)
