"""Weight clustering (Deep Compression's trained quantization) on tfmot, and k-means sharing of a model.

- `share_model`: k-means weight sharing of every kernel in numpy (`sharing`), no training.
- `cluster_model` / `strip_clusters`: tfmot weight clustering of the Conv2D and Dense kernels,
  to fine-tune the shared values. With `preserve_sparsity`, weights that are zero (pruned) stay
  exactly zero. `cluster_wrapper` starts tfmot's centroids at the exact k-means codebook.
- `restore_cluster_state`: what a loaded clustering checkpoint needs that tfmot does not save.

Codebook sizes follow Deep Compression: `bits` bits index 2**bits codes, one of which is reserved
for exact zero, so a clustered kernel holds at most 2**bits - 1 distinct non-zero values. bits
is 2..8: tfmot refuses fewer than 3 clusters with preserve_sparsity (2 without).
"""

from typing import Dict, Iterable, List, Optional

import numpy as np

from sqznet_tf._keras import keras, tf, tfmot
from sqznet_tf.compression import sharing
from sqznet_tf.errors import SqznetError
from sqznet_tf.models.layers import CUSTOM_OBJECTS, copy_layer
from sqznet_tf.pruning.prune import prunable_layers

MIN_BITS, MAX_BITS = 2, 8


# Flag name -> name of the tfmot CentroidInitialization member (looked up when clustering, so that
# importing this module, which every model loader does, does not import tfmot).
CLUSTER_INITS = {"linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM",
                 "kmeans_plus_plus": "KMEANS_PLUS_PLUS"}


def _clusterable(layer) -> bool:
  return isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))


def number_of_clusters(bits: int, preserve_sparsity: bool = True) -> int:
  """tfmot's `number_of_clusters` for a `bits`-bit codebook with one code reserved for zero.

  With preserve_sparsity tfmot counts its zero centroid among the clusters, so it gets
  2**bits (2**bits - 1 non-zero values plus zero); without, 2**bits - 1 (all may be non-zero).
  """
  return 2 ** bits if preserve_sparsity else 2 ** bits - 1


def _check_bits(bits) -> int:
  if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
    raise SqznetError(f"bits={bits!r} is not accepted; expected an integer in {MIN_BITS}..{MAX_BITS} "
                      "(tfmot clustering needs at least 2 non-zero clusters)")
  return int(bits)


def _mean_gradient_aggregation():
  """tfmot's GradientAggregation.AVG: each shared value moves by the mean gradient of its weights.

  tfmot's default (SUM) moves it by the sum over thousands of weights, so a learning rate that
  suits the weights throws the values off (the shipped CIFAR-10 model, 4 bits, 20 steps: 89% -> 10%
  at 0.01 and 51% at 0.001 with SUM; 87% with AVG at both; docs/compression.md). Not in tfmot's
  public API (0.8.1), hence the module path; tfmot() first sets up its Keras 2 import.
  """
  tfmot()
  from tensorflow_model_optimization.python.core.clustering.keras import cluster_config  # pylint: disable=g-import-not-at-top
  return cluster_config.GradientAggregation.AVG


def cluster_model(model, bits: int, init: str = "linear", preserve_sparsity: bool = True,
                  layers: Optional[Iterable[str]] = None):
  """Wraps the Conv2D and Dense layers of `model` in tfmot's ClusterWeights, from their weights.

  Every wrapped layer is a copy built with the layer's current weights before it is wrapped,
  so its centroids are initialised from the trained kernel and the returned model computes
  (up to the clustering) what `model` computes; `model` itself is left untouched. Layers that
  are not wrapped are copied with their weights. Conv2D kernels with no more weights than
  clusters are left unwrapped (tfmot skips them).

  Args:
    model: a functional or Sequential tf_keras model.
    bits: index width, 2..8: each kernel gets at most 2**bits - 1 distinct non-zero values.
    init: centroid initialisation, a key of CLUSTER_INITS.
    preserve_sparsity: keep zero weights exactly zero (one centroid is pinned to 0).
    layers: names of the layers to cluster (default: every Conv2D and Dense layer).

  Returns:
    The model with ClusterWeights wrappers (named "cluster_<layer>"); train it, then call
    `strip_clusters`.

  Raises:
    SqznetError: for bits outside 2..8, an unknown init, or a name in `layers` that is not a
      Conv2D/Dense layer of `model`.
  """
  bits = _check_bits(bits)
  if init not in CLUSTER_INITS:
    raise SqznetError(f"cluster init {init!r} is not accepted; expected one of {', '.join(CLUSTER_INITS)}")
  candidates = [l.name for l in model.layers if _clusterable(l)]
  if layers is None:
    chosen = set(candidates)
  else:
    chosen = set(layers) if not isinstance(layers, str) else {layers}
    unknown = sorted(chosen - set(candidates))
    if unknown:
      raise SqznetError(f"layers {', '.join(map(repr, unknown))} are not accepted for clustering; expected "
                        f"Conv2D/Dense layers of {model.name}: {', '.join(candidates)}")
  mot = tfmot()
  n = number_of_clusters(bits, preserve_sparsity)
  init_member = getattr(mot.clustering.keras.CentroidInitialization, CLUSTER_INITS[init])
  aggregation = _mean_gradient_aggregation()

  def clone(layer):
    new = copy_layer(layer)
    if layer.name in chosen:
      return mot.clustering.keras.cluster_weights(new, number_of_clusters=n, cluster_centroids_init=init_member,
                                                  preserve_sparsity=preserve_sparsity,
                                                  cluster_gradient_aggregation=aggregation)
    return new

  with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
    return keras.models.clone_model(model, clone_function=clone)


