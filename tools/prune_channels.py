"""sqznet-prune-channels: remove whole channels (through the Fire concat) to a MACs or parameter budget.

Unlike weight pruning (sqznet-dsd, sqznet-compress --prune), which zeroes weights and leaves every
tensor its size, this removes filters together with everything tied to them: their batch-norm
entries, the matching input slices of the layers that read them (offsets through each Fire
module's concat, channels tied by a bypass addition, a Flatten's rows). The result is a smaller
dense network of the same registry family, its widths recorded as config data, faster in every
runtime. It is then fine-tuned with the training flags of sqznet-train.

--weights is the model to prune (any model form: cifar10, a run folder, .h5, .sqz, ...). The budget
is --target_macs or --target_params: a fraction of the original (0.5: half) or a count; or
--target_latency: a fraction of the original's TF latency, measured on this machine. The output
folder (--model_dir) loads as a model form in every binary (--weights=MODEL_DIR); rerun the same
command to resume. Before/after parameters, MACs, top-1 on --val_data and TF latency are printed.

Examples:
  sqznet-prune-channels --weights=cifar10 --target_macs=0.5 --data=../shared/data/cifar10_full/train \\
      --val_data=../shared/data/cifar10_subset/test --epochs=5 --learning_rate=0.02 --lr_schedule=cosine \\
      --augmentation=pad_crop_flip --batch_size=128 --model_dir=runs/prune_2x
  sqznet-prune-channels --weights=cifar10 --target_params=300000 --criterion=bn_scale --epochs=0 \\
      --val_data=../shared/data/cifar10_subset/test --model_dir=runs/prune_oneshot
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402
from sqznet_tf.errors import SqznetError  # noqa: E402

FLAGS = flags.FLAGS

CRITERIA = ("l1", "l2", "bn_scale", "taylor")  # sqznet_tf.pruning.channel_select (TensorFlow-free copy for the flags)

sq_flags.define_train_flags(model=None, epochs=0, min_epochs=0, epochs_help="Fine-tuning epochs, spread over "
                            "the --steps (0: prune only).")
flags.DEFINE_string("weights", None, f"The model to prune: {sq_flags.MODEL_FORMS}.", required=True)
flags.DEFINE_float("target_macs", None, "Multiply-adds of the pruned network: a fraction of the original (0.5) "
                   "or a count.")
flags.DEFINE_float("target_params", None, "Parameters of the pruned network: a fraction of the original or a count.")
flags.DEFINE_float("target_latency", None, "TF latency of the pruned network at --latency_batch, as a fraction of the "
                   "original's, measured here: candidates are pruned and timed until the MACs that meet it are found.")
flags.DEFINE_integer("latency_batch", 32, "Batch size of --target_latency's measurements.", lower_bound=1)
flags.DEFINE_enum("criterion", "l1", list(CRITERIA), "Channel importance: l1 / l2 filter norm, bn_scale (batch-norm "
                  "|gamma|, network slimming) or taylor (first-order, from --taylor_batches of --data).")
flags.DEFINE_enum("mode", "uniform", ["global", "uniform"], "uniform: every layer loses the same share of its "
                  "channels (its lowest-scored); global: one ranking over every layer (scores divided by their "
                  "layer's mean). Measured one-shot on the shipped CIFAR-10 model at half the MACs: 55% against 45%.")
flags.DEFINE_float("min_keep", 0.1, "Share of every layer's channels that is always kept (at least one).")
flags.DEFINE_integer("round_to", 8, "Every layer keeps a multiple of this many channels (or all): odd widths run "
                     "slower in CPU kernels (oneDNN, XNNPACK), enough to cancel the saving. 16 suits AVX-512 (16 floats "
                     "a vector): at half the MACs of the shipped CIFAR-10 model, TF batch 32 ran 1.59-1.63x faster "
                     "than dense with 16, 1.38-1.41x with 8 (BENCHMARKS.md). 1: any width.",
                     lower_bound=1)
flags.DEFINE_integer("steps", 1, "Prune-and-fine-tune rounds (the --epochs are spread over them).", lower_bound=1)
flags.DEFINE_integer("taylor_batches", 8, "Training batches the taylor criterion averages over.", lower_bound=1)
flags.DEFINE_integer("bn_batches", 20, "Batches of --data that re-estimate the batch-norm statistics after the "
                     "surgery (0: keep the old ones).", lower_bound=0)
flags.DEFINE_integer("latency_runs", 20, "Timed forward passes per latency figure (0: no latency).", lower_bound=0)

COLUMNS = ["", "params", "macs", "top1", "latency_b1_ms", "latency_b32_ms"]


BUDGETS = ("target_macs", "target_params", "target_latency")


def _budget():
  """(metric, value) of the one budget flag given."""
  given = [b for b in BUDGETS if getattr(FLAGS, b) is not None]
  if len(given) != 1:
    raise SqznetError("give one budget: --target_macs, --target_params (a fraction like 0.5, or a count) or "
                      "--target_latency (a fraction)")
  return given[0][len("target_"):], getattr(FLAGS, given[0])


def _check_flags():
  metric, value = _budget()
  if not value > 0 or value == 1 or (metric == "latency" and value > 1):
    accepted = "a fraction in (0, 1)" + ("" if metric == "latency" else " of the original, or a count below it")
    raise SqznetError(f"--target_{metric}={value:g} is not accepted; expected {accepted}")
  if FLAGS.init_weights:
    raise SqznetError("--init_weights does not apply: the model to prune is --weights")
  if FLAGS.epochs and not FLAGS["data"].present:
    raise SqznetError("--epochs > 0 fine-tunes the pruned model: give its training data with --data "
                      "(or --epochs=0 to prune only)")
  if FLAGS.criterion == "taylor" and not FLAGS["data"].present:
    raise SqznetError("--criterion=taylor needs training data for its gradients: give --data")
  if not 0 <= FLAGS.min_keep < 1:
    raise SqznetError(f"--min_keep={FLAGS.min_keep:g} is not accepted; expected a fraction in [0, 1)")


def main(argv):
  del argv
  _check_flags()
  sq_flags.check_outputs(folders=[("--model_dir", FLAGS.model_dir)])
  from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top  (TensorFlow after flag parsing)
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data import sources  # pylint: disable=g-import-not-at-top
  from sqznet_tf.formats.metadata import get_preprocessing  # pylint: disable=g-import-not-at-top
  from sqznet_tf.pruning import channel_prune  # pylint: disable=g-import-not-at-top
  loaded = loading.load_model(FLAGS.weights, model=FLAGS.model, overrides=sq_flags.overrides_from_flags(),
                               classes=FLAGS.classes)
  info = loaded[1]
  train = None
  if FLAGS.epochs or FLAGS.criterion == "taylor" or FLAGS["data"].present:
    changes = {}
    if info is not None and not FLAGS["preprocessing"].present:
      changes["preprocessing"] = info.preprocessing.mode  # the weights' own, e.g. cifar for weights=cifar10
    if info is not None and not FLAGS["image_size"].present:
      changes["image_size"] = info.preprocessing.crop_size
    train = sq_flags.train_config_from_flags(data=sq_flags.data_spec_from_flags(**changes), model=None,
                                             epochs=max(1, FLAGS.epochs), save_model=False)
  accuracy = None
  if FLAGS.val_data:
    source = sources.open_source(FLAGS.val_data, FLAGS.data_format)
    prep = info.preprocessing if info else get_preprocessing(FLAGS.preprocessing, crop_size=FLAGS.image_size)
    accuracy, _ = evaluation.accuracy_fn(source, prep)
  metric, target = _budget()
  cfg = channel_prune.ChannelPruneConfig(
      weights=FLAGS.weights, metric=metric, target=target, latency_batch=FLAGS.latency_batch,
      criterion=FLAGS.criterion, mode=FLAGS.mode, min_keep=FLAGS.min_keep, round_to=FLAGS.round_to,
      steps=FLAGS.steps, epochs=FLAGS.epochs, train=train, taylor_batches=FLAGS.taylor_batches,
      bn_batches=FLAGS.bn_batches, model=FLAGS.model,
      overrides=sq_flags.overrides_from_flags(), classes=FLAGS.classes, out_dir=FLAGS.model_dir)
  summary = channel_prune.run(cfg, accuracy=accuracy, latency_runs=FLAGS.latency_runs, log=reporting.progress,
                              loaded=loaded)
  if FLAGS.format == "json":
    reporting.print_json(summary)
    return
  rows = []
  for when in ("before", "after"):
    d = summary[when]
    rows.append({"": when, "params": f"{d['params']:,}", "macs": f"{d['macs']:,}",
                 "top1": f"{d['top1']:.2%}" if "top1" in d else "-",
                 "latency_b1_ms": d.get("latency_b1_ms", "-"), "latency_b32_ms": d.get("latency_b32_ms", "-")})
  print()
  print(reporting.heading(f"Channel pruning of {summary['architecture']} ({summary['criterion']}, {summary['mode']})"))
  print(reporting.table(rows, COLUMNS))
  print(reporting.kv_lines([
      ("MACs", f"{summary['macs_ratio']}x fewer"), ("parameters", f"{summary['params_ratio']}x fewer"),
      ("speed-up (TF)", f"batch 1: {summary['speedup_b1']}x, batch 32: {summary['speedup_b32']}x"
                        if "speedup_b1" in summary else "not measured (--latency_runs=0)"),
      ("widths", str(summary["overrides"])),
      ("output", f"{FLAGS.model_dir} (loads as --weights={FLAGS.model_dir})")]))


def run():
  sq_flags.run_main(main, resume="rerun the same command to resume")


if __name__ == "__main__":
  run()
