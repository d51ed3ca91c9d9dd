"""Magnitude pruning on tfmot with per-layer targets.

A pruning spec maps layers to target sparsities (the share of kernel weights set to zero):
  - one number for every prunable layer (conv and dense kernels; biases are never pruned);
  - or a map whose keys are layer names or glob patterns (`fire*_expand3x3`), applied in order,
    the last matching key winning, e.g. {"*": 0.67, "conv1": 0.0}.
Layers whose target is 0 (and layers listed in `keep_dense`) stay unwrapped, i.e. dense.
Maps load from JSON or YAML files.

tfmot keeps the round(n * (1 - sparsity)) largest-magnitude weights of each layer, so a layer
reaches its target to one weight.
"""

import dataclasses
import fnmatch
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from sqznet_tf._keras import keras, tfmot
from sqznet_tf.errors import SqznetError
from sqznet_tf.io import save_figure
from sqznet_tf.models.layers import CUSTOM_OBJECTS
from sqznet_tf.pruning.spec import SparsitySpec, check_sparsity, load_spec  # noqa: F401  (load_spec here for callers)

SCHEDULES = ("constant", "polynomial")


def prunable_layers(model) -> List[str]:
  """Names of the layers whose kernel can be pruned (Conv2D, Dense; wrapped or not)."""
  out = []
  for layer in model.layers:
    inner = getattr(layer, "layer", layer)
    if isinstance(inner, (keras.layers.Conv2D, keras.layers.Dense)):
      out.append(inner.name)
  return out


def check_layers(model, layers: Optional[Sequence[str]]) -> List[str]:
  """`layers` (default: every prunable layer), deduplicated, each checked to be prunable."""
  accepted = prunable_layers(model)
  if layers is None:
    return accepted
  if isinstance(layers, str):
    layers = [layers]
  out = []
  for name in layers:
    if name not in accepted:
      raise SqznetError(f"layer {name!r} is not a prunable layer of {model.name}; accepted: {', '.join(accepted)}")
    if name not in out:
      out.append(name)
  if not out:
    raise SqznetError(f"no layer given; accepted: {', '.join(accepted)}")
  return out


def _is_number(v) -> bool:
  return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))


def magnitude_prune_kernel(kernel: np.ndarray, sparsity: float) -> np.ndarray:
  """A copy of `kernel` with its round(sparsity * size) smallest-magnitude entries set to zero.

  Exactly that many entries are zeroed (ties in |w| are broken by position, first ones first,
  through a stable argsort); entries already zero count among the smallest.

  Args:
    kernel: any array of weights.
    sparsity: fraction in [0, 1] of entries to zero.

  Returns:
    A new array of the same shape and dtype.
  """
  if not _is_number(sparsity) or not 0 <= sparsity <= 1:
    raise SqznetError(f"sparsity {sparsity!r} is not accepted; expected a fraction in [0, 1]")
  kernel = np.asarray(kernel)
  flat = kernel.reshape(-1).copy()
  k = int(round(float(sparsity) * flat.size))
  if k:
    order = np.argsort(np.abs(flat), kind="stable")
    flat[order[:k]] = 0
  return flat.reshape(kernel.shape)


def apply_map(model, sparsity_map: Dict[str, float]) -> None:
  """Prunes each layer of the map by magnitude in place (no restore; see `evaluate_map`)."""
  if sparsity_map:
    check_layers(model, list(sparsity_map))
  for name, s in sparsity_map.items():
    if s:
      layer = model.get_layer(name)
      layer.kernel.assign(magnitude_prune_kernel(layer.kernel.numpy(), s))


def resolve_targets(model, spec: SparsitySpec, keep_dense: Iterable[str] = ()) -> Dict[str, float]:
  """Per-layer target sparsity of every prunable layer of `model` (0.0 = kept dense).

  Raises:
    SqznetError: for a sparsity outside [0, 1), a key or keep_dense entry that matches no
      prunable layer.
  """
  layers = prunable_layers(model)
  if isinstance(spec, dict):
    targets = {name: 0.0 for name in layers}
    for key, value in spec.items():
      value = check_sparsity(key, value)
      matched = [n for n in layers if fnmatch.fnmatchcase(n, key)]
      if not matched:
        raise SqznetError(f"{key!r} matches no prunable layer of {model.name}; prunable layers: "
                          f"{', '.join(layers)}")
      for n in matched:
        targets[n] = value
  else:
    value = check_sparsity("all layers", spec)
    targets = {name: value for name in layers}
  for pattern in keep_dense:
    matched = [n for n in layers if fnmatch.fnmatchcase(n, pattern)]
    if not matched:
      raise SqznetError(f"keep_dense entry {pattern!r} matches no prunable layer of {model.name}; "
                        f"prunable layers: {', '.join(layers)}")
    for n in matched:
      targets[n] = 0.0
  return targets


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
  """How sparsity reaches its target over optimizer steps (tfmot schedules).

  constant: the target from `begin_step`, masks recomputed every `frequency` steps until
    `end_step` (-1: never stop), then fixed. DSD's sparse phase uses begin 0, end 1: the masks
    are set by magnitude at the first step and stay fixed.
  polynomial: from `initial_sparsity` at begin_step to the target at end_step, with `power`.
  """
  kind: str = "constant"
  begin_step: int = 0
  end_step: int = -1
  frequency: int = 1
  power: float = 3.0
  initial_sparsity: float = 0.0

  def __post_init__(self):
    if self.kind not in SCHEDULES:
      raise SqznetError(f"pruning schedule {self.kind!r} is not accepted; expected one of {', '.join(SCHEDULES)}")
    if self.frequency < 1:
      raise SqznetError(f"pruning frequency={self.frequency} is not accepted; expected an integer >= 1")
    if self.kind == "polynomial" and self.end_step <= self.begin_step:
      raise SqznetError(f"polynomial pruning needs end_step > begin_step (got {self.begin_step}, {self.end_step})")

  def make(self, target: float):
    mot = tfmot()
    if self.kind == "constant":
      return mot.sparsity.keras.ConstantSparsity(target, begin_step=self.begin_step, end_step=self.end_step,
                                                 frequency=self.frequency)
    return mot.sparsity.keras.PolynomialDecay(self.initial_sparsity, target, begin_step=self.begin_step,
                                              end_step=self.end_step, power=self.power, frequency=self.frequency)


