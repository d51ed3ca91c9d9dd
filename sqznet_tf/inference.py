"""Repeated inference without Keras' per-call overhead: the forward pass compiled once.

`Keras Model.predict_on_batch` re-enters Keras' data handling on every call; at batch 1 that
costs as much as SqueezeNet itself (measured: 16.5 ms against 8.8 ms for v1.1 at 224 px on 2
cores; BENCHMARKS.md). `Predictor` traces `model(x, training=False)` once in a tf.function with a
fixed input signature (any batch size) and calls the traced concrete function directly (about 2%
faster at batch 1 than through the tf.function's dispatch). `sqznet_tf.runtimes.Predictor`
uses it as its TF runtime; the export checks use it, without folding, as the reference.

Batch norm is folded first (`fold_batch_norm`): a BatchNormalization that reads a convolution's
output scales and shifts it by constants at inference, so the conv's kernel and bias can do it
and the op goes. TF runs the two as separate oneDNN ops; the BN alone took 30% of the time of
squeezenet_v1_1_cifar at batch 1 (profile, 2-core AMD EPYC with AVX-512, 2026-12-04). Measured
there by bench/fold_batch_norm.py (7 alternating rounds): 4.57 -> 2.97 ms at batch 1 (32 px,
1.47x), 36.2 -> 29.9 ms at batch 32 (1.14x). Outputs move by float rounding only (probabilities
within 1.2e-6 on that model).

Then the Fire modules' concats go where only convolutions read them (`split_concat`): each reader
convolves the parts apart and sums, so the concatenated map is never written (7-12% less time for
v1.0 and v1.1 at 224 px, Intel Xeon with AVX-512; BENCHMARKS.md "Fire modules without the concat").

`freeze=True` turns the traced function's variables into constants (a snapshot of the weights at
the first call) and runs that graph in a TF session of its own with one inter-op thread, as TF
Serving runs a SavedModel: oneDNN keeps each constant filter in its own layout between calls
instead of reordering it per call, and the two expand convolutions of a Fire module no longer run
side by side, each asking for all the cores. On the AVX2-only CPU at batch 1 (v1.0 /
v1.1 at 224 px): 15.3 / 8.3 ms against 19.0 / 10.9 ms for the traced function (BENCHMARKS.md "TF
alone at batch 1"). The AVX-512 CPU measured an earlier frozen form slower, so
`sqznet_tf.runtimes.Predictor` measures both forms on the machine and keeps the faster.
"""

import collections
import contextlib
import copy
import functools
from typing import Dict, List, Optional

import numpy as np

from sqznet_tf import reporting
from sqznet_tf._keras import keras, tf
from sqznet_tf.models.layers import CeilMaxPool2D, inference_pooling


def _foldable(bn) -> bool:
  """Whether `bn` is a channels-last batch norm whose only input is a float32 Conv2D without
  activation that nothing else reads (then the conv can absorb it)."""
  if len(bn._inbound_nodes) != 1 or list(np.ravel(bn.axis)) not in ([3], [-1]):  # pylint: disable=protected-access
    return False
  conv = bn._inbound_nodes[0].inbound_layers  # pylint: disable=protected-access
  return (type(conv) is keras.layers.Conv2D and conv.data_format == "channels_last"  # pylint: disable=unidiomatic-typecheck
          and conv.activation is keras.activations.linear and len(conv._outbound_nodes) == 1  # pylint: disable=protected-access
          and len(conv._inbound_nodes) == 1 and conv.dtype == "float32" and bn.dtype == "float32")  # pylint: disable=protected-access


