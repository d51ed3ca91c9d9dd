"""Design-space search with keras-tuner: a HyperModel over the SqueezeNet metaparameters, budgets.

`SqueezeNetHyperModel.build(hp)` only maps hyperparameters to a registry config and calls the
registry builder. `make_tuner` returns keras-tuner's RandomSearch, GridSearch, Hyperband or
BayesianOptimization with one change: a trial whose network is over a budget (parameters,
multiply-accumulates, or Deep Compression size) is recorded as failed with the reason and its
cost, without training, and the search goes on. keras-tuner's chief/worker mode
(KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT) works unchanged.
"""

import dataclasses
import errno
import json
import os
import socket
from typing import Dict, List, Optional, Tuple

from sqznet_tf._keras import keras, keras_tuner
from sqznet_tf.analysis import analyze_model
from sqznet_tf.analysis.storage import check_bits, check_density
from sqznet_tf.data import pipeline
from sqznet_tf.errors import SqznetError
from sqznet_tf.io import save_figure, write_json_atomic
from sqznet_tf.models import build, get_config, pointwise
from sqznet_tf.search import space as space_lib
from sqznet_tf.search.space import ARCH_PARAMS, SearchSpace
from sqznet_tf.search.watch import MIN_TIMEOUT_S, Heartbeat, WorkerWatch, chief_error
from sqznet_tf.training import optimizers
from sqznet_tf.weights import WeightsInfo, save_model

TUNERS = ("random", "grid", "hyperband", "bayesian")
OBJECTIVE = "val_accuracy"
REJECTED = "over budget"

kt = keras_tuner()


def _quiet_failed_trials() -> None:
  """keras-tuner prints the traceback of every failed trial (config.DEBUG); a rejected candidate
  is not an error here, and the trial keeps its message either way."""
  import importlib  # pylint: disable=g-import-not-at-top  (only to quieten keras-tuner)
  try:
    importlib.import_module("keras_tuner.src.config").DEBUG = False
  except ImportError:  # another layout of keras-tuner: tracebacks stay on
    pass


_quiet_failed_trials()


@dataclasses.dataclass
class Budget:
  """Limits a candidate must meet to be trained; None means no limit.

  Attributes:
    max_params: parameters.
    max_macs: multiply-accumulates per image at the search's input size.
    max_bytes: Deep Compression size (codebooks, `bits`-bit codes and 4-bit indices at
      `density`, float32 biases; see analysis.storage) in bytes.
    density, bits: of that size.
  """
  max_params: Optional[int] = None
  max_macs: Optional[int] = None
  max_bytes: Optional[int] = None
  density: float = 1.0
  bits: int = 32

  def check(self, cost: Dict[str, int]) -> Optional[str]:
    """The reason `cost` is over budget, or None."""
    for key, limit in (("params", self.max_params), ("macs", self.max_macs), ("bytes", self.max_bytes)):
      if limit is not None and cost[key] > limit:
        return f"{key} {cost[key]:,} > {limit:,}"
    return None


