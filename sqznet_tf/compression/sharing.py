"""Weight sharing: k-means over a kernel's non-zero weights (numpy; no TensorFlow, no training).

Deep Compression (Han et al., arXiv:1510.00149, section 3) replaces the weights of a layer by
2^bits shared values: one code of `bits` bits per weight indexes a per-layer codebook. As in its
SqueezeNet release, code 0 is reserved for exact zero (pruned weights and the filler entries of
the sparse layout), so the non-zero weights share 2^bits - 1 centroids. "optimal" (the default)
is the exact least-squares 1-D k-means by dynamic programming (over at most 1024 distinct values
or equal-weight bins, then Lloyd iterations); the other choices initialise the centroids
linearly between the smallest and largest weight (the paper's choice before retraining), by
density (quantiles), at random weights or by k-means++, and refine them by Lloyd iterations.
This is the no-retraining form. `cluster.cluster_model` is the form that
fine-tunes the centroids.
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np

from sqznet_tf.errors import SqznetError

INITS = ("optimal", "linear", "density", "random", "kmeans_plus_plus")
DP_MAX_VALUES = 1024  # distinct values (or bins) the exact dynamic programme runs over


@dataclasses.dataclass
class Shared:
  """A kernel after weight sharing.

  Attributes:
    codebook: float32 shared values, at most 2^bits; codebook[0] is 0.0.
    codes: uint8 codes, the kernel's shape; 0 where the weight is zero.
  """
  codebook: np.ndarray
  codes: np.ndarray

  @property
  def kernel(self) -> np.ndarray:
    return self.codebook[self.codes]


def check_bits(bits) -> int:
  if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
    raise SqznetError(f"bits={bits!r} is not accepted; expected an integer from 1 to 8 "
                      "(a codebook of 2^bits values per layer, code 0 reserved for zero)")
  return int(bits)


def check_init(init: str) -> str:
  if init not in INITS:
    raise SqznetError(f"centroid initialisation {init!r} is not accepted; expected one of {', '.join(INITS)}")
  return init


def _initial(values: np.ndarray, weights: np.ndarray, k: int, init: str, rng) -> np.ndarray:
  if init == "linear":
    return np.linspace(values[0], values[-1], k)
  if init == "density":
    cdf = np.cumsum(weights) / weights.sum()
    return np.interp((np.arange(k) + 0.5) / k, cdf, values)
  if init == "random":
    return np.sort(rng.choice(values, size=k, replace=values.size < k, p=weights / weights.sum()))
  # kmeans++: each next centroid drawn in proportion to the squared distance to the nearest one.
  centroids = [values[rng.choice(values.size, p=weights / weights.sum())]]
  d2 = (values - centroids[0]) ** 2
  for _ in range(1, k):
    p = d2 * weights
    if p.sum() <= 0:
      centroids.append(values[rng.integers(values.size)])
    else:
      centroids.append(values[rng.choice(values.size, p=p / p.sum())])
    d2 = np.minimum(d2, (values - centroids[-1]) ** 2)
  return np.sort(np.asarray(centroids))


def _optimal(values: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
  """Centroids of the exact weighted 1-D k-means of sorted distinct `values` (dynamic programme).

  Clusters of an optimal 1-D k-means are runs of consecutive sorted values, so the least total
  squared error of splitting values[0..j] into m runs follows from the one for m - 1 runs. The
  run costs form a Monge array, so the (leftmost) best start of the last run never moves left as
  j moves right: each m is a divide and conquer over j, one vectorised pass per level, O(n log n)
  instead of O(n^2) (256 centroids over 1,024 values: 0.13 s instead of 2.9 s).
  """
  n = values.size
  cw = np.concatenate([[0.0], np.cumsum(weights)])
  cx = np.concatenate([[0.0], np.cumsum(weights * values)])
  cxx = np.concatenate([[0.0], np.cumsum(weights * values * values)])

  def cost(first, last):  # squared error of one run over values[first..last]
    t = cx[last + 1] - cx[first]
    return np.maximum((cxx[last + 1] - cxx[first]) - t * t / (cw[last + 1] - cw[first]), 0.0)

  best = cost(np.zeros(n, dtype=np.int64), np.arange(n))  # one run covering values[0..j]
  starts = []
  for m in range(1, k):  # m + 1 runs: the last one starts at s in [m, j]
    new, start = np.full(n, np.inf), np.full(n, m, dtype=np.int64)
    # Pending ranges of j (j_lo..j_hi) with the range their best start lies in (s_lo..s_hi).
    j_lo, j_hi, s_lo, s_hi = (np.array([m]), np.array([n - 1]), np.array([m]), np.array([n - 1]))
    while j_lo.size:
      mid = (j_lo + j_hi) // 2
      lens = np.minimum(s_hi, mid) - s_lo + 1
      offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
      seg = np.repeat(np.arange(mid.size), lens)
      local = np.arange(seg.size) - offsets[seg]
      s = s_lo[seg] + local
      total = best[s - 1] + cost(s, mid[seg])
      low = np.minimum.reduceat(total, offsets)
      arg = s_lo + np.minimum.reduceat(np.where(total == low[seg], local, seg.size), offsets)
      new[mid], start[mid] = low, arg
      left, right = mid > j_lo, mid < j_hi
      j_lo, j_hi, s_lo, s_hi = (np.concatenate([j_lo[left], mid[right] + 1]),
                                np.concatenate([mid[left] - 1, j_hi[right]]),
                                np.concatenate([s_lo[left], arg[right]]), np.concatenate([arg[left], s_hi[right]]))
    best = new
    starts.append(start)
  bounds, end = [], n - 1
  for arg in reversed(starts):
    s = int(arg[end])
    bounds.append(s)
    end = s - 1
  edges = [0] + bounds[::-1] + [n]
  return np.asarray([(cx[b] - cx[a]) / (cw[b] - cw[a]) for a, b in zip(edges[:-1], edges[1:])])


def _assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
  """Index of the nearest of the sorted `centroids` for each value."""
  mid = (centroids[1:] + centroids[:-1]) / 2
  return np.searchsorted(mid, values)


def kmeans_1d(values: np.ndarray, k: int, init: str = "optimal", iterations: int = 50,
              seed: int = 0, importance: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
  """(sorted centroids, index of each value's centroid) by weighted Lloyd iterations.

  importance: a non-negative weight per value (e.g. its Fisher information): the squared error
  of each value counts that much. Default: every value counts once.

  There are k centroids, or one per distinct value when there are no more than k.

  Runs on the distinct values with their counts, so a kernel of a million weights with a few
  hundred distinct values costs a few hundred.
  """
  check_init(init)
  values = np.asarray(values, dtype=np.float64).reshape(-1)
  if values.size == 0:
    return np.zeros(k), np.zeros(0, dtype=np.int64)
  uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
  w = counts.astype(np.float64)
  if importance is not None:
    imp = np.asarray(importance, dtype=np.float64).reshape(-1)
    if imp.shape != values.shape or not np.all(np.isfinite(imp)) or imp.min() < 0:
      raise SqznetError(f"importance must be {values.size} finite values >= 0, one per weight")
    summed = np.bincount(inverse, weights=imp, minlength=uniq.size)
    # 1% of the weight spread evenly over the values, so that none weighs nothing.
    total = summed.sum()
    w = (0.99 * summed / total if total > 0 else 0) + 0.01 * w / w.sum()
  rng = np.random.default_rng(seed)
  if uniq.size <= k:  # every value keeps its own centroid; the codebook is shorter
    return uniq, inverse.astype(np.int64)
  if init == "optimal":
    if uniq.size <= DP_MAX_VALUES:
      c = _optimal(uniq, w, k)
      return c, _assign(uniq, c)[inverse]
    # Too many distinct values: the programme over equal-weight bins, refined by Lloyd below.
    edges = np.searchsorted(np.cumsum(w) / w.sum(), np.linspace(0, 1, DP_MAX_VALUES + 1)[1:-1])
    groups = [g for g in np.split(np.arange(uniq.size), np.unique(edges)) if g.size]
    gw = np.asarray([w[g].sum() for g in groups])
    gx = np.asarray([(w[g] * uniq[g]).sum() for g in groups]) / gw
    c = _optimal(gx, gw, min(k, gx.size))
    c = np.concatenate([c, np.full(k - c.size, c[-1])]) if c.size < k else c
  else:
    c = np.sort(_initial(uniq, w, k, init, rng).astype(np.float64))
  for _ in range(iterations):
    a = _assign(uniq, c)
    sums = np.bincount(a, weights=w * uniq, minlength=k)
    n = np.bincount(a, weights=w, minlength=k)
    new = np.where(n > 0, sums / np.maximum(n, 1e-300), c)  # an empty cluster keeps its centroid
    new = np.sort(new)
    if np.array_equal(new, c):
      break
    c = new
  return c, _assign(uniq, c)[inverse]


def share(kernel: np.ndarray, bits: int, init: str = "optimal", iterations: int = 50, seed: int = 0,
          importance: Optional[np.ndarray] = None) -> Shared:
  """Weight sharing of one kernel: zeros stay zero (code 0), non-zeros get 2^bits - 1 centroids.

  importance: per weight (the kernel's shape), how much its squared error counts in the k-means
  (Fisher-weighted sharing); default: equally.

  A centroid that k-means puts exactly at 0.0 is nudged to the nearest float32 beside it, so a
  non-zero weight never becomes a pruned one by sharing.
  """
  bits = check_bits(bits)
  kernel = np.asarray(kernel, dtype=np.float32)
  flat = kernel.reshape(-1)
  nz = flat != 0
  k = (1 << bits) - 1
  imp = None if importance is None else np.asarray(importance, np.float64).reshape(-1)[nz]
  centroids, assign = kmeans_1d(flat[nz], k, init, iterations, seed, imp)
  book = centroids.astype(np.float32)
  book[book == 0] = np.float32(np.finfo(np.float32).tiny)
  codebook = np.concatenate([np.zeros(1, np.float32), book])
  codes = np.zeros(flat.size, dtype=np.uint8)
  codes[nz] = assign + 1
  return Shared(codebook, codes.reshape(kernel.shape))


def codebook_of(kernel: np.ndarray, bits: int, what: str = "kernel") -> Shared:
  """The codebook of a kernel that is already weight-shared (e.g. after tfmot clustering).

  Raises:
    SqznetError: if the kernel has more than 2^bits - 1 distinct non-zero values.
  """
  bits = check_bits(bits)
  flat = np.asarray(kernel, dtype=np.float32).reshape(-1)
  nz = flat != 0
  uniq, inverse = np.unique(flat[nz], return_inverse=True)
  if uniq.size > (1 << bits) - 1:
    raise SqznetError(f"{what} has {uniq.size} distinct non-zero values, more than the {(1 << bits) - 1} "
                      f"a {bits}-bit codebook holds beside zero; share its weights first (--cluster)")
  codebook = np.concatenate([np.zeros(1, np.float32), uniq.astype(np.float32)])
  codes = np.zeros(flat.size, dtype=np.uint8)
  codes[nz] = inverse + 1
  return Shared(codebook, codes.reshape(np.shape(kernel)))
