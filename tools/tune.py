"""sqznet-tune: search SqueezeNet's design space with keras-tuner, under a size or compute budget.

The space (--space: JSON/YAML text or file; or --sweep=sr / --sweep=pct3x3 for the paper's
Figure 3 sweeps) says which metaparameters vary and how; the rest are the --model's. A list is
a choice, {"min": a, "max": b, "step": s} a range, a single value fixed:

  {"squeeze_ratio": [0.125, 0.25, 0.5], "pct3x3": {"min": 0.25, "max": 0.75, "step": 0.25},
   "batch_norm": true}

Tuners: random, grid (every point of a grid of lists), hyperband, bayesian. The objective is
validation accuracy. A candidate over --max_params / --max_macs / --max_bytes (Deep Compression
size at --size_density and --size_bits) is recorded as rejected with its cost, not trained.
--nooverwrite resumes the search in --directory. Results: a table (or --format=json), and in
DIR/PROJECT: results.json, search.png (accuracy vs parameters and vs MACs with the Pareto
front; the SR / pct3x3 sweeps), best_model.keras (+ .sqznet.json; `sqznet-evaluate
--saved_model=...` reads it) and TensorBoard logs with HParams (DIR/PROJECT/logs).

Distributed: run the same command in several processes with KERASTUNER_TUNER_ID=chief (one
process; it serves the oracle and writes the results) or tuner0, tuner1, ... (workers that run
trials), and KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT naming the chief. All of them need
the same --directory on a shared file system.

Examples:
  sqznet-tune --data=embedded --image_size=32 --sweep=sr --tuner=grid --epochs=2
  sqznet-tune --data=../shared/data/cifar10_subset/train --val_data=../shared/data/cifar10_subset/test \\
      --space='{"squeeze_ratio": [0.125, 0.25, 0.5, 0.75], "pct3x3": [0.25, 0.5, 0.75], "batch_norm": true}' \\
      --tuner=random --max_trials=6 --max_params=600000
"""

import json
import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  # `python tools/tune.py`: make the repository importable without installing.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import cli, reporting  # noqa: E402
from sqznet_tf.errors import SqznetError  # noqa: E402

FLAGS = flags.FLAGS

DEFAULT_SPACE = '{"squeeze_ratio": [0.125, 0.25, 0.5, 0.75, 1.0], "pct3x3": [0.25, 0.5, 0.75], "batch_norm": true}'

flags.DEFINE_string("model", "squeezenet_v1_0", "Base network of the registry (what the space leaves out).")
flags.DEFINE_string("space", DEFAULT_SPACE, "Search space: JSON/YAML text or a .json/.yaml file.")
flags.DEFINE_enum("sweep", None, ["sr", "pct3x3"], "The paper's Figure 3 sweep instead of --space (with "
                  "batch_norm on): SR 0.125..1.0 at pct3x3 0.5, or pct3x3 0.01..0.99 at SR 0.5.")
