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

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402
from sqznet_tf.errors import SqznetError  # noqa: E402

FLAGS = flags.FLAGS

sq_flags.define_model_flags(weights=None, model="squeezenet_v1_0", classes=1000)
flags.DEFINE_list("compare", None, "Comma-separated models to compare side by side (replaces --model). "
                  "Metaparameter overrides apply to the models that have them.")
sq_flags.define_output_flags(formats=reporting.FORMATS)
flags.DEFINE_bool("all_layers", False, "Also list ReLU, dropout and activation layers (their costs are "
                  "fused into the layer before them on real runtimes).")
flags.DEFINE_float("density", None, "Share of weights kept after pruning, for the Deep Compression "
                   "size estimate (e.g. 0.334).")
sq_flags.define_bits_flags()  # for the Deep Compression size estimate, with --density
flags.DEFINE_list("kernel_example", None, "C,C',N: compare one 5x5 conv (1 -> C channels) with two "
                  "stacked 3x3 convs (1 -> C -> C') on an NxN map, closed form and measured.")
flags.DEFINE_string("sparsity_png", None, "With --weights: also draw per-layer sparsity as a PNG bar chart.")
flags.DEFINE_string("roofline", None, "Time every layer alone on this machine and draw the measured roofline "
                    "(achieved GFLOP/s against FLOP per byte, with the measured matmul peak and copy bandwidth) "
                    "to this PNG; with --compare, every model on one figure.")
flags.DEFINE_integer("roofline_batch", 1, "Images per timed call for --roofline.", lower_bound=1)
flags.DEFINE_integer("roofline_repeats", 10, "Timed calls per layer for --roofline (the median is kept).",
                     lower_bound=1)


def main(argv):
  del argv
  sq_flags.check_outputs(files=[("--output", FLAGS.output), ("--sparsity_png", FLAGS.sparsity_png),
                                ("--roofline", FLAGS.roofline)])
  if FLAGS.roofline and FLAGS.kernel_example:
    raise SqznetError("--roofline times models; it does not apply to --kernel_example")
  if not FLAGS.compare and not FLAGS.kernel_example:
    sq_flags.check_model_flags()
  from sqznet_tf.analysis import report  # pylint: disable=g-import-not-at-top  (TensorFlow after flag parsing)
  from sqznet_tf.io import write_json_atomic  # pylint: disable=g-import-not-at-top
  overrides, md = sq_flags.overrides_from_flags(), FLAGS.format == "markdown"
  if FLAGS.kernel_example:
    if len(FLAGS.kernel_example) != 3:
      raise SqznetError(f"--kernel_example={','.join(FLAGS.kernel_example)!r} is not accepted; "
                        "expected three integers C,C',N")
    d = report.kernel_example_report(FLAGS.kernel_example)
    text = report.render_kernel_example(d, md)
  elif FLAGS.compare:
    model = None
    rows = report.compare_report(FLAGS.compare, overrides, FLAGS.input_size, FLAGS.classes, FLAGS.density,
                                 FLAGS.bits, FLAGS.index_bits, log=reporting.progress)
    d, text = {"compare": rows}, report.render_compare(rows, md)
  else:
    ref = sq_flags.model_ref_from_flags()
    if FLAGS.sparsity_png and not ref:
      raise SqznetError("--sparsity_png needs --weights (a model with random weights has no zeros)")
    from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
    model, _ = loading.load_model(ref, model=FLAGS.model if FLAGS["model"].present or not ref else None,
                                  overrides=overrides, classes=FLAGS.classes if not ref else None,
                                  input_size=FLAGS.input_size)
    src = loading.source_of(model) or {}
    name = report.label(src.get("architecture") or model.name, src.get("overrides") or overrides)
    d = report.model_report(model, name, FLAGS.density, FLAGS.bits, FLAGS.index_bits, FLAGS.all_layers, ref)
    if FLAGS.sparsity_png:
      from sqznet_tf.pruning import prune  # pylint: disable=g-import-not-at-top
      prune.plot_sparsity({"model": name, "layers": d["sparsity_layers"], "sparsity": d["kernel_sparsity"]},
                          FLAGS.sparsity_png)
    text = report.render_model(d, md)
  if FLAGS.roofline:
    d["roofline"] = report.roofline_report(_roofline_models(model if not FLAGS.compare else None, d, overrides),
                                           FLAGS.roofline_batch, FLAGS.roofline_repeats, FLAGS.roofline,
                                           log=reporting.progress, bar=_bar)
    text += "\n\n" + report.render_roofline(d["roofline"], md)
  if FLAGS.output:
    write_json_atomic(FLAGS.output, d)
  if FLAGS.format == "json":
    reporting.print_json(d)
  else:
    print(text)


def _bar(name):
  bar = reporting.ProgressBar(None, label=f"  {name}")

  def update(done, total):
    bar.total = total
    bar.update(done)
    if done == total:
      bar.close()
  return update


def _roofline_models(model, d, overrides):
  """[(name, built model)] to time: the loaded model, or each --compare model built at its size."""
  if model is not None:
    return [(d["model"], model)]
  from sqznet_tf.models import build, configs, get_config  # pylint: disable=g-import-not-at-top
  out = []
  for name, row in zip(FLAGS.compare, d["compare"]):
    cfg = get_config(name, **{k: v for k, v in overrides.items() if k in configs.config_fields(get_config(name))})
    size = row["input"]
    out.append((row["model"], build(cfg, input_shape=(size[0], size[1], 3), classes=FLAGS.classes)))
  return out


def run():
  sq_flags.run_main(main)


if __name__ == "__main__":
  run()