def strip_clusters(model):
  """The clustered model without its wrappers: plain layers holding the clustered kernels."""
  with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
    return tfmot().clustering.keras.strip_clustering(model)


def share_model(model, bits, init: str = "linear", layers: Optional[List[str]] = None,
                seed: int = 0, importance: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, sharing.Shared]:
  """k-means weight sharing of each kernel, in place; returns the codebooks and codes per layer.

  bits: one code width, or layer name -> width.
  importance: layer name -> a weight per kernel weight for the k-means (see `sharing.share`).
  """
  out = {}
  names = layers if layers is not None else prunable_layers(model)
  by_name = {l.name: l for l in model.layers}
  for name in names:
    layer = by_name[name]
    values = layer.get_weights()
    s = sharing.share(values[0], bits[name] if isinstance(bits, dict) else bits, init, seed=seed,
                      importance=(importance or {}).get(name))
    values[0] = s.kernel
    layer.set_weights(values)
    out[name] = s
  return out


def cluster_wrapper(bits: int, init: str, layers: List[str]):
  """model -> model in tfmot's clustering wrappers, for fine-tuning the shared values.

  init "optimal" starts tfmot's centroids at the exact k-means codebook of each kernel (tfmot has
  no such initialisation: its wrappers are built with linear centroids, which are then
  replaced); the other inits are tfmot's own.
  """
  def wrap(model):
    if init != "optimal":
      return cluster_model(model, bits, init, layers=layers)
    shared = share_model(model, bits, "optimal", layers)
    wrapped = cluster_model(model, bits, "linear", layers=layers)
    for layer in wrapped.layers:
      inner = getattr(layer, "layer", None)
      if inner is None or inner.name not in shared:
        continue
      book, codes = shared[inner.name].codebook, shared[inner.name].codes
      centroids = next(v for v in layer.weights if "cluster_centroids" in v.name)
      indices = next(v for v in layer.weights if "pulling_indices" in v.name)
      n = int(centroids.shape[0])
      # tfmot pins the centroid it found nearest zero when wrapping to 0.0 at every step: the
      # codebook's zero goes there, its other values (padded to tfmot's count) elsewhere.
      zero = int(layer.zero_idx["kernel"]) if getattr(layer, "zero_idx", None) else 0
      slots = np.asarray([zero] + [i for i in range(n) if i != zero])
      values = np.zeros(n, np.float64)
      values[slots] = np.concatenate([book, np.full(max(0, n - book.size), book[-1])])[:n]
      centroids.assign(values.astype(centroids.dtype.as_numpy_dtype))
      indices.assign(slots[codes.astype(np.int64)].astype(indices.dtype.as_numpy_dtype))
    return wrapped
  return wrap


def restore_cluster_state(model) -> None:
  """Sets what tfmot's ClusterWeights keeps outside its variables from the loaded checkpoint.

  With preserve_sparsity the wrapper remembers, from the weights it wrapped, which centroid it
  pins to zero (`zero_idx`) and where the zeros were (`sparsity_masks`); neither is saved. Both
  are read back from the loaded state: the pinned centroid is the one that is exactly zero, and
  the zeros are the weights pulled to it (small weights that joined the zero cluster stay zero,
  as they were in the clustered kernel).
  """
  for layer in model.layers:
    if not type(layer).__name__.startswith("ClusterWeights") or not getattr(layer, "preserve_sparsity", False):
      continue
    for name, centroids in layer.cluster_centroids.items():
      zero = tf.argmin(tf.abs(centroids), axis=-1)
      layer.zero_idx[name] = zero
      layer.sparsity_masks[name] = tf.cast(tf.not_equal(layer.pulling_indices[name], zero), tf.float32)
