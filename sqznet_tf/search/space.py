"""The search space of a design-space search: which metaparameters vary, over what (pure Python).

A space is a mapping of hyperparameter name to:
  - a list: the values to choose from (keras-tuner Choice; GridSearch tries each),
  - {"min": a, "max": b[, "step": s][, "sampling": "linear"|"log"]}: a range (Int when a, b and
    s are integers, else Float),
  - a single value: fixed (not searched).

Names are the SqueezeNet metaparameters of the paper's section 5 (squeeze_ratio, pct3x3,
base_e, incr_e, freq), bypass and batch_norm, and the training hyperparameters learning_rate and
dropout. A space is given as JSON or YAML text or a .json/.yaml file.
"""

import dataclasses
import itertools
import json
import os
from typing import Any, Dict, List, Optional

from sqznet_tf.errors import SqznetError
from sqznet_tf.models.configs import get_config

ARCH_PARAMS = ("squeeze_ratio", "pct3x3", "base_e", "incr_e", "freq", "bypass", "batch_norm")
TRAIN_PARAMS = ("learning_rate", "dropout")
PARAMS = ARCH_PARAMS + TRAIN_PARAMS
SAMPLINGS = ("linear", "log")

# The paper's sweeps (REFERENCE.md section 4): Figure 3 left (SR at pct3x3 = 0.5) and right
# (pct3x3 at SR = 0.5).
SR_SWEEP = {"squeeze_ratio": [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0], "pct3x3": 0.5}
PCT3X3_SWEEP = {"pct3x3": [0.01, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 0.99], "squeeze_ratio": 0.5}


@dataclasses.dataclass
class Param:
  """One hyperparameter: kind is "choice", "int", "float" or "fixed"."""
  name: str
  kind: str
  values: List[Any] = dataclasses.field(default_factory=list)
  min: Optional[float] = None
  max: Optional[float] = None
  step: Optional[float] = None
  sampling: str = "linear"

  @property
  def searched(self) -> bool:
    return self.kind != "fixed" and not (self.kind == "choice" and len(self.values) == 1)

  def corners(self) -> List[Any]:
    """Values that bound what this parameter can take (to check a space before searching)."""
    if self.kind in ("choice", "fixed"):
      return list(self.values)
    return [self.min, self.max]


@dataclasses.dataclass
class SearchSpace:
  params: Dict[str, Param]

  @property
  def searched(self) -> List[str]:
    return [n for n, p in self.params.items() if p.searched]

  def fixed(self) -> Dict[str, Any]:
    return {n: p.values[0] for n, p in self.params.items() if not p.searched}

  def to_dict(self) -> dict:
    out = {}
    for n, p in self.params.items():
      if p.kind == "fixed":
        out[n] = p.values[0]
      elif p.kind == "choice":
        out[n] = list(p.values)
      else:
        out[n] = {k: v for k, v in (("min", p.min), ("max", p.max), ("step", p.step), ("sampling", p.sampling))
                  if v is not None}
    return out


def _parse_param(name: str, spec) -> Param:
  if name not in PARAMS:
    raise SqznetError(f"{name!r} is not a searchable hyperparameter; expected one of {', '.join(PARAMS)}")
  if isinstance(spec, list):
    if not spec:
      raise SqznetError(f"{name}: an empty list of values; give at least one value")
    if len(set(map(repr, spec))) != len(spec):
      raise SqznetError(f"{name}: values {spec} repeat")
    return Param(name, "choice", list(spec))
  if isinstance(spec, dict):
    unknown = sorted(set(spec) - {"min", "max", "step", "sampling"})
    if unknown or "min" not in spec or "max" not in spec:
      raise SqznetError(f"{name}: a range is {{\"min\": a, \"max\": b[, \"step\": s][, \"sampling\": "
                        f"\"linear\"|\"log\"]}}; got {spec}")
    lo, hi, step = spec["min"], spec["max"], spec.get("step")
    for v in (lo, hi) + ((step,) if step is not None else ()):
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SqznetError(f"{name}: range bounds and step must be numbers; got {spec}")
    if not lo < hi:
      raise SqznetError(f"{name}: an empty range (min {lo} is not below max {hi})")
    if step is not None and step <= 0:
      raise SqznetError(f"{name}: step {step} must be > 0")
    sampling = spec.get("sampling", "linear")
    if sampling not in SAMPLINGS:
      raise SqznetError(f"{name}: sampling {sampling!r} is not accepted; expected linear or log")
    if sampling == "log" and lo <= 0:
      raise SqznetError(f"{name}: log sampling needs min > 0; got {lo}")
    integer = all(isinstance(v, int) for v in (lo, hi) + ((step,) if step is not None else ()))
    if name in ("bypass", "batch_norm"):
      raise SqznetError(f"{name} takes a list of values, not a range")
    return Param(name, "int" if integer else "float", min=lo, max=hi, step=step, sampling=sampling)
  return Param(name, "fixed", [spec])


def parse(text_or_path) -> SearchSpace:
  """A SearchSpace from a dict, JSON/YAML text, or a .json/.yaml/.yml file."""
  if isinstance(text_or_path, dict):
    data = text_or_path
  else:
    text = str(text_or_path)
    if os.path.exists(text):
      with open(text, encoding="utf-8") as f:
        text = f.read()
    try:
      data = json.loads(text)
    except ValueError:
      import yaml  # pylint: disable=g-import-not-at-top  (optional format, read only for YAML files)
      try:
        data = yaml.safe_load(text)
      except yaml.YAMLError as e:
        raise SqznetError(f"search space is neither JSON nor YAML: {str(e).splitlines()[0]}") from None
  if not isinstance(data, dict):
    raise SqznetError(f"a search space is a mapping of hyperparameter -> values/range/fixed value; got {data!r}")
  space = SearchSpace({str(k): _parse_param(str(k), v) for k, v in data.items()})
  if not space.searched:
    raise SqznetError("the search space is empty: no hyperparameter has more than one value (give a list "
                      "of values or a {\"min\": .., \"max\": ..} range for at least one of "
                      f"{', '.join(ARCH_PARAMS)})")
  return space


def check_buildable(space: SearchSpace, model: str) -> None:
  """Raises SqznetError if some corner of the space gives an impossible network (pure Python).

  Every combination of the extreme values of the architecture parameters is checked against
  the registry (e.g. a squeeze ratio so small that a Fire module gets 0 squeeze filters).
  """
  arch = [p for n, p in space.params.items() if n in ARCH_PARAMS]
  for combo in itertools.product(*[p.corners() for p in arch]):
    overrides = {p.name: v for p, v in zip(arch, combo)}
    try:
      get_config(model, **overrides)
    except SqznetError as e:
      raise SqznetError(f"the search space holds an impossible {model}: {e} (at "
                        f"{', '.join(f'{k}={v}' for k, v in overrides.items())})") from None