class SqueezeNetHyperModel(kt.HyperModel):
  """A SqueezeNet of the registry whose metaparameters come from the search space.

  Args:
    space: what is searched and what is fixed.
    model: registry name of the base network (its values stand for what the space leaves out).
    input_shape, classes: of the networks built.
    learning_rate, momentum: SGD defaults when the space does not search them.
  """

  def __init__(self, space: SearchSpace, model: str = "squeezenet_v1_0", input_shape=(32, 32, 3),
               classes: int = 10, learning_rate: float = 0.04, momentum: float = 0.9):
    super().__init__(name=f"{model}_search", tunable=True)
    self.space = space
    self.model = model
    self.input_shape = tuple(input_shape)
    self.classes = classes
    self.learning_rate = learning_rate
    self.momentum = momentum
    self._costs = {}  # (hyperparameter values, budget size setting) -> cost: each network is built once

  def values(self, hp) -> Dict:
    """Registers the space's hyperparameters with `hp`; returns their values."""
    out = {}
    for name, p in self.space.params.items():
      if p.kind == "fixed":
        out[name] = hp.Fixed(name, p.values[0])
      elif p.kind == "choice":
        out[name] = hp.Choice(name, p.values, ordered=all(isinstance(v, (int, float)) for v in p.values))
      elif p.kind == "int":
        out[name] = hp.Int(name, int(p.min), int(p.max), step=int(p.step) if p.step else 1, sampling=p.sampling)
      else:
        out[name] = hp.Float(name, float(p.min), float(p.max), step=p.step, sampling=p.sampling)
    return out

  def config(self, hp):
    """The registry config the hyperparameters describe."""
    values = self.values(hp)
    overrides = {k: v for k, v in values.items() if k in ARCH_PARAMS or k == "dropout"}
    return get_config(self.model, **overrides), values.get("learning_rate", self.learning_rate)

  def build(self, hp):
    config, lr = self.config(hp)
    model = build(config, input_shape=self.input_shape, classes=self.classes)
    # A trial's model is only trained and scored: its 1x1 convolutions run as matrix products, as
    # train() runs them (the same numbers, less time per step on CPUs; models/pointwise.py).
    pointwise.use_matmul(pointwise.pointwise_layers(model))
    optimizers.compile_model(model, optimizer=keras.optimizers.SGD(lr, momentum=self.momentum),
                             loss=keras.losses.CategoricalCrossentropy(),
                             metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                                      keras.metrics.TopKCategoricalAccuracy(5, name="top5")])
    return model

  def cost(self, hp, budget: Budget) -> Dict[str, int]:
    """Parameters, MACs and Deep Compression bytes of the network `hp` describes (no training)."""
    config, _ = self.config(hp)
    key = (repr(sorted((k, v) for k, v in hp.values.items() if not k.startswith("tuner/"))),
           budget.density, budget.bits)
    if key not in self._costs:
      report = analyze_model(build(config, input_shape=self.input_shape, classes=self.classes))
      size = report.sizes(budget.density, budget.bits)["deep_compression"]["total"]
      self._costs[key] = {"params": report.params, "macs": report.macs, "bytes": size}
    return dict(self._costs[key])


