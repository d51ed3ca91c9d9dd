"""Per-layer pruning sensitivity: accuracy after magnitude-pruning one layer at a time.

For each layer and each tested sparsity, the layer's kernel alone is pruned by magnitude (the
round(sparsity * size) smallest |w| set to zero, no retraining), the model is evaluated, and the
original kernel is put back exactly. The curves show which layers tolerate pruning (Han et al.,
"Learning both Weights and Connections", fig. 6), and `propose_map` turns them into a per-layer
sparsity map for the pruning tools' `--sparsity` flag (sqznet-dsd --sparsity=sparsity_map.json).

Sparsity here is the share of the kernel that is zero after pruning, counting zeros already
there: pruning a layer that is already 70% zero (as in the Deep Compression release) to 0.5
changes nothing.

Per-layer drops do not add up: pruning several layers at once usually costs more than the
largest single drop, so a map built from per-layer budgets can exceed the budget. `backoff_map`
(or `propose_map(..., model=, evaluate_fn=)`) evaluates the combined map and lowers the sparsity
of the most sensitive layers until the combined drop fits.
"""

import dataclasses
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sqznet_tf import reporting
from sqznet_tf.errors import SqznetError
from sqznet_tf.io import save_figure, write_json_atomic
from sqznet_tf.pruning.prune import _is_number  # pylint: disable=protected-access
from sqznet_tf.pruning.prune import apply_map, check_layers, magnitude_prune_kernel, prunable_layers  # noqa: F401

DEFAULT_SPARSITIES = (0.25, 0.5, 0.75, 0.9)

EvaluateFn = Callable[[object], float]

# Drops are compared with the budget to this tolerance, so that 0.80 - 0.70 fits a budget of 0.1.
_EPS = 1e-9


def check_sparsities(sparsities: Sequence[float]) -> Tuple[float, ...]:
  """The sparsities sorted and deduplicated, each checked to be a fraction in [0, 1)."""
  if isinstance(sparsities, (str, bytes)) or not hasattr(sparsities, "__iter__"):
    raise SqznetError(f"sparsities={sparsities!r} is not accepted; expected a list of fractions in [0, 1)")
  out = []
  for s in sparsities:
    if not _is_number(s) or not math.isfinite(s) or not 0 <= s < 1:
      raise SqznetError(f"sparsity {s!r} is not accepted; expected a fraction in [0, 1) "
                        "(0.9 zeroes 90% of a layer's weights)")
    out.append(float(s))
  if not out:
    raise SqznetError("no sparsity given; expected at least one fraction in [0, 1), e.g. 0.5")
  return tuple(sorted(set(out)))


def check_budget(budget: float) -> float:
  if not _is_number(budget) or not math.isfinite(budget) or budget < 0:
    raise SqznetError(f"budget={budget!r} is not accepted; expected an accuracy drop >= 0 "
                      "(0.01 = one percentage point)")
  return float(budget)


@dataclasses.dataclass
class SensitivityResult:
  """Accuracy of a model with one layer at a time pruned to each tested sparsity.

  Attributes:
    baseline: accuracy of the unpruned model.
    layers: layer name -> [(sparsity, accuracy)], sparsities ascending, in model order.
    metric: what the accuracy is ("top1", "top5", or "accuracy").
    params: layer name -> kernel weights.
    initial_sparsity: layer name -> share of its kernel that was zero before pruning.
  """
  baseline: float
  layers: Dict[str, List[Tuple[float, float]]]
  metric: str = "accuracy"
  params: Dict[str, int] = dataclasses.field(default_factory=dict)
  initial_sparsity: Dict[str, float] = dataclasses.field(default_factory=dict)

  @property
  def sparsities(self) -> List[float]:
    return sorted({s for curve in self.layers.values() for s, _ in curve})

  def accuracy(self, layer: str, sparsity: float) -> float:
    for s, a in self.layers[layer]:
      if s == sparsity:
        return a
    raise KeyError((layer, sparsity))

  def to_dict(self) -> dict:
    return {"metric": self.metric, "baseline": self.baseline, "sparsities": self.sparsities,
            "layers": [{"name": name, "params": self.params.get(name),
                        "initial_sparsity": self.initial_sparsity.get(name),
                        "points": [{"sparsity": s, "accuracy": a, "drop": self.baseline - a} for s, a in curve]}
                       for name, curve in self.layers.items()]}

  @classmethod
  def from_dict(cls, d: dict) -> "SensitivityResult":
    layers = {l["name"]: [(float(p["sparsity"]), float(p["accuracy"])) for p in l["points"]] for l in d["layers"]}
    return cls(float(d["baseline"]), layers, d.get("metric", "accuracy"),
               {l["name"]: l["params"] for l in d["layers"] if l.get("params") is not None},
               {l["name"]: l["initial_sparsity"] for l in d["layers"] if l.get("initial_sparsity") is not None})

  def columns(self) -> List[str]:
    """Columns of `rows()`: layer, params, zeros (initial sparsity), then one per sparsity."""
    return ["layer", "params", "zeros"] + [f"{s:g}" for s in self.sparsities]

  def rows(self) -> List[dict]:
    """One row per layer: its accuracy at each tested sparsity (for reporting.table)."""
    out = []
    for name, curve in self.layers.items():
      row = {"layer": name, "params": self.params.get(name, ""), "zeros": self.initial_sparsity.get(name, "")}
      row.update({f"{s:g}": a for s, a in curve})
      out.append(row)
    return out