def prune_model(model, targets: Dict[str, float], schedule: ScheduleSpec = ScheduleSpec()):
  """Wraps every layer with a target > 0 in tfmot's PruneLowMagnitude (weights kept)."""
  mot = tfmot()
  def clone(layer):
    t = targets.get(layer.name, 0.0)
    if t > 0:
      return mot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule.make(t))
    return layer.__class__.from_config(layer.get_config())
  with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
    pruned = keras.models.clone_model(model, clone_function=clone)
  pruned.set_weights(_weights_for(pruned, model))
  return pruned


def _weights_for(wrapped_model, dense_model) -> list:
  """The dense model's weights laid out for `wrapped_model` (masks 1, thresholds 0, step -1)."""
  src = {l.name: l for l in dense_model.layers}
  out = []
  for layer in wrapped_model.layers:
    inner = getattr(layer, "layer", None)
    if inner is not None and type(layer).__name__ == "PruneLowMagnitude":
      values = dict(zip([w.name for w in src[inner.name].weights], src[inner.name].get_weights()))
      for w in layer.weights:
        short = w.name.split("/")[-1].split(":")[0]
        if short == "mask":
          out.append(np.ones(w.shape, w.dtype.as_numpy_dtype))
        elif short == "threshold":
          out.append(np.zeros(w.shape, w.dtype.as_numpy_dtype))
        elif short == "pruning_step":
          out.append(np.array(-1, w.dtype.as_numpy_dtype))
        else:
          match = [v for k, v in values.items() if k.split("/")[-1].split(":")[0] == short]
          out.append(match[0])
    else:
      out.extend(src[layer.name].get_weights())
  return out


def strip(model):
  """The model without pruning wrappers (masked weights stay exactly zero)."""
  return tfmot().sparsity.keras.strip_pruning(model)


def pruning_callbacks(log_dir: Optional[str] = None) -> list:
  """UpdatePruningStep (required while training a pruned model) and, with log_dir, PruningSummaries."""
  mot = tfmot()
  cbs = [mot.sparsity.keras.UpdatePruningStep()]
  if log_dir:
    cbs.append(mot.sparsity.keras.PruningSummaries(log_dir=log_dir))
  return cbs


def prune_scope():
  """Context in which Keras can load a model saved with pruning wrappers still on."""
  return tfmot().sparsity.keras.prune_scope()


def layer_sparsity(model) -> List[dict]:
  """Zero fraction of each prunable layer's kernel: [{"layer", "weights", "zeros", "sparsity"}]."""
  rows = []
  for layer in model.layers:
    inner = getattr(layer, "layer", layer)
    if not isinstance(inner, (keras.layers.Conv2D, keras.layers.Dense)):
      continue
    kernel = inner.kernel.numpy()
    if type(layer).__name__ == "PruneLowMagnitude":
      mask = [w for w in layer.weights if w.name.split("/")[-1].startswith("mask")]
      if mask:
        kernel = kernel * mask[0].numpy()
    zeros = int((kernel == 0).sum())
    rows.append({"layer": inner.name, "weights": int(kernel.size), "zeros": zeros,
                 "sparsity": zeros / kernel.size})
  return rows


def sparsity_report(model) -> dict:
  """Per-layer and total kernel sparsity, JSON-ready."""
  rows = layer_sparsity(model)
  total = sum(r["weights"] for r in rows)
  zeros = sum(r["zeros"] for r in rows)
  return {"model": model.name, "layers": rows, "weights": total, "zeros": zeros,
          "sparsity": zeros / total if total else 0.0}


def plot_sparsity(report: dict, path: str) -> None:
  """A PNG bar chart of per-layer sparsity, written atomically."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (heavy, only when a figure is drawn)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top  (heavy, only when a figure is drawn)
  rows = report["layers"]
  fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(rows)), 4))
  ax.bar(range(len(rows)), [100 * r["sparsity"] for r in rows])
  ax.set_xticks(range(len(rows)))
  ax.set_xticklabels([r["layer"] for r in rows], rotation=90, fontsize=7)
  ax.set_ylabel("zero weights (%)")
  ax.set_ylim(0, 100)
  ax.set_title(f"{report['model']}: {100 * report['sparsity']:.1f}% of kernel weights are zero")
  fig.tight_layout()
  try:
    save_figure(fig, path, dpi=100)
  finally:
    plt.close(fig)
