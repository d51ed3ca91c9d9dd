"""sqznet-analyze: parameters, compute and memory traffic of a model, per layer.

Prints a per-layer table (output shape, parameters, multiply-accumulates, weight bytes,
activation bytes, arithmetic intensity) with totals and the model size at fp32 / fp16 / int8
(and at a given density and bit width, by Deep Compression's accounting), or compares several
models side by side.

Examples:
  sqznet-analyze --model=squeezenet_v1_0
  sqznet-analyze --model=squeezenet_v1_0_caffe --input_size=227 --density=0.334 --bits=8
  sqznet-analyze --model=squeezenet_v1_0 --squeeze_ratio=0.75 --pct3x3=0.25 --format=json
  sqznet-analyze --compare=squeezenet_v1_0,squeezenet_v1_1,alexnet,alexnet_owt
  sqznet-analyze --kernel_example=64,64,56
  sqznet-analyze --model=squeezenet_v1_0_caffe --weights=imagenet --sparsity_png=sparsity.png
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  # `python tools/analyze.py`: make the repository importable without installing.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf.errors import SqznetError  # noqa: E402
from sqznet_tf.models import configs  # noqa: E402
from sqznet_tf import cli, reporting  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("model", "squeezenet_v1_0", f"Registered model: {', '.join(configs.list_models())}.")
flags.DEFINE_list("compare", None, "Comma-separated models to compare side by side (replaces --model). "
                  "Metaparameter overrides apply to the models that have them.")
flags.DEFINE_integer("input_size", None, "Square input side in pixels; default: the variant's own "
                     "(224, or 227 for alexnet and squeezenet_v1_0_caffe).", lower_bound=1)
flags.DEFINE_integer("classes", 1000, "Number of classes.", lower_bound=1)
flags.DEFINE_enum("format", "table", reporting.FORMATS, "Output format; json prints one JSON object "
                  "as the last line of stdout.")
flags.DEFINE_bool("all_layers", False, "Also list ReLU, dropout and activation layers (their costs are "
                  "fused into the layer before them on real runtimes).")
flags.DEFINE_float("density", None, "Share of weights kept after pruning, for the Deep Compression "
                   "size estimate (e.g. 0.334).")
flags.DEFINE_integer("bits", None, "Bits per shared weight for the Deep Compression size estimate "
                     "(e.g. 8 or 6).")
flags.DEFINE_integer("index_bits", 4, "Bits of the relative index per stored weight (Deep Compression: 4).")
flags.DEFINE_list("kernel_example", None, "C,C',N: compare one 5x5 conv (1 -> C channels) with two "
                  "stacked 3x3 convs (1 -> C -> C') on an NxN map, closed form and measured.")
flags.DEFINE_string("output", None, "Also write the JSON report to this file (atomically).")
flags.DEFINE_string("weights", None, "Load weights ('imagenet', a .net file, Keras weights) and report the "
                    "share of zero (pruned) kernel weights per layer.")
flags.DEFINE_string("sparsity_png", None, "With --weights: also draw per-layer sparsity as a PNG bar chart.")

cli.define_override_flags()

LAYER_COLUMNS = ["name", "type", "output_shape", "params", "macs", "weight_bytes", "activation_bytes",
                 "intensity"]
COMPARE_COLUMNS = ["model", "input", "params", "x params", "macs", "x macs", "fp32", "weight_bytes",
                   "activation_bytes", "intensity"]


def overrides_for(name, overrides):
  fields = configs.config_fields(configs.get_config(name))
  return {k: v for k, v in overrides.items() if k in fields}


def label(name, overrides):
  if not overrides:
    return name
  return f"{name}({', '.join(f'{k}={v}' for k, v in overrides.items())})"


def kernel_example(values, fmt):
  from sqznet_tf.analysis import cost  # pylint: disable=g-import-not-at-top
  try:
    c, c_prime, n = (int(v) for v in values)
  except ValueError:
    raise SqznetError(f"--kernel_example={','.join(values)!r} is not accepted; expected three "
                      "integers C,C',N") from None
  closed = cost.five_by_five_vs_two_3x3(c, c_prime, n)
  one, two = cost.kernel_example_models(c, c_prime, n)
  measured = {"conv5x5_macs": cost.analyze_model(one).macs, "two_3x3_macs": cost.analyze_model(two).macs,
              "conv5x5_weights": one.count_params(), "two_3x3_weights": two.count_params()}
  result = {"c": c, "c_prime": c_prime, "n": n, "closed_form": closed, "measured": measured,
            "agree": closed == measured,
            "ratio_macs": closed["two_3x3_macs"] / closed["conv5x5_macs"]}
  if fmt == "json":
    reporting.print_json(result)
    return
  md = fmt == "markdown"
  rows = [{"": k, "closed form": closed[k], "measured (Keras)": measured[k]} for k in closed]
  print(reporting.heading(f"One 5x5 conv (1->{c}) vs two 3x3 convs (1->{c}->{c_prime}) on {n}x{n}", md))
  print(reporting.table(rows, ["", "closed form", "measured (Keras)"], markdown=md))
  print(f"\nTwo 3x3 convs cost {result['ratio_macs']:.2f}x the multiplies of one 5x5 conv "
        f"(9*C*(1+C')*N^2 vs 25*C*N^2).")


def single(name, overrides, fmt):
  from sqznet_tf.analysis import cost  # pylint: disable=g-import-not-at-top
  report = cost.analyze(name, FLAGS.input_size, FLAGS.classes, weights=FLAGS.weights, **overrides)
  report.model = label(name, overrides)
  d = report.to_dict(FLAGS.density, FLAGS.bits, FLAGS.index_bits, FLAGS.all_layers)
  if FLAGS.weights:
    d["weights"] = FLAGS.weights
    d["sparsity_layers"] = report.sparsity_rows()
    if FLAGS.sparsity_png:
      from sqznet_tf.pruning import prune  # pylint: disable=g-import-not-at-top
      prune.plot_sparsity({"model": report.model, "layers": d["sparsity_layers"],
                           "sparsity": d["kernel_sparsity"]}, FLAGS.sparsity_png)
  elif FLAGS.sparsity_png:
    raise SqznetError("--sparsity_png needs --weights (a model with random weights has no zeros)")
  if FLAGS.output:
    cli.write_json_atomic(FLAGS.output, d)
  if fmt == "json":
    reporting.print_json(d)
    return
  md = fmt == "markdown"
  size = "x".join(str(s) for s in report.input_size)
  print(reporting.heading(f"{report.model} at {size}", md))
  rows = [dict(l, output_shape=l["output_shape"]) for l in d["layers"]]
  rows.append({"name": "total", "params": d["params"], "macs": d["macs"], "weight_bytes": d["weight_bytes"],
               "activation_bytes": d["activation_bytes"], "intensity": d["intensity"]})
  columns = LAYER_COLUMNS + (["sparsity"] if FLAGS.weights else [])
  if FLAGS.weights:
    sparsity = {r["layer"]: r["sparsity"] for r in d["sparsity_layers"]}
    for r in rows:
      if r.get("name") in sparsity:
        r["sparsity"] = round(sparsity[r["name"]], 3)
    rows[-1]["sparsity"] = d["kernel_sparsity"]
  print(reporting.table(rows, columns, markdown=md))
  print()
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
  print(reporting.kv_lines(pairs, md))
  print("\nintensity = MACs / (input + weight + output bytes) of each layer, fp32.")


def compare(names, overrides, fmt):
  from sqznet_tf.analysis import cost  # pylint: disable=g-import-not-at-top
  used = set()
  reports = []
  for i, name in enumerate(names):
    own = overrides_for(name, overrides)
    used.update(own)
    reporting.progress(f"[{i + 1}/{len(names)}] analysing {name}")
    r = cost.analyze(name, FLAGS.input_size, FLAGS.classes, **own)
    r.model = label(name, own)
    reports.append(r)
  unused = sorted(set(overrides) - used)
  if unused:
    raise SqznetError(f"--{unused[0]} does not apply to any of {', '.join(names)}")
  first = reports[0]
  rows = []
  for r in reports:
    rows.append({"model": r.model, "input": list(r.input_size[:2]), "params": r.params,
                 "x params": round(r.params / first.params, 2), "macs": r.macs,
                 "x macs": round(r.macs / first.macs, 2),
                 "fp32": reporting.human_bytes(r.sizes()["fp32"]), "weight_bytes": r.weight_bytes,
                 "activation_bytes": r.activation_bytes, "intensity": round(r.intensity, 2)})
  if FLAGS.output:
    cli.write_json_atomic(FLAGS.output, {"compare": rows})
  if fmt == "json":
    reporting.print_json({"compare": [dict(
        row, sizes=r.sizes(FLAGS.density, FLAGS.bits, FLAGS.index_bits)) for row, r in zip(rows, reports)]})
    return
  md = fmt == "markdown"
  print(reporting.heading("Model comparison (per image; x = relative to the first model)", md))
  print(reporting.table(rows, COMPARE_COLUMNS, markdown=md))
  print("\nintensity = MACs / (weight bytes + activation bytes), fp32: how much compute each byte moved "
        "buys.")


def main(argv):
  del argv
  overrides = cli.overrides_from_flags(FLAGS)
  if FLAGS.kernel_example:
    if len(FLAGS.kernel_example) != 3:
      raise SqznetError(f"--kernel_example={','.join(FLAGS.kernel_example)!r} is not accepted; "
                        "expected three integers C,C',N")
    kernel_example(FLAGS.kernel_example, FLAGS.format)
  elif FLAGS.compare:
    compare(FLAGS.compare, overrides, FLAGS.format)
  else:
    single(FLAGS.model, overrides, FLAGS.format)


def run():
  cli.run_main(main)


if __name__ == "__main__":
  run()
