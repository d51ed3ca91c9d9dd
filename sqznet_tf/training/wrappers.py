"""Checkpoints saved while tfmot wrappers are on: which layers were wrapped, and loading them back.

A pruning or clustering phase trains a model whose layers are wrapped (PruneLowMagnitude,
ClusterWeights), so its epoch checkpoints and best.weights.h5 hold the wrappers' variables and
do not load into the plain network. train() records the wrapped layers in `wrappers.json` in
the run folder; `load_stripped` rebuilds the same wrappers, loads the checkpoint and strips
them, which leaves the plain network with the checkpoint's (pruned, clustered) weights.
"""

import json
import os
from typing import Optional

from sqznet_tf.errors import SqznetError

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
  from sqznet_tf.cli import write_json_atomic  # pylint: disable=g-import-not-at-top
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


def _restore_cluster_state(model) -> None:
  """Sets what tfmot's ClusterWeights keeps outside its variables from the loaded checkpoint.

  With preserve_sparsity the wrapper remembers, from the weights it wrapped, which centroid it
  pins to zero (`zero_idx`) and where the zeros were (`sparsity_masks`); neither is saved. Both
  are read back from the loaded state: the pinned centroid is the one that is exactly zero, and
  the zeros are the weights pulled to it (small weights that joined the zero cluster stay zero,
  as they were in the clustered kernel).
  """
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  for layer in model.layers:
    if _KINDS.get(type(layer).__name__) != "cluster" or not getattr(layer, "preserve_sparsity", False):
      continue
    for name, centroids in layer.cluster_centroids.items():
      zero = tf.argmin(tf.abs(centroids), axis=-1)
      layer.zero_idx[name] = zero
      layer.sparsity_masks[name] = tf.cast(tf.not_equal(layer.pulling_indices[name], zero), tf.float32)


def load_stripped(model, weights_path: str, record_path: str):
  """`model` (plain) with the weights of a wrapped checkpoint, wrappers rebuilt, loaded and stripped."""
  from sqznet_tf.compression import tfmot_ops  # pylint: disable=g-import-not-at-top
  from sqznet_tf.pruning import prune  # pylint: disable=g-import-not-at-top
  with open(record_path, encoding="utf-8") as f:
    rec = json.load(f)
  wrapped = model
  if rec.get("prune"):
    wrapped = prune.prune_model(wrapped, {name: 0.5 for name in rec["prune"]})
  c = rec.get("cluster")
  if c:
    n = int(c["number_of_clusters"])  # tfmot_ops.number_of_clusters: 2**bits, or 2**bits - 1
    bits = (n if c.get("preserve_sparsity", True) else n + 1).bit_length() - 1
    wrapped = tfmot_ops.cluster_model(wrapped, bits, layers=c["layers"],
                                      preserve_sparsity=c.get("preserve_sparsity", True))
  try:
    wrapped.load_weights(weights_path)
  except (ValueError, OSError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise SqznetError(f"checkpoint {weights_path!r} does not fit {model.name} with the wrappers of "
                      f"{record_path}: {first[:200]}") from None
  if c:
    _restore_cluster_state(wrapped)
    wrapped = tfmot_ops.strip_clusters(wrapped)
  if rec.get("prune"):
    wrapped = prune.strip(wrapped)
  model.set_weights(wrapped.get_weights())
  return model