def fold_batch_norm(model):
  """A copy of the functional `model` for inference with every foldable BatchNormalization (see
  `_foldable`) merged into the convolution before it; `model` itself when it has none (or is not
  a functional model). The copy computes `model(x, training=False)` up to float rounding:
  kernel * g and (bias - mean) * g + beta, g = gamma / sqrt(moving_variance + epsilon).
  """
  if not getattr(model, "_is_graph_network", False) or isinstance(model, keras.Sequential):
    return model
  folds: Dict[str, str] = {bn.name: bn._inbound_nodes[0].inbound_layers.name  # pylint: disable=protected-access
                           for bn in model.layers
                           if isinstance(bn, keras.layers.BatchNormalization) and _foldable(bn)}
  if not folds:
    return model
  config = model.get_config()
  convs = set(folds.values())
  rewire = lambda ref: [folds[ref[0]], 0, 0, *ref[3:]] if ref[0] in folds else ref  # noqa: E731
  layers = []
  for entry in config["layers"]:
    if entry["name"] in folds:
      continue
    if entry["name"] in convs:
      entry["config"]["use_bias"] = True
    entry["inbound_nodes"] = [[rewire(ref) for ref in node] for node in entry["inbound_nodes"]]
    layers.append(entry)
  config["layers"] = layers
  config["output_layers"] = [rewire(ref) for ref in config["output_layers"]]
  weights = {}
  for bn_name, conv_name in folds.items():
    source, bn = model.get_layer(conv_name), model.get_layer(bn_name)
    kernel = source.kernel.numpy().astype(np.float64)
    bias = source.bias.numpy().astype(np.float64) if source.use_bias else np.zeros(kernel.shape[-1])
    g = (bn.gamma.numpy() if bn.scale else 1.0) / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
    beta = bn.beta.numpy() if bn.center else 0.0
    weights[conv_name] = [(kernel * g).astype(np.float32), ((bias - bn.moving_mean.numpy()) * g + beta).astype(np.float32)]
  return _rebuilt(model, config, weights)


def _rebuilt(model, config, weights, classes=None):
  """The model of `config` (a rewrite of `model`'s), its layers given `weights[name]` where listed and
  the weights of `model`'s layer of the same name otherwise (layers new to it have none)."""
  custom = {type(l).__name__: type(l) for l in model.layers}
  custom.update(classes or {})
  with keras.utils.custom_object_scope(custom):
    rebuilt = keras.Model.from_config(config)
  names = {l.name for l in model.layers}
  for layer in rebuilt.layers:
    if layer.name in weights:
      layer.set_weights(weights[layer.name])
    elif layer.name in names:
      layer.set_weights(model.get_layer(layer.name).get_weights())
  return rebuilt


class ConcatConv2D(keras.layers.Conv2D):
  """A `Conv2D` of the concatenation (last axis) of its inputs, computed as one convolution per input
  (its slice of the kernel's input channels) summed, so the concatenated map is never written.
  The same outputs up to float rounding (the order of the sum); `split_concat` builds it."""

  def __init__(self, part_channels, **kwargs):
    super().__init__(**kwargs)
    self.part_channels = [int(c) for c in part_channels]
    self.input_spec = None  # a list of inputs, one per part

  def build(self, input_shape):
    self.kernels = [self.add_weight(name=f"kernel_{i}", shape=(*self.kernel_size, c, self.filters),
                                    initializer="zeros", dtype=self.dtype)  # set by split_concat
                    for i, c in enumerate(self.part_channels)]
    self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                 dtype=self.dtype) if self.use_bias else None)
    self.built = True

  def call(self, inputs):
    total = None
    for x, kernel in zip(inputs[:-1], self.kernels[:-1]):
      y = self.convolution_op(x, kernel)
      total = y if total is None else total + y
    # The last part's convolution, bias, then the sum: the order TF's remapper fuses into one oneDNN
    # convolution with a sum post-op (Conv2D + BiasAdd + Add [+ Relu of the next layer]).
    y = self.convolution_op(inputs[-1], self.kernels[-1])
    if self.use_bias:
      y = tf.nn.bias_add(y, self.bias)
    if total is not None:
      y = y + total
    return self.activation(y)

  def compute_output_shape(self, input_shape):
    return super().compute_output_shape(input_shape[-1])

  def get_config(self):
    return {**super().get_config(), "part_channels": self.part_channels}


# Layers that act on every channel alone at inference: a concat read through them can be split.
_PER_CHANNEL = (CeilMaxPool2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout,
                keras.layers.ReLU)


def _per_channel(layer) -> bool:
  if isinstance(layer, keras.layers.Activation):
    return layer.get_config()["activation"] in ("relu", "linear")
  return isinstance(layer, _PER_CHANNEL) and getattr(layer, "data_format", "channels_last") == "channels_last"