flags.DEFINE_string("tuner", "random", "random, grid, hyperband or bayesian.")
flags.DEFINE_integer("max_trials", 10, "Trials (random, grid, bayesian).", lower_bound=1)
flags.DEFINE_integer("epochs", 3, "Training epochs per trial (Hyperband: the most a trial gets).", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch; default one pass over --data.", lower_bound=1)
flags.DEFINE_string("data", "embedded", "embedded, an image folder (one sub-folder per class) or TFRecords.")
flags.DEFINE_string("val_data", None, "Validation data of the same kind; default: --val_split of --data.")
flags.DEFINE_float("val_split", 0.1, "Share of --data held out for validation without --val_data.")
flags.DEFINE_integer("classes", None, "Number of classes (TFRecords).")
flags.DEFINE_integer("image_size", 32, "Input side in pixels.", lower_bound=8)
flags.DEFINE_enum("preprocessing", "caffe", ["caffe", "torch", "tf"], "Normalisation preset.")
flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
flags.DEFINE_float("learning_rate", 0.04, "SGD learning rate when the space does not search it.")
flags.DEFINE_integer("seed", 0, "Seed of the tuner and the data order.")
flags.DEFINE_integer("max_params", None, "Reject candidates with more parameters.", lower_bound=1)
flags.DEFINE_integer("max_macs", None, "Reject candidates with more multiply-accumulates per image.", lower_bound=1)
flags.DEFINE_integer("max_bytes", None, "Reject candidates whose Deep Compression size (at --size_density and "
                     "--size_bits) is larger, in bytes.", lower_bound=1)
flags.DEFINE_float("size_density", 0.334, "Kernel density of the compressed size (the release's 0.334).")
flags.DEFINE_integer("size_bits", 6, "Bits per shared weight of the compressed size.")
flags.DEFINE_string("directory", "runs/tune", "Where the search lives (shared by chief and workers).")
flags.DEFINE_string("project_name", "search", "Sub-folder of --directory for this search.")
flags.DEFINE_bool("overwrite", True, "Start afresh; --nooverwrite resumes the search found there.")
flags.DEFINE_integer("verbose", 1, "Keras output per trial: 1 progress bar, 2 one line per epoch, 0 silent.")
flags.DEFINE_enum("format", "table", ["table", "json"], "Output format; json prints one JSON object as the "
                  "last line of stdout.")


def _space():
  from sqznet_tf.search import space as space_lib  # pylint: disable=g-import-not-at-top
  if FLAGS.sweep:
    base = dict(space_lib.SR_SWEEP if FLAGS.sweep == "sr" else space_lib.PCT3X3_SWEEP, batch_norm=True)
    return space_lib.parse(base)
  return space_lib.parse(FLAGS.space)


def _data_spec():
  from sqznet_tf.data.pipeline import DataSpec  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.flags import data_source  # pylint: disable=g-import-not-at-top
  source, path = data_source(FLAGS.data, "auto")
  return DataSpec(source=source, path=path, val_path=FLAGS.val_data, val_split=FLAGS.val_split,
                  image_size=FLAGS.image_size, preprocessing=FLAGS.preprocessing, seed=FLAGS.seed)


def main(argv):
  del argv
  from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  from sqznet_tf.search import space as space_lib, tuner as tuner_lib  # pylint: disable=g-import-not-at-top
  from sqznet_tf.weights import WeightsInfo  # pylint: disable=g-import-not-at-top
  if FLAGS.tuner not in tuner_lib.TUNERS:
    raise SqznetError(f"--tuner={FLAGS.tuner} is not accepted; expected one of {', '.join(tuner_lib.TUNERS)}")
  space = _space()
  space_lib.check_buildable(space, FLAGS.model)
  if FLAGS.tuner == "grid":
    bad = [n for n in space.searched if space.params[n].kind not in ("choice",) and space.params[n].step is None]
    if bad:
      raise SqznetError(f"grid search needs lists or stepped ranges; {', '.join(bad)} is a continuous range")
  from sqznet_tf.analysis.storage import check_bits, check_density  # pylint: disable=g-import-not-at-top
  check_density(FLAGS.size_density)
  check_bits(FLAGS.size_bits, "size_bits")
  spec = _data_spec()
  data = pipeline.make_datasets(spec, FLAGS.batch_size, FLAGS.classes)
  if data.val is None:
    raise SqznetError("the search needs validation data: give --val_data or --val_split > 0")
  hypermodel = tuner_lib.SqueezeNetHyperModel(space, FLAGS.model, (FLAGS.image_size, FLAGS.image_size, 3),
                                              data.num_classes, FLAGS.learning_rate)
  budget = tuner_lib.Budget(FLAGS.max_params, FLAGS.max_macs, FLAGS.max_bytes, FLAGS.size_density, FLAGS.size_bits)
  tuner = tuner_lib.make_tuner(FLAGS.tuner, hypermodel, FLAGS.directory, FLAGS.project_name, FLAGS.max_trials,
                               FLAGS.epochs, FLAGS.overwrite, FLAGS.seed, budget)
  project = os.path.join(FLAGS.directory, FLAGS.project_name)
  steps = FLAGS.steps_per_epoch or max(1, data.train_size // FLAGS.batch_size)
  logs = os.path.join(project, "logs")
  search_args = dict(validation_data=data.val, steps_per_epoch=steps, verbose=FLAGS.verbose,
                     callbacks=[keras.callbacks.TensorBoard(logs, histogram_freq=0)])
  if FLAGS.tuner != "hyperband":
    search_args["epochs"] = FLAGS.epochs
  reporting.progress(f"{FLAGS.tuner} search over {', '.join(space.searched)} "
                     f"({data.train_size} training / {data.val_size} validation images)")
  tuner.search(data.train.repeat(), **search_args)
  if tuner_lib.is_worker():  # the chief has the trials and writes the results
    reporting.progress(f"worker {os.environ.get('KERASTUNER_TUNER_ID')}: the search is done; this worker ran "
                       f"{tuner.trials_run} trials")
    return
  rows = tuner_lib.trial_rows(tuner)
  out = {"tuner": FLAGS.tuner, "model": FLAGS.model, "space": space.to_dict(), "directory": project,
         "budget": {k: v for k, v in vars(budget).items()}, "trials": [r.to_dict() for r in rows]}
  if any(r.val_accuracy is not None for r in rows):
    model, values = tuner_lib.best(tuner)
    path = os.path.join(project, "best_model.keras")
    tmp = os.path.join(project, ".tmp-best_model.keras")
    model.save(tmp)
    os.replace(tmp, path)
    info = WeightsInfo(name="best_model.keras", architecture=FLAGS.model, classes=data.num_classes,
                       preprocessing=data.preprocessing, labels=", ".join(data.class_names[:20]),
                       source=f"sqznet-tune {FLAGS.tuner} search, hyperparameters {json.dumps(values)}")
    cli.write_atomic(path + ".sqznet.json", json.dumps(info.to_dict(), indent=2) + "\n")
    out["best"] = {"values": values, "model": path,
                   "val_accuracy": max(r.val_accuracy for r in rows if r.val_accuracy is not None)}
    tuner_lib.plot(rows, os.path.join(project, "search.png"), f"{FLAGS.model}: {FLAGS.tuner} search")
    out["plot"] = os.path.join(project, "search.png")
  cli.write_json_atomic(os.path.join(project, "results.json"), out)
  if FLAGS.format == "json":
    reporting.print_json(out)
    return
  names = sorted({k for r in rows for k in r.values})
  table = [dict({"trial": r.trial, "status": r.status}, **{k: r.values.get(k, "") for k in names},
                val_accuracy="" if r.val_accuracy is None else f"{r.val_accuracy:.4f}", params=r.params,
                macs=r.macs, size_bytes=r.bytes, note=r.note) for r in rows]
  print(reporting.table(table, ["trial", "status", *names, "val_accuracy", "params", "macs", "size_bytes", "note"]))
  if "best" in out:
    print(f"\nbest: {out['best']['values']} val_accuracy {out['best']['val_accuracy']:.4f} -> {out['best']['model']}")
    front = tuner_lib.pareto(rows)
    print("Pareto front (accuracy vs parameters): " + ", ".join(f"trial {r.trial} ({r.params:,} params, "
                                                                f"{r.val_accuracy:.3f})" for r in front))
  print(f"results: {os.path.join(project, 'results.json')}; TensorBoard HParams: tensorboard --logdir {logs}")


def run():
  cli.run_main(main)


if __name__ == "__main__":
  run()
