"""Channel pruning of a loaded model to a budget, with fine-tuning: what sqznet-prune-channels runs.

Each step scores the channel units of the current model (`channel_select`), removes the lowest to
that step's target (`channels.shrink`: a smaller network of the same registry family, its widths as
config data, the surviving weights copied in) and fine-tunes it with `train()`. One step prunes to
the final target at once; several prune a little, fine-tune, and repeat, the targets falling
geometrically from the original cost to the final one.

Run folder (OUT):
  step1/ ... stepN/     pruned.weights.h5 (right after the surgery, with its metadata), then the
                        fine-tuning run (checkpoints, logs, final.weights.h5) when it has epochs
  final.weights.h5      the result, with metadata naming the architecture and its widths:
                        OUT loads as a model form in every binary (--weights=OUT)
  prune_summary.json    before/after parameters, MACs, accuracy and latency, per step

Rerunning the same command resumes: a finished step is not redone; an interrupted fine-tuning run
resumes from its checkpoints; the surgery of a step is done once (its pruned.weights.h5 is reused).
"""

import dataclasses
import os
import statistics
from typing import Callable, List, Optional

import numpy as np

from sqznet_tf import loading
from sqznet_tf import weights as weights_lib
from sqznet_tf._keras import keras
from sqznet_tf.analysis.cost import analyze_model
from sqznet_tf.errors import SqznetError
from sqznet_tf.formats.metadata import WeightsInfo, read_info
from sqznet_tf.inference import Predictor
from sqznet_tf.io import read_json, write_json_atomic
from sqznet_tf.models import configs
from sqznet_tf.pruning import channel_select
from sqznet_tf.pruning.channels import channel_units, shrink, width_overrides
from sqznet_tf.reporting import median_seconds
from sqznet_tf.training.config import TrainConfig
from sqznet_tf.training.train import train

PRUNED, FINAL, SUMMARY = "pruned.weights.h5", "final.weights.h5", "prune_summary.json"
LATENCY_TARGET = "latency_target.json"
METRICS = channel_select.METRICS + ("latency",)


@dataclasses.dataclass
class ChannelPruneConfig:
  """One channel-pruning run.

  Attributes:
    weights: the model to prune (any form `sqznet_tf.load_model` takes); model, overrides, classes and
      input_size as there.
    metric, target: the budget: "macs" or "params" of what remains, as a fraction of the original
      (0 < target < 1) or a count; or "latency": a fraction of the original's measured TF latency at
      batch `latency_batch`, turned into a MACs target by measuring pruned candidates (bisection; the
      MACs found are kept in OUT/latency_target.json, so a rerun prunes to the same network).
    criterion, mode, min_keep, round_to: see `channel_select.select` (round_to 8: every layer keeps a
      multiple of 8 channels; measured, odd widths cancel the speed-up in TF with oneDNN).
    steps: prune-and-fine-tune rounds.
    epochs: fine-tuning epochs over all steps (0: prune only).
    train: the fine-tuning runs' setup (data, optimiser, schedule; its epochs are set per step), and the
      data of the taylor criterion; None: no fine-tuning.
    taylor_batches: training batches the taylor criterion averages over.
    bn_batches: training batches that re-estimate the batch-norm statistics after each surgery
      (`recalibrate_batch_norm`; needs `train`).
    out_dir: the run folder.
  """
  weights: str
  metric: str = "macs"
  target: float = 0.5
  latency_batch: int = 32
  criterion: str = "l1"
  mode: str = "uniform"
  min_keep: float = 0.1
  round_to: int = 8
  steps: int = 1
  epochs: int = 0
  train: Optional[TrainConfig] = None
  taylor_batches: int = 8
  bn_batches: int = 20
  model: Optional[str] = None
  overrides: dict = dataclasses.field(default_factory=dict)
  classes: Optional[int] = None
  input_size: Optional[int] = None
  out_dir: str = "runs/prune_channels"

  def validate(self) -> None:
    if self.metric not in METRICS:
      raise SqznetError(f"metric={self.metric!r} is not accepted; expected one of {', '.join(METRICS)}")
    if self.metric == "latency" and not 0 < self.target < 1:
      raise SqznetError(f"a latency target of {self.target!r} is not accepted; expected a fraction in (0, 1) of "
                        "the original's measured latency")
    if self.criterion not in channel_select.CRITERIA:
      raise SqznetError(f"criterion={self.criterion!r} is not accepted; expected one of "
                        f"{', '.join(channel_select.CRITERIA)}")
    if self.mode not in channel_select.MODES:
      raise SqznetError(f"mode={self.mode!r} is not accepted; expected one of {', '.join(channel_select.MODES)}")
    if isinstance(self.target, bool) or not isinstance(self.target, (int, float)) or not self.target > 0:
      raise SqznetError(f"target={self.target!r} is not accepted; expected a fraction in (0, 1) of the original "
                        f"{self.metric}, or a count")
    if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
      raise SqznetError(f"steps={self.steps!r} is not accepted; expected an integer >= 1")
    if not 0 <= self.min_keep < 1:
      raise SqznetError(f"min_keep={self.min_keep!r} is not accepted; expected a fraction in [0, 1)")
    if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
      raise SqznetError(f"epochs={self.epochs!r} is not accepted; expected an integer >= 0")
    if self.epochs and self.train is None:
      raise SqznetError("fine-tuning epochs need a training setup (data)")
    if self.criterion == "taylor" and self.train is None:
      raise SqznetError("criterion taylor needs training data (--data) for its gradients")