def split_concat(model):
  """A copy of the functional `model` for inference with every channel concatenation that is read
  only by convolutions (directly, through pooling, dropout, ReLU or another such concat) left out: each such
  convolution becomes a `ConcatConv2D` over the concat's inputs, each pool or ReLU in between one
  copy per input. A Fire module's output is then never copied into one map: 7-12% less time for
  v1.0 and v1.1 at 224 px, batch 1 and 32, on an Intel Xeon with AVX-512 (BENCHMARKS.md "Fire
  modules without the concat"). `model` itself when nothing can be split. The copy computes
  `model(x, training=False)` up to float rounding.
  """
  if (not getattr(model, "_is_graph_network", False) or isinstance(model, keras.Sequential)
      or not any(type(l) is keras.layers.Concatenate for l in model.layers)):  # pylint: disable=unidiomatic-typecheck
    return model
  try:
    config = model.get_config()
  except NotImplementedError:  # a custom layer without get_config: run the model as it is
    return model
  layer_of = {l.name: l for l in model.layers}
  consumers = collections.defaultdict(list)
  for entry in config["layers"]:
    for node in entry["inbound_nodes"]:
      for ref in node:
        consumers[ref[0]].append(entry["name"])
  outputs = {ref[0] for ref in config["output_layers"]}
  nodes = {e["name"]: e["inbound_nodes"] for e in config["layers"]}

  def single(name):  # called once, on one tensor
    return len(nodes[name]) == 1 and len(nodes[name][0]) == 1

  def conv(name):
    l = layer_of[name]
    return (type(l) is keras.layers.Conv2D and l.data_format == "channels_last" and l.groups == 1  # pylint: disable=unidiomatic-typecheck
            and l.dtype == "float32" and single(name))

  def absorbed(name):  # every reader of `name`'s output can take it in parts
    readers = consumers[name]
    return bool(readers) and name not in outputs and all(
        conv(r) or (_per_channel(layer_of[r]) and single(r) and absorbed(r)) or splittable(r) for r in readers)

  def four_d(output):  # one output, NHWC
    return not isinstance(output, (list, tuple, dict)) and len(output.shape) == 4

  @functools.lru_cache(maxsize=None)
  def splittable(name):  # a concat whose parts can go on apart
    l = layer_of[name]
    return (type(l) is keras.layers.Concatenate and l.axis in (-1, 3) and len(nodes[name]) == 1  # pylint: disable=unidiomatic-typecheck
            and all(len(layer_of[ref[0]]._inbound_nodes) == 1 and four_d(layer_of[ref[0]].output)  # pylint: disable=protected-access
                    for ref in nodes[name][0]) and absorbed(name))

  split = {e["name"] for e in config["layers"] if splittable(e["name"])}
  if not split:
    return model
  parts: Dict[str, List[list]] = {}  # a split tensor's layer -> the refs of its parts
  channels = {}  # a per-part copy -> its channels (the model's own layers: their output's)
  width = lambda ref: channels.get(ref[0]) or int(layer_of[ref[0]].output.shape[-1])  # noqa: E731
  kernels = {}  # a ConcatConv2D -> its parts' channels
  layers = []
  for entry in config["layers"]:
    name = entry["name"]
    if name in split:
      parts[name] = [r for ref in entry["inbound_nodes"][0] for r in parts.get(ref[0], [ref])]
      continue
    source = entry["inbound_nodes"][0][0][0] if entry["inbound_nodes"] else None
    if source in parts and conv(name):
      entry.update(class_name="ConcatConv2D", module=None, registered_name="ConcatConv2D")
      entry.pop("build_config", None)  # one input shape; built from its inputs instead
      kernels[name] = [width(r) for r in parts[source]]
      entry["config"]["part_channels"] = kernels[name]
      entry["inbound_nodes"] = [[list(r) for r in parts[source]]]
    elif source in parts:  # per channel: one copy per part
      copies = []
      for i, ref in enumerate(parts[source]):
        part = copy.deepcopy(entry)
        part["name"] = part["config"]["name"] = f"{name}_part{i}"
        part["inbound_nodes"] = [[list(ref)]]
        layers.append(part)
        copies.append([part["name"], 0, 0, {}])
        channels[part["name"]] = width(ref)
      parts[name] = copies
      continue
    layers.append(entry)
  config["layers"] = layers
  weights = {}
  for name, widths in kernels.items():  # each part's slice of the kernel's input channels, in order
    source = layer_of[name]
    kernel, bounds = source.kernel.numpy(), np.cumsum([0, *widths])
    weights[name] = [kernel[:, :, a:b, :] for a, b in zip(bounds[:-1], bounds[1:])]
    weights[name] += [source.bias.numpy()] if source.use_bias else []
  return _rebuilt(model, config, weights, {"ConcatConv2D": ConcatConv2D})