class _KernelGuard:
  """Saves kernels on entry and assigns the saved values back on exit, whatever happens."""

  def __init__(self, model, names: Sequence[str]):
    self.layers = [model.get_layer(n) for n in names]
    self.saved = {}

  def __enter__(self):
    self.saved = {l.name: np.array(l.kernel.numpy(), copy=True) for l in self.layers}
    return self

  def __exit__(self, *exc):
    for l in self.layers:
      l.kernel.assign(self.saved[l.name])
    return False


def evaluate_map(model, evaluate_fn: EvaluateFn, sparsity_map: Dict[str, float]) -> float:
  """Accuracy with every layer of the map pruned at once; the kernels are restored afterwards."""
  with _KernelGuard(model, [n for n, s in sparsity_map.items() if s]):
    apply_map(model, sparsity_map)
    return float(evaluate_fn(model))


def sensitivity(model, evaluate_fn: EvaluateFn, layers: Optional[Sequence[str]] = None,
                sparsities: Sequence[float] = DEFAULT_SPARSITIES, progress: bool = True,
                metric: str = "accuracy") -> SensitivityResult:
  """Accuracy with each layer alone pruned to each sparsity, kernels restored exactly after each.

  Args:
    model: a Keras model (its kernels are modified during the run and restored).
    evaluate_fn: model -> accuracy (a float; higher is better).
    layers: names of prunable layers; default all of them.
    sparsities: fractions in [0, 1) to test.
    progress: show a progress bar on stderr over all evaluations.
    metric: name of what evaluate_fn measures, stored in the result.

  Raises:
    SqznetError: for a sparsity outside [0, 1) or a layer that is not prunable.
  """
  sparsities = check_sparsities(sparsities)
  names = check_layers(model, layers)
  total = 1 + len(names) * len(sparsities)
  bar = reporting.ProgressBar(total, "sensitivity") if progress else None
  baseline = float(evaluate_fn(model))
  if bar:
    bar.update(1, f"baseline {baseline:.4f}")
  done = 1
  curves, params, initial = {}, {}, {}
  for name in names:
    layer = model.get_layer(name)
    with _KernelGuard(model, [name]) as guard:
      original = guard.saved[name]
      params[name] = int(original.size)
      initial[name] = float((original == 0).mean())
      curve = []
      for s in sparsities:
        layer.kernel.assign(magnitude_prune_kernel(original, s))
        acc = float(evaluate_fn(model))
        curve.append((s, acc))
        done += 1
        if bar:
          bar.update(done, f"{name}@{s:g} {acc:.4f}")
        layer.kernel.assign(original)
    curves[name] = curve
  if bar:
    bar.close()
  return SensitivityResult(baseline, curves, metric, params, initial)


def _per_layer_choice(result: SensitivityResult, budget: float) -> Dict[str, float]:
  out = {}
  for name, curve in result.layers.items():
    ok = [s for s, a in curve if result.baseline - a <= budget + _EPS]
    out[name] = float(max(ok)) if ok else 0.0
  return out


@dataclasses.dataclass
class MapCheck:
  """A sparsity map checked as a whole.

  Attributes:
    sparsity_map: layer -> sparsity, whose combined drop fits the budget (all 0.0 at worst).
    accuracy: accuracy with the whole map applied at once.
    drop: baseline - accuracy.
    history: (map, accuracy) of every map evaluated, the per-layer map first.
  """
  sparsity_map: Dict[str, float]
  accuracy: float
  drop: float
  history: List[Tuple[Dict[str, float], float]]

  def to_dict(self) -> dict:
    return {"sparsity_map": self.sparsity_map, "accuracy": self.accuracy, "drop": self.drop,
            "maps_checked": len(self.history),
            "history": [{"sparsity_map": m, "accuracy": a} for m, a in self.history]}


