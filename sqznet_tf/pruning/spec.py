"""Sparsity specs (one number, or a map of layer names/globs to sparsities), read without TensorFlow."""

import json
import os
from typing import Dict, Union

from sqznet_tf.errors import SqznetError

SparsitySpec = Union[float, Dict[str, float]]


def check_sparsity(key: str, value) -> float:
  """`value` as a float when it is a sparsity in [0, 1); SqznetError naming `key` otherwise."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
    raise SqznetError(f"sparsity {value!r} for {key!r} is not accepted; expected a number in [0, 1)")
  return float(value)


def load_spec(text_or_path: str) -> SparsitySpec:
  """A sparsity spec from a number ("0.67"), inline JSON, or a .json / .yaml / .yml file."""
  s = str(text_or_path).strip()
  try:
    return check_sparsity("all layers", float(s))
  except ValueError:
    pass
  if os.path.exists(s):
    with open(s, encoding="utf-8") as f:
      text = f.read()
    if s.endswith((".yaml", ".yml")):
      try:
        import yaml  # pylint: disable=g-import-not-at-top  (optional format, read only for YAML files)
      except ImportError:
        raise SqznetError(f"{s}: reading YAML needs pyyaml (pip install pyyaml), or give JSON") from None
      try:
        data = yaml.safe_load(text)
      except yaml.YAMLError as e:
        raise SqznetError(f"{s}: not valid YAML ({str(e).splitlines()[0]})") from None
    else:
      try:
        data = json.loads(text)
      except ValueError as e:
        raise SqznetError(f"{s}: not valid JSON ({e})") from None
  else:
    try:
      data = json.loads(s)
    except ValueError:
      raise SqznetError(f"sparsity spec {s!r} is not accepted; expected a number in [0, 1), a JSON map "
                        "like '{\"fire*_expand3x3\": 0.67}', or a .json/.yaml file") from None
  if isinstance(data, (int, float)) and not isinstance(data, bool):
    return check_sparsity("all layers", data)
  if not isinstance(data, dict) or not data:
    raise SqznetError(f"sparsity spec {s!r} is not accepted; expected a number or a non-empty map of "
                      "layer names/globs to sparsities")
  return {str(k): check_sparsity(str(k), v) for k, v in data.items()}
