"""sqznet-tune: search SqueezeNet's design space with keras-tuner, under a size or compute budget.

The space (--space: JSON/YAML text or file; or --sweep=sr / --sweep=pct3x3 for the paper's
Figure 3 sweeps) says which metaparameters vary and how; the rest are the --model's. A list is
a choice, {"min": a, "max": b, "step": s} a range, a single value fixed:

  {"squeeze_ratio": [0.125, 0.25, 0.5], "pct3x3": {"min": 0.25, "max": 0.75, "step": 0.25},
   "batch_norm": true}

Tuners: random, grid (every point of a grid of lists), hyperband, bayesian. The objective is
validation accuracy. A candidate over --max_params / --max_macs / --max_bytes (Deep Compression
size at --size_density and --size_bits) is recorded as rejected with its cost, not trained.
--nooverwrite resumes the search in --directory (not a grid search). Results: a table (or --format=json), and in
DIR/PROJECT: results.json, search.png (accuracy vs parameters and vs MACs with the Pareto
front; the SR / pct3x3 sweeps), best_model.keras (+ .sqznet.json; `sqznet-evaluate
--saved_model=...` reads it) and TensorBoard logs with HParams (DIR/PROJECT/logs).

Distributed: run the same command in several processes with KERASTUNER_TUNER_ID=chief (one
process; it serves the oracle and writes the results) or tuner0, tuner1, ... (workers that run
trials), and KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT naming the chief. All of them need
the same --directory on a shared file system. Only the chief starts afresh (--overwrite); workers never
delete the folder. The chief stops with an error if its port is in use. Workers send a heartbeat while
they train; a worker silent for --worker_timeout seconds is lost (its trial fails), and a chief that
no worker talks to for as long stops with the results it has (exit status 1).

Examples:
  sqznet-tune --data=embedded --image_size=32 --sweep=sr --tuner=grid --epochs=2
  sqznet-tune --data=../shared/data/cifar10_subset/train --val_data=../shared/data/cifar10_subset/test \\
      --space='{"squeeze_ratio": [0.125, 0.25, 0.5, 0.75], "pct3x3": [0.25, 0.5, 0.75], "batch_norm": true}' \\
      --tuner=random --max_trials=6 --max_params=600000
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  # `python tools/tune.py`: make the repository importable without installing.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402
from sqznet_tf.errors import SqznetError  # noqa: E402

FLAGS = flags.FLAGS

DEFAULT_SPACE = '{"squeeze_ratio": [0.125, 0.25, 0.5, 0.75, 1.0], "pct3x3": [0.25, 0.5, 0.75], "batch_norm": true}'

sq_flags.define_architecture_flag("squeezenet_v1_0")
flags.DEFINE_string("space", DEFAULT_SPACE, "Search space: JSON/YAML text or a .json/.yaml file.")
flags.DEFINE_enum("sweep", None, ["sr", "pct3x3"], "The paper's Figure 3 sweep instead of --space (with "
                  "batch norm): sr = squeeze ratio 0.125..1, pct3x3 = 3x3 share 0.01..0.99.")
flags.DEFINE_string("tuner", "random", "random, grid, hyperband or bayesian.")
flags.DEFINE_integer("max_trials", 10, "Trials (random, grid, bayesian).", lower_bound=1)
sq_flags.define_optimisation_flags(epochs=3)  # the learning rate when the space does not search it
sq_flags.define_training_data_flags()
sq_flags.define_run_flags()
flags.DEFINE_integer("max_params", None, "Reject candidates with more parameters.", lower_bound=1)
flags.DEFINE_integer("max_macs", None, "Reject candidates with more multiply-accumulates per image.", lower_bound=1)
flags.DEFINE_integer("max_bytes", None, "Reject candidates whose Deep Compression size (at --size_density and "
                     "--size_bits) is larger.", lower_bound=1)
flags.DEFINE_float("size_density", 0.334, "Kernel density of the compressed size (the release's 0.334).")
flags.DEFINE_integer("size_bits", 6, "Bits per shared weight of the compressed size.")
flags.DEFINE_string("directory", "runs/tune", "Where the search lives (shared by chief and workers).")
flags.DEFINE_string("project_name", "search", "Sub-folder of --directory for this search.")
flags.DEFINE_float("worker_timeout", 600, "Distributed search, on the chief: a worker that sends nothing for "
                   "this many seconds is lost and its trial fails (a worker sends a heartbeat every 5 s while it "
                   "runs a trial); when no worker has sent anything for as long and none runs a trial, the search "
                   "stops with the results it has (exit status 1 if that is before its end). 0: wait forever; "
                   "otherwise at least 10.",
                   lower_bound=0)
sq_flags.define_overwrite_flag(True)
sq_flags.define_output_flags(output=False)


def main(argv):
  del argv
  sq_flags.check_outputs(folders=[("--directory", FLAGS.directory)])
  from sqznet_tf.search import space as space_lib  # pylint: disable=g-import-not-at-top  (TensorFlow after parsing)
  from sqznet_tf.search import tuner as tuner_lib  # pylint: disable=g-import-not-at-top
  space = (space_lib.parse(dict(space_lib.SR_SWEEP if FLAGS.sweep == "sr" else space_lib.PCT3X3_SWEEP,
                                batch_norm=True)) if FLAGS.sweep else space_lib.parse(FLAGS.space))
  cfg = tuner_lib.SearchConfig(
      space=space, model=FLAGS.model, tuner=FLAGS.tuner, max_trials=FLAGS.max_trials, epochs=FLAGS.epochs,
      steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
      seed=FLAGS.seed, classes=FLAGS.classes, directory=FLAGS.directory, project_name=FLAGS.project_name,
      overwrite=FLAGS.overwrite, verbose=FLAGS.verbose, worker_timeout=FLAGS.worker_timeout,
      budget=tuner_lib.Budget(FLAGS.max_params, FLAGS.max_macs, FLAGS.max_bytes, FLAGS.size_density, FLAGS.size_bits))
  out = tuner_lib.run(cfg, sq_flags.data_spec_from_flags(), log=reporting.progress)
  if "worker" in out:
    reporting.progress(f"worker {out['worker']}: the search is done; this worker ran {out['trials_run']} trials")
    return
  if FLAGS.format == "json":
    reporting.print_json(out)
  else:
    _print_table(out)
  for lost in out.get("lost_workers", []):
    reporting.progress(f"worker {lost['worker']} was lost (nothing from it for --worker_timeout={FLAGS.worker_timeout:g} "
                       f"s): its trial {lost['trial']} failed")
  if "stopped" in out:
    again = ("start workers and rerun the search (a grid search does not resume)" if FLAGS.tuner == "grid" else
             "start workers and rerun the chief with --nooverwrite to go on")
    raise SqznetError(f"the search stopped without its workers: {out['stopped']}; the results so far are in "
                      f"{os.path.join(out['directory'], 'results.json')}; {again}")


def _print_table(out) -> None:
  rows = out["trials"]
  names = sorted({k for r in rows for k in r["values"]})
  table = [dict({"trial": r["trial"], "status": r["status"]}, **{k: r["values"].get(k, "") for k in names},
                val_accuracy="" if r["val_accuracy"] is None else f"{r['val_accuracy']:.4f}", params=r["params"],
                macs=r["macs"], size_bytes=r["bytes"], note=r["note"]) for r in rows]
  print(reporting.table(table, ["trial", "status", *names, "val_accuracy", "params", "macs", "size_bytes", "note"]))
  if "best" in out:
    print(f"\nbest: {out['best']['values']} val_accuracy {out['best']['val_accuracy']:.4f} -> {out['best']['model']}")
    print("Pareto front (accuracy vs parameters): " + ", ".join(
        f"trial {r['trial']} ({r['params']:,} params, {r['val_accuracy']:.3f})" for r in out["pareto"]))
  print(f"results: {os.path.join(out['directory'], 'results.json')}; TensorBoard HParams: tensorboard --logdir "
        f"{out['logs']}")


def run():
  sq_flags.run_main(main, resume="rerun with --nooverwrite to resume the search")


if __name__ == "__main__":
  run()