def backoff_map(result: SensitivityResult, budget: float, model, evaluate_fn: EvaluateFn,
                progress: bool = False) -> MapCheck:
  """The per-layer map, lowered until pruning all its layers at once fits the budget.

  Starts from `propose_map(result, budget)`, evaluates it as a whole, and while the combined
  drop exceeds the budget, steps the layer that lost most on its own (at its current sparsity)
  down to its next lower tested sparsity (or 0.0), and evaluates again. Ends after at most one
  evaluation per (layer, tested sparsity) pair; the all-zero map is the baseline, which fits.
  """
  budget = check_budget(budget)
  current = _per_layer_choice(result, budget)
  history = []
  while True:
    active = {n: s for n, s in current.items() if s > 0}
    acc = float(evaluate_map(model, evaluate_fn, active)) if active else result.baseline
    history.append((dict(current), acc))
    drop = result.baseline - acc
    if progress:
      reporting.progress(f"combined map ({len(active)} layers pruned): {result.metric} {acc:.4f}, "
                         f"drop {drop:.4f} (budget {budget:g})")
    if drop <= budget + _EPS or not active:
      return MapCheck(current, acc, drop, history)
    # The layer that hurt most alone at its current sparsity goes down one step first.
    worst = max(active, key=lambda n: (result.baseline - result.accuracy(n, active[n]), active[n]))
    lower = [s for s, _ in result.layers[worst] if s < active[worst]]
    current[worst] = float(max(lower)) if lower else 0.0


def propose_map(result: SensitivityResult, budget: float, model=None,
                evaluate_fn: Optional[EvaluateFn] = None) -> Dict[str, float]:
  """Per layer, the largest tested sparsity whose accuracy drop alone is within `budget`.

  Args:
    result: a sensitivity result.
    budget: largest accepted accuracy drop (baseline - accuracy), >= 0; 0.01 = one point
      (compared to within 1e-9, so that float rounding does not reject a drop equal to it).
    model, evaluate_fn: when both are given, the combined map is evaluated and backed off until
      it fits the budget as a whole (see `backoff_map`); per-layer budgets do not add up.

  Returns:
    {layer name: sparsity} (0.0 where no tested sparsity fits), JSON-ready, the format of
    the pruning tools' --sparsity_map.

  Raises:
    SqznetError: for a negative budget.
  """
  budget = check_budget(budget)
  if (model is None) != (evaluate_fn is None):
    raise SqznetError("checking the combined map needs both model and evaluate_fn")
  if model is not None:
    return backoff_map(result, budget, model, evaluate_fn).sparsity_map
  return _per_layer_choice(result, budget)


def plot(result: SensitivityResult, path: str) -> None:
  """A PNG of accuracy against sparsity, one line per layer, the baseline dashed; written atomically."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (heavy, only when a figure is drawn)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top  (heavy, only when a figure is drawn)
  n = len(result.layers)
  cmap = plt.get_cmap("tab20")
  styles = ["-", "--", "-.", ":"]
  fig, ax = plt.subplots(figsize=(9 if n > 10 else 7, 5))
  for i, (name, curve) in enumerate(result.layers.items()):
    xs = [0.0] + [s for s, _ in curve]  # sparsity 0 is the unpruned model
    ys = [result.baseline] + [a for _, a in curve]
    ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color=cmap(i % 20),
            linestyle=styles[(i // 20) % len(styles)], label=name)
  ax.axhline(result.baseline, color="black", linestyle="--", linewidth=1,
             label=f"baseline {result.baseline:.3f}")
  ax.set_xlabel("sparsity of the pruned layer (share of kernel weights zero)")
  ax.set_ylabel(result.metric)
  ax.set_xlim(0, 1)
  ax.set_title("Pruning sensitivity (one layer at a time, by magnitude, no retraining)", fontsize=10)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=2 if n > 26 else 1)
  fig.tight_layout()
  try:
    save_figure(fig, path, dpi=100)
  finally:
    plt.close(fig)


def analyse(model, evaluate_fn: EvaluateFn, layers: Optional[Sequence[str]], sparsities: Sequence[float],
            budget: float, metric: str = "top1", check_combined: bool = True, output_dir: Optional[str] = None,
            extra: Optional[dict] = None) -> Tuple[dict, SensitivityResult]:
  """What sqznet-sensitivity runs: the per-layer sweep, the proposed map, its combined check.

  Returns (d, the SensitivityResult): d is one JSON-ready dict (`extra` merged in) with "sensitivity", "per_layer_map",
  "combined" and "sparsity_map"; with `output_dir`, also writes sensitivity.json,
  sensitivity.png and sparsity_map.json there (each atomically) and lists them in "outputs".
  """
  sparsities = check_sparsities(sparsities)
  budget = check_budget(budget)
  layers = check_layers(model, layers)
  result = sensitivity(model, evaluate_fn, layers, sparsities, metric=metric)
  per_layer = propose_map(result, budget)
  check = backoff_map(result, budget, model, evaluate_fn, progress=True) if check_combined else None
  sparsity_map = check.sparsity_map if check else per_layer
  d = dict(extra or {}, metric=metric, budget=budget, sensitivity=result.to_dict(), per_layer_map=per_layer,
           combined=check.to_dict() if check else None, sparsity_map=sparsity_map)
  if output_dir:
    write_json_atomic(os.path.join(output_dir, "sensitivity.json"), d)
    plot(result, os.path.join(output_dir, "sensitivity.png"))
    write_json_atomic(os.path.join(output_dir, "sparsity_map.json"), sparsity_map)
    d["outputs"] = [os.path.join(output_dir, f) for f in ("sensitivity.json", "sensitivity.png", "sparsity_map.json")]
  return d, result
