"""Checkpoints saved while tfmot wrappers are on: which layers were wrapped, and loading them back.

A pruning or clustering phase trains a model whose layers are wrapped (PruneLowMagnitude,
ClusterWeights), so its epoch checkpoints and best.weights.h5 hold the wrappers' variables and
do not load into the plain network. train() records the wrapped layers in `wrappers.json` in
the run folder; `sqznet_tf.loading` rebuilds the same wrappers, loads the checkpoint and strips
them, which leaves the plain network with the checkpoint's (pruned, clustered) weights.
"""

import os
from typing import Optional

from sqznet_tf.io import write_json_atomic

FILENAME = "wrappers.json"
_KINDS = {"PruneLowMagnitude": "prune", "ClusterWeights": "cluster", "ClusterWeightsMHA": "cluster"}


def describe(model) -> Optional[dict]:
  """{"prune": [layer names], "cluster": {"layers": [...], "number_of_clusters", "preserve_sparsity"}}
  for the wrapped layers of `model`, or None when nothing is wrapped."""
  prune, cluster, clusters, preserve = [], [], None, True
  for layer in model.layers:
    kind = _KINDS.get(type(layer).__name__)
    if kind == "prune":
      prune.append(layer.layer.name)
    elif kind == "cluster":
      cluster.append(layer.layer.name)
      clusters = int(layer.number_of_clusters)
      preserve = bool(getattr(layer, "preserve_sparsity", True))
  if not prune and not cluster:
    return None
  out = {}
  if prune:
    out["prune"] = prune
  if cluster:
    out["cluster"] = {"layers": cluster, "number_of_clusters": clusters, "preserve_sparsity": preserve}
  return out


def record(model, out_dir: str) -> None:
  """Writes `out_dir`/wrappers.json for a wrapped model (nothing for a plain one)."""
  d = describe(model)
  if d is not None:
    write_json_atomic(os.path.join(out_dir, FILENAME), d)


def find_record(weights_path: str) -> Optional[str]:
  """wrappers.json of the run a checkpoint belongs to (its folder, or the folder above checkpoints/)."""
  folder = os.path.dirname(os.path.abspath(weights_path))
  for d in (folder, os.path.dirname(folder)):
    path = os.path.join(d, FILENAME)
    if os.path.exists(path):
      return path
  return None