def step_epochs(total: int, steps: int) -> List[int]:
  """`total` epochs spread over `steps` (the later steps get the remainder)."""
  return [total // steps + (1 if i >= steps - total % steps else 0) for i in range(steps)]


def step_targets(full: int, target: int, steps: int) -> List[int]:
  """Geometric path from `full` to `target` in `steps` steps (the last is `target`)."""
  return [int(round(full * (target / full) ** ((s + 1) / steps))) for s in range(steps - 1)] + [target]


def latency_ms(model, batch: int, runs: int = 20) -> float:
  """Median milliseconds of one compiled forward pass at `batch` (3 untimed warm-up calls)."""
  fn = Predictor(model)
  x = np.random.default_rng(0).uniform(-1, 1, (batch, *model.input_shape[1:])).astype(np.float32)
  return round(1000 * median_seconds(lambda: fn(x), runs), 3)


def _cost(model) -> dict:
  r = analyze_model(model)
  return {"params": int(r.params), "macs": int(r.macs)}


def _info(base: Optional[WeightsInfo], architecture: str, overrides: dict, model, name: str) -> WeightsInfo:
  if base is not None:
    return WeightsInfo.from_dict(dict(base.to_dict(), name=name, architecture=architecture, overrides=overrides,
                                      sha256="", source=base.name))
  from sqznet_tf.formats.metadata import PRESETS  # pylint: disable=g-import-not-at-top
  return WeightsInfo(name=name, architecture=architecture, classes=int(model.output_shape[-1]),
                     preprocessing=PRESETS["caffe"], overrides=overrides)


def _load(path: str, input_size: int):
  return loading.load_model(path, input_size=input_size)


def _batches(cfg: ChannelPruneConfig, classes: int, n: int):
  """`n` batches of the training data (augmented as for training)."""
  from sqznet_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  data = pipeline.make_datasets(cfg.train.data, cfg.train.batch_size, num_classes=classes)
  return [(x, y) for x, y in data.train.take(n)]


def recalibrate_batch_norm(model, batches) -> None:
  """Re-estimates every batch norm's moving mean and variance as the average over `batches` (dropout
  off). After channels go, the layers behind them sum fewer inputs: their statistics change, and
  the stored ones would scale the activations wrongly (measured on the shipped CIFAR-10 model at
  half its MACs: 10% top-1 one-shot, 47% after 20 batches of 128 photos)."""
  bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  if not bns:
    return
  drops = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
  momenta, rates = [b.momentum for b in bns], [d.rate for d in drops]
  try:
    for d in drops:
      d.rate = 0.0
    for k, (x, _) in enumerate(batches):
      for b in bns:
        b.momentum = k / (k + 1)  # the running average of the batch statistics
      model(x, training=True)
  finally:
    for b, m in zip(bns, momenta):
      b.momentum = m
    for d, r in zip(drops, rates):
      d.rate = r


def macs_for_latency(model, config, units, scores, fraction: float, cfg: ChannelPruneConfig, runs: int = 10,
                     iterations: int = 7, log: Callable[[str], None] = lambda s: None) -> int:
  """The largest MACs target whose pruned network runs in at most `fraction` of `model`'s TF latency at
  batch cfg.latency_batch (bisection over pruned candidates, each timed beside the original)."""
  cost = channel_select.CostModel(model, units)
  full = cost.cost([])["macs"]

  def candidate(macs):
    drop = channel_select.select(units, scores, cost, "macs", macs, cfg.mode, cfg.min_keep, cfg.round_to)
    _, m = shrink(model, config, units, drop, compensate=False)
    ratio = statistics.median(latency_ms(m, cfg.latency_batch, runs) / latency_ms(model, cfg.latency_batch, runs)
                              for _ in range(3))
    return ratio
  lo, hi = cost.cost(channel_select.smallest(units, scores, cfg.min_keep, cfg.round_to))["macs"] / full, 1.0
  floor_ratio = candidate(int(np.ceil(lo * full)))  # MACs fractions: lo meets the latency target, hi does not
  if floor_ratio > fraction:
    raise SqznetError(f"latency target {fraction:g} is out of reach: the smallest network the floors allow runs "
                      f"in {floor_ratio:.2f} of the original's time (lower --min_keep, or aim higher)")
  for _ in range(iterations):
    mid = (lo + hi) / 2
    ratio = candidate(int(mid * full))
    log(f"latency search: {mid:.3f} of the MACs runs in {ratio:.3f} of the time")
    if ratio <= fraction:
      lo = mid
    else:
      hi = mid
  return int(np.ceil(lo * full))


def run(cfg: ChannelPruneConfig, accuracy: Optional[Callable] = None, latency_runs: int = 20,
        log: Callable[[str], None] = lambda s: None, loaded=None) -> dict:
  """Loads, prunes and fine-tunes (see the module doc); returns the summary (also written to OUT).

  Args:
    accuracy: model -> top-1 on held-out photos (measured before and after); None: not measured.
    latency_runs: timed calls per latency figure (0: no latency).
    loaded: (model, WeightsInfo) as `sqznet_tf.load_model` returned them for cfg, when the caller has them.
  """
  cfg.validate()
  original, info = loaded or loading.load_model(cfg.weights, model=cfg.model, overrides=cfg.overrides, classes=cfg.classes,
                                      input_size=cfg.input_size)
  src = loading.source_of(original) or {}
  architecture = src.get("architecture")
  if not architecture:
    raise SqznetError(f"{cfg.weights}: the model does not say which registry network it is; channel pruning "
                      "rebuilds a smaller one of the same family: give --model (and its overrides)")
  base_overrides = dict(src.get("overrides") or {})
  size = int(original.input_shape[1])
  classes = int(original.output_shape[-1])
  before = _cost(original)
  units = channel_units(original)
  if not units:
    raise SqznetError(f"{original.name} has no channel that can be removed")
  metric = "macs" if cfg.metric == "latency" else cfg.metric
  if cfg.metric == "latency":
    path = os.path.join(cfg.out_dir, LATENCY_TARGET)
    if os.path.exists(path):
      target = read_json(path, "latency target")["macs"]
    else:
      config = configs.get_config(architecture, **base_overrides)
      batches = _batches(cfg, classes, cfg.taylor_batches) if cfg.criterion == "taylor" else None
      scores = channel_select.normalise(units, channel_select.scores(original, units, cfg.criterion, batches))
      target = macs_for_latency(original, config, units, scores, cfg.target, cfg, log=log)
      os.makedirs(cfg.out_dir, exist_ok=True)
      write_json_atomic(path, {"fraction": cfg.target, "batch": cfg.latency_batch, "macs": target})
    log(f"latency target {cfg.target:g} at batch {cfg.latency_batch}: {target:,} MACs")
  else:
    target = channel_select.resolve_target(cfg.target, metric, before[metric])
  os.makedirs(cfg.out_dir, exist_ok=True)
  epochs = step_epochs(cfg.epochs, cfg.steps)
  targets = step_targets(before[metric], target, cfg.steps)
  model, overrides, rows = original, base_overrides, []
  for s, (step_target, step_ep) in enumerate(zip(targets, epochs), start=1):
    step_dir = os.path.join(cfg.out_dir, f"step{s}")
    pruned_path = os.path.join(step_dir, PRUNED)
    done = os.path.join(step_dir, FINAL) if step_ep else pruned_path
    if os.path.exists(done):
      log(f"step {s}/{cfg.steps}: done ({done})")
      model, _ = _load(done, size)
      overrides = dict(read_info(done).overrides)
    else:
      if os.path.exists(pruned_path):
        log(f"step {s}/{cfg.steps}: the surgery was done ({pruned_path}); fine-tuning resumes")
        model, _ = _load(pruned_path, size)
        overrides = dict(read_info(pruned_path).overrides)
      else:
        config = configs.get_config(architecture, **overrides)
        units = channel_units(model)
        batches = _batches(cfg, classes, cfg.taylor_batches) if cfg.criterion == "taylor" else None
        raw = channel_select.scores(model, units, cfg.criterion, batches)
        cost = channel_select.CostModel(model, units)
        drop = channel_select.select(units, channel_select.normalise(units, raw), cost, metric, step_target,
                                     cfg.mode, cfg.min_keep, cfg.round_to, log)
        new_config, model = shrink(model, config, units, drop)
        overrides = dict(overrides, **width_overrides(new_config))
        if cfg.train is not None and cfg.bn_batches:
          recalibrate_batch_norm(model, _batches(cfg, classes, cfg.bn_batches))
        os.makedirs(step_dir, exist_ok=True)
        weights_lib.save_weights(model, pruned_path, _info(info, architecture, overrides, model, PRUNED))
        log(f"step {s}/{cfg.steps}: {len(drop)} units removed, {metric} {cost.cost(drop)[metric]:,} "
            f"(target {step_target:,})")
      if step_ep:
        tc = dataclasses.replace(cfg.train, model=architecture, overrides=overrides, epochs=step_ep,
                                 init_weights=pruned_path, model_dir=step_dir, classes=classes)
        model = train(tc).model
    after = _cost(model)
    rows.append(dict(step=s, target=step_target, epochs=step_ep, **after))
  final_info = _info(info, architecture, overrides, model, "prune_channels")
  weights_lib.save_weights(model, os.path.join(cfg.out_dir, FINAL), final_info)
  summary = {"weights": str(cfg.weights), "architecture": architecture, "overrides": _jsonable(overrides),
             "criterion": cfg.criterion, "mode": cfg.mode, "metric": cfg.metric, "target": target,
             "steps": rows, "before": before, "after": after,
             "macs_ratio": round(before["macs"] / after["macs"], 3),
             "params_ratio": round(before["params"] / after["params"], 3)}
  if accuracy is not None:
    log("accuracy before and after")
    summary["before"]["top1"], summary["after"]["top1"] = accuracy(original), accuracy(model)
  if latency_runs:
    log("latency before and after (TF, batch 1 and 32, alternating)")
    for batch in (1, 32):
      pairs = [(latency_ms(original, batch, latency_runs), latency_ms(model, batch, latency_runs)) for _ in range(3)]
      summary["before"][f"latency_b{batch}_ms"] = statistics.median(p[0] for p in pairs)
      summary["after"][f"latency_b{batch}_ms"] = statistics.median(p[1] for p in pairs)
      summary[f"speedup_b{batch}"] = round(summary["before"][f"latency_b{batch}_ms"] /
                                           summary["after"][f"latency_b{batch}_ms"], 2)
  write_json_atomic(os.path.join(cfg.out_dir, SUMMARY), summary)
  return summary


def _jsonable(value):
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  return value