class _BudgetMixin:
  """run_trial that rejects over-budget candidates before training them; in a distributed search,
  the workers' heartbeats and the chief's `WorkerWatch` (sqznet_tf.search.watch)."""

  def __init__(self, *args, budget: Optional[Budget] = None, worker_timeout: float = 0.0, **kwargs):
    self.budget = budget or Budget()
    self.trials_run = 0  # by this process (a worker's share of a distributed search)
    self.worker_timeout = worker_timeout
    self.watch = None  # the chief's, once it has searched with a worker timeout
    super().__init__(*args, **kwargs)

  def search(self, *args, **kwargs):
    """keras-tuner's search; on the chief under a `WorkerWatch` (worker_timeout > 0); on a worker, the
    chief's gRPC errors as one-line SqznetErrors."""
    if is_chief() and self.worker_timeout:
      self.watch = WorkerWatch(self.oracle, self.worker_timeout).start()
    try:
      return super().search(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except  (gRPC's errors reach a worker as they are)
      line = chief_error(e) if is_worker() else None
      if line:
        raise SqznetError(line) from None
      raise
    finally:
      if self.watch:
        self.watch.close()

  def run_trial(self, trial, *args, **kwargs):
    self.trials_run += 1
    cost = self.hypermodel.cost(trial.hyperparameters, self.budget)
    reason = self.budget.check(cost)
    if reason:
      raise kt.errors.FailedTrialError(f"{REJECTED}: {reason}")
    if not is_worker():
      return super().run_trial(trial, *args, **kwargs)
    with Heartbeat(self.oracle, trial.trial_id):  # the chief's WorkerWatch hears that it is alive
      return super().run_trial(trial, *args, **kwargs)


def _tuner_class(name: str):
  base = {"random": kt.RandomSearch, "grid": kt.GridSearch, "hyperband": kt.Hyperband,
          "bayesian": kt.BayesianOptimization}
  if name not in base:
    raise SqznetError(f"tuner {name!r} is not accepted; expected one of {', '.join(TUNERS)}")
  return type(f"Budget{base[name].__name__}", (_BudgetMixin, base[name]), {})


def make_tuner(name: str, hypermodel: SqueezeNetHyperModel, directory: str, project_name: str = "search",
               max_trials: int = 10, max_epochs: int = 3, overwrite: bool = False, seed: int = 0,
               budget: Optional[Budget] = None, worker_timeout: float = 0.0):
  """A keras-tuner tuner of kind `name` (random, grid, hyperband, bayesian) with the budget check.

  Args:
    max_trials: trials to run (random, grid, bayesian; grid stops earlier when the grid is done).
    max_epochs: Hyperband's largest training length.
    overwrite: start afresh; False resumes the search found in directory/project_name. A keras-tuner
      worker (KERASTUNER_TUNER_ID other than chief) never does: starting afresh deletes the project
      folder, and a worker that joined late would delete the trials and checkpoints the others wrote
      (a worker keeps no state of its own there; the chief starts afresh before it serves the oracle).
    worker_timeout: on a distributed search's chief, the `WorkerWatch`'s timeout (0: none, keras-tuner's
      wait for every worker); at least `watch.MIN_TIMEOUT_S` otherwise.
  """
  if name == "grid" and not overwrite and os.path.exists(os.path.join(directory, project_name, "oracle.json")):
    # keras-tuner's GridSearch keeps its queue of grid points in memory: resumed, it runs no new point
    # alone, and a distributed chief's oracle fails on a worker's first request.
    raise SqznetError(f"a grid search does not resume (--nooverwrite, {os.path.join(directory, project_name)}):"
                      " keras-tuner keeps its grid in memory; rerun it from the start, or use --tuner=random")
  overwrite = overwrite and not is_worker()
  if worker_timeout and worker_timeout < MIN_TIMEOUT_S:
    raise SqznetError(f"--worker_timeout={worker_timeout:g} is not accepted; expected 0 (wait forever) or at "
                      f"least {MIN_TIMEOUT_S:g} s (two of the workers' heartbeats)")
  cls = _tuner_class(name)
  objective = kt.Objective(OBJECTIVE, direction="max")
  common = dict(hypermodel=hypermodel, objective=objective, directory=directory, project_name=project_name,
                overwrite=overwrite, seed=seed, budget=budget, worker_timeout=worker_timeout,
                max_consecutive_failed_trials=10 ** 6)
  if name == "hyperband":
    return cls(max_epochs=max_epochs, **common)
  tuner = cls(max_trials=max_trials, **common)
  # A resumed search reloads the oracle with its old max_trials: the flag's value wins, so the
  # same command finishes an interrupted search and a larger --max_trials extends a finished one.
  tuner.oracle.max_trials = max_trials
  return tuner


@dataclasses.dataclass
class TrialRow:
  trial: str
  status: str
  values: Dict
  val_accuracy: Optional[float]
  params: int
  macs: int
  bytes: int
  note: str = ""

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def trial_rows(tuner) -> List[TrialRow]:
  """One row per trial of the search (completed, rejected or failed), with its network's cost."""
  rows = []
  for tid, trial in sorted(tuner.oracle.trials.items()):
    hp = trial.hyperparameters
    try:
      cost = tuner.hypermodel.cost(hp, tuner.budget)
    except SqznetError as e:
      cost, note = {"params": 0, "macs": 0, "bytes": 0}, str(e)
    else:
      note = ""
    message = (getattr(trial, "message", None) or "").strip()
    status = str(trial.status)
    if REJECTED in message:
      status = "REJECTED"
      note = message[message.index(REJECTED):].splitlines()[0]
    elif status == "FAILED" and message:
      note = message.strip().splitlines()[-1][:200]
    score = trial.score if trial.status == "COMPLETED" else None
    values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
    rows.append(TrialRow(str(tid), status, values, None if score is None else float(score), cost["params"],
                         cost["macs"], cost["bytes"], note))
  return rows


def pareto(rows: List[TrialRow], key: str = "params") -> List[TrialRow]:
  """Completed trials no other completed trial beats on both accuracy and `key` (smaller)."""
  done = [r for r in rows if r.val_accuracy is not None]
  front = []
  for r in done:
    if not any((o.val_accuracy >= r.val_accuracy and getattr(o, key) <= getattr(r, key)) and
               (o.val_accuracy > r.val_accuracy or getattr(o, key) < getattr(r, key)) for o in done):
      front.append(r)
  return sorted(front, key=lambda r: getattr(r, key))


def plot(rows: List[TrialRow], path: str, title: str = "") -> None:
  """PNG: accuracy vs parameters and vs MACs (Pareto front marked), and the SR / pct3x3 sweeps."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (heavy, only when a figure is drawn)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top  (heavy, only when a figure is drawn)
  done = [r for r in rows if r.val_accuracy is not None]
  sweeps = [k for k in ("squeeze_ratio", "pct3x3") if len({r.values.get(k) for r in done}) > 1]
  fig, axes = plt.subplots(1, 2 + len(sweeps), figsize=(5 * (2 + len(sweeps)), 4), squeeze=False)
  for ax, key, label in ((axes[0][0], "params", "parameters"), (axes[0][1], "macs", "MACs per image")):
    ax.scatter([getattr(r, key) for r in done], [r.val_accuracy for r in done], label="trials")
    front = pareto(rows, key)
    ax.plot([getattr(r, key) for r in front], [r.val_accuracy for r in front], "r-o", label="Pareto front")
    rejected = [r for r in rows if r.status == "REJECTED"]
    for r in rejected:
      ax.axvline(getattr(r, key), color="grey", alpha=0.3, lw=1)
    ax.set_xlabel(label + (" (grey: rejected, over budget)" if rejected else ""))
    ax.set_ylabel("validation accuracy")
    ax.set_xscale("log")
    ax.legend()
  for ax, key in zip(axes[0][2:], sweeps):
    pts = sorted((r.values[key], r.val_accuracy, r.bytes) for r in done if key in r.values)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "b-o")
    ax.set_xlabel({"squeeze_ratio": "squeeze ratio (SR)", "pct3x3": "share of 3x3 filters (pct3x3)"}[key])
    ax.set_ylabel("validation accuracy", color="b")
    twin = ax.twinx()
    twin.plot([p[0] for p in pts], [p[2] / 2 ** 20 for p in pts], "g--s")
    twin.set_ylabel("model size, MiB (at the budget's density/bits)", color="g")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  try:
    save_figure(fig, path, dpi=90)
  finally:
    plt.close(fig)


def is_worker() -> bool:
  """Whether this process is a keras-tuner worker (KERASTUNER_TUNER_ID other than chief)."""
  tid = os.environ.get("KERASTUNER_TUNER_ID")
  return bool(tid) and tid != "chief"


def is_chief() -> bool:
  return os.environ.get("KERASTUNER_TUNER_ID") == "chief"


def check_oracle_port():
  """On the chief: the oracle's address (KERASTUNER_ORACLE_IP / _PORT) is given and nothing listens there.

  keras-tuner's gRPC server binds with SO_REUSEPORT, so a second server on the same port (another
  search's chief, any gRPC server) would not fail: the kernel would share the workers' connections
  between the two, and the chief would wait for trials that never come. Checked here instead, with a
  clear error; a port held by a plain socket gets the same error rather than gRPC's bind failure.
  """
  ip, port = os.environ.get("KERASTUNER_ORACLE_IP"), os.environ.get("KERASTUNER_ORACLE_PORT")
  if not ip or not port:
    raise SqznetError("KERASTUNER_TUNER_ID=chief needs KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT "
                      "(the address the chief serves the oracle on)")
  if not port.isdigit() or not 0 < int(port) < 65536:
    raise SqznetError(f"KERASTUNER_ORACLE_PORT={port} is not accepted; expected a TCP port, 1-65535")
  try:
    infos = socket.getaddrinfo(ip, int(port), type=socket.SOCK_STREAM)
  except OSError as e:
    raise SqznetError(f"KERASTUNER_ORACLE_IP={ip} cannot be resolved: {e}") from None
  family, kind, proto, _, address = infos[0]
  with socket.socket(family, kind, proto) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed server's TIME_WAIT is no conflict
    try:
      s.bind(address)
    except OSError as e:
      if e.errno == errno.EADDRNOTAVAIL:
        raise SqznetError(f"KERASTUNER_ORACLE_IP={ip} is not an address of this machine; the chief serves "
                          "the oracle on one of its own addresses") from None
      raise SqznetError(f"KERASTUNER_ORACLE_PORT={port} on {ip} is in use ({e.strerror}); another chief or "
                        "server holds it: pick a free port for the chief and its workers") from None


def best(tuner) -> Tuple[object, Dict]:
  """The best trained model and its hyperparameter values."""
  trials = tuner.oracle.get_best_trials(1)
  if not trials:
    raise SqznetError("no trial completed (all were rejected or failed); loosen the budget or the space")
  # As tuner.load_model, but the checkpoint's optimizer slots are not wanted: say so, rather than
  # have TensorFlow warn about each of them at exit.
  model = tuner.hypermodel.build(trials[0].hyperparameters)
  pointwise.use_convolution(pointwise.pointwise_layers(model))  # a model for users: its convolutions back
  status = model.load_weights(tuner._get_checkpoint_fname(trials[0].trial_id))  # pylint: disable=protected-access
  if hasattr(status, "expect_partial"):
    status.expect_partial()
  values = {k: v for k, v in trials[0].hyperparameters.values.items() if not k.startswith("tuner/")}
  return model, values


@dataclasses.dataclass
class SearchConfig:
  """One sqznet-tune search (see the binary's flags for each field)."""
  space: SearchSpace
  model: str = "squeezenet_v1_0"
  tuner: str = "random"
  max_trials: int = 10
  epochs: int = 3
  steps_per_epoch: Optional[int] = None
  batch_size: int = 64
  learning_rate: float = 0.04
  seed: int = 0
  classes: Optional[int] = None
  budget: Budget = dataclasses.field(default_factory=Budget)
  directory: str = "runs/tune"
  project_name: str = "search"
  overwrite: bool = True
  verbose: int = 1
  worker_timeout: float = 600.0  # distributed, on the chief: see watch.WorkerWatch; 0 waits forever


def run(cfg: SearchConfig, data_spec, log=lambda s: None) -> dict:
  """What sqznet-tune runs: the search, then (on the chief) results.json, the best model and a plot.

  Returns the results (also in <directory>/<project_name>/results.json); on a worker, only
  {"worker": id, "trials_run": n}. On a distributed search's chief (cfg.worker_timeout > 0), a
  `WorkerWatch` fails the trials of lost workers ("lost_workers" in the results) and stops a search
  that no worker serves any more ("stopped": why, when that came before the search's end).
  """
  if cfg.tuner not in TUNERS:
    raise SqznetError(f"--tuner={cfg.tuner} is not accepted; expected one of {', '.join(TUNERS)}")
  space = cfg.space
  space_lib.check_buildable(space, cfg.model)
  if cfg.tuner == "grid":
    bad = [n for n in space.searched if space.params[n].kind not in ("choice",) and space.params[n].step is None]
    if bad:
      raise SqznetError(f"grid search needs lists or stepped ranges; {', '.join(bad)} is a continuous range")
  check_density(cfg.budget.density)
  check_bits(cfg.budget.bits, "size_bits")
  if is_chief():
    check_oracle_port()
  data = pipeline.make_datasets(data_spec, cfg.batch_size, cfg.classes)
  if data.val is None:
    raise SqznetError("the search needs validation data: give --val_data or --val_split > 0")
  size = data_spec.image_size
  hypermodel = SqueezeNetHyperModel(space, cfg.model, (size, size, 3), data.num_classes, cfg.learning_rate)
  tuner = make_tuner(cfg.tuner, hypermodel, cfg.directory, cfg.project_name, cfg.max_trials, cfg.epochs,
                     cfg.overwrite, cfg.seed, cfg.budget, cfg.worker_timeout)
  project = os.path.join(cfg.directory, cfg.project_name)
  steps = cfg.steps_per_epoch or max(1, data.train_size // cfg.batch_size)
  logs = os.path.join(project, "logs")
  search_args = dict(validation_data=data.val, steps_per_epoch=steps, verbose=cfg.verbose,
                     callbacks=[keras.callbacks.TensorBoard(logs, histogram_freq=0)])
  if cfg.tuner != "hyperband":
    search_args["epochs"] = cfg.epochs
  log(f"{cfg.tuner} search over {', '.join(space.searched)} "
      f"({data.train_size} training / {data.val_size} validation images)")
  tuner.search(data.train.repeat(), **search_args)
  watch = tuner.watch
  if is_worker():  # the chief has the trials and writes the results
    return {"worker": os.environ.get("KERASTUNER_TUNER_ID"), "trials_run": tuner.trials_run}
  rows = trial_rows(tuner)
  out = {"tuner": cfg.tuner, "model": cfg.model, "space": space.to_dict(), "directory": project,
         "budget": dict(vars(cfg.budget)), "trials": [r.to_dict() for r in rows], "logs": logs}
  if watch and watch.lost:
    out["lost_workers"] = [{"worker": w, "trial": t} for w, t in watch.lost]
  if watch and watch.stopped and not watch.search_done:
    out["stopped"] = watch.stopped  # before the search's end: the trials not run are not in the results
  if any(r.val_accuracy is not None for r in rows):
    model, values = best(tuner)
    path = os.path.join(project, "best_model.keras")
    info = WeightsInfo(name="best_model.keras", architecture=cfg.model, classes=data.num_classes,
                       preprocessing=data.preprocessing, labels=", ".join(data.class_names[:20]),
                       source=f"sqznet-tune {cfg.tuner} search, hyperparameters {json.dumps(values)}")
    save_model(model, path, info)
    out["best"] = {"values": values, "model": path,
                   "val_accuracy": max(r.val_accuracy for r in rows if r.val_accuracy is not None)}
    plot(rows, os.path.join(project, "search.png"), f"{cfg.model}: {cfg.tuner} search")
    out["plot"] = os.path.join(project, "search.png")
    out["pareto"] = [r.to_dict() for r in pareto(rows)]
  write_json_atomic(os.path.join(project, "results.json"), out)
  return out