@functools.lru_cache(maxsize=1)  # the CPU does not change under a process
def max_pool_v2_pays() -> bool:
  """Whether `Predictor`'s traced function should pool with MaxPoolV2 on this CPU: on x86 CPUs
  without AVX-512, where it was measured (5.1% less time for v1.0 at 224 px, batch 32, 2.7% for
  v1.1, 1.0% for the CIFAR-10 model; at batch 1 within -2..+2%; BENCHMARKS.md "Max pooling at
  inference"). Not on AVX-512 CPUs: on an Intel Xeon with AVX-512 it was 0-8% slower (v1.0 and v1.1,
  batch 1 and 32); not elsewhere, where TensorFlow runs both with its own kernel."""
  return reporting.X86 and not reporting.machine()["avx512"]


class Predictor:
  """`model`'s forward pass as one compiled function; `predict_on_batch`-compatible.

  Args:
    model: a single-input tf_keras model.
    fold: run a copy with batch norm folded into the convolutions (`fold_batch_norm`); False runs
      `model` as it is (the export checks' reference).
    freeze: the weights as constants of the traced graph, read once at the first call (later
      changes of `model`'s weights are not seen, as in a converted TFLite or ONNX model), run by a
      session with one inter-op thread.
    pool_v2: the traced function pools with MaxPoolV2 (`models.layers.inference_pooling`); None:
      where it was measured faster (`max_pool_v2_pays`). The frozen form always keeps MaxPool.
    split: run a copy without the concats that only convolutions read (`split_concat`); None: as
      `fold` (the reference form, fold=False, runs `model` as it is).
  The copies are made here, with `model`'s weights of the moment: a Predictor made before the weights
  change runs the old ones (make a new one; with fold=False and split=False it reads `model`'s own).
  """

  def __init__(self, model, fold: bool = True, freeze: bool = False, pool_v2: Optional[bool] = None,
               split: Optional[bool] = None):
    self.model = model
    self.pool_v2 = max_pool_v2_pays() if pool_v2 is None else pool_v2
    self.input_shape = model.input_shape
    self.output_shape = model.output_shape
    self.freeze = freeze
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    run = fold_batch_norm(model) if fold else model
    if fold if split is None else split:
      run = split_concat(run)
    self._net = run
    self._fn = tf.function(lambda x: run(x, training=False), input_signature=[spec])
    # The frozen form's own trace: its pooling stays MaxPool (below).
    self._fn_frozen = tf.function(lambda x: run(x, training=False), input_signature=[spec])
    self._run = None  # made on the first call (the traced concrete function, no signature matching per call)

  def _runner(self):
    if not self.freeze:
      # Pooling as MaxPoolV2 where it pays (max_pool_v2_pays).
      with inference_pooling(self._net) if self.pool_v2 else contextlib.nullcontext():
        concrete = self._fn.get_concrete_function()
      return lambda x: concrete(tf.convert_to_tensor(x)).numpy()
    # Frozen (the small batches' form where it measures faster), MaxPool stays: MaxPoolV2 made v1.1's
    # batch-1 call 6.5% slower there.
    concrete = self._fn_frozen.get_concrete_function()
    from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-import-not-at-top
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    graph = tf.Graph()
    with graph.as_default():
      tf.compat.v1.import_graph_def(frozen.graph.as_graph_def(), name="")
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=1, use_per_session_threads=True)
    session = tf.compat.v1.Session(graph=graph, config=config)
    feed, fetch = frozen.inputs[0].name, frozen.outputs[0].name
    return lambda x: session.run(fetch, {feed: x})

  def frozen(self) -> "Predictor":
    """This Predictor's frozen form (`freeze=True`) on the same batch-norm fold: nothing is built
    again; its function is traced once, with MaxPool (`_runner`)."""
    other = copy.copy(self)
    other.freeze, other._run = True, None  # pylint: disable=protected-access
    return other

  def __call__(self, x) -> np.ndarray:
    if self._run is None:
      self._run = self._runner()
    return self._run(np.asarray(x, dtype=np.float32))

  predict_on_batch = __call__

  def predict(self, x, batch_size: int = 32) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.concatenate([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def predictor(model):
  """A Predictor for a single-input Keras model; anything else (a TFLite runner...) as it is."""
  if isinstance(model, keras.Model) and not isinstance(model.input_shape, list):
    return Predictor(model)
  return model
