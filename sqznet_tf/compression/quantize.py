"""Quantization: quantization-aware training (tfmot's 8-bit scheme) and its int8 TFLite model.

`quantize_aware` builds the QAT model; layers that tfmot cannot quantize (this package's
CeilMaxPool2D and LRN) stay float through a no-op QuantizeConfig. `qat_tflite` trains it on a
data spec and converts it. Post-training quantization is `sqznet_tf.compression.tflite.convert`.
"""

from sqznet_tf._keras import keras, tfmot
from sqznet_tf.compression import tflite
from sqznet_tf.data import pipeline as data_pipeline
from sqznet_tf.errors import SqznetError
from sqznet_tf.models.layers import CUSTOM_OBJECTS, copy_layer
from sqznet_tf.training import optimizers

_qk = tfmot().quantization.keras


@keras.utils.register_keras_serializable(package="sqznet_tf")
class NoOpQuantizeConfig(_qk.QuantizeConfig):
  """Quantizes nothing: the layer runs in float inside a quantization-aware model.

  Registered as "sqznet_tf>NoOpQuantizeConfig": tfmot's quantize_scope already maps the plain
  name "NoOpQuantizeConfig" to a class of its own.
  """

  def get_weights_and_quantizers(self, layer):
    return []

  def get_activations_and_quantizers(self, layer):
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    pass

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return []

  def get_config(self):
    return {}


class _KernelQuantizingLayoutTransform(_qk.default_8bit.Default8BitQuantizeLayoutTransform):
  """tfmot's default 8-bit layout transform, except that Conv2D/Dense -> ReLU keeps the kernel quantized.

  tfmot 0.8's LayerReLUQuantize gives a Conv2D or Dense layer followed by a ReLU layer a
  NoOpQuantizeConfig, to keep a fake-quant off the conv output (TFLite fuses the ReLU). That
  also drops the kernel's fake-quant, so SqueezeNet (conv -> ReLU everywhere) would train with
  float weights. Those layers get their registry config without the activation/output
  quantizers instead: the kernel is fake-quantized (per channel for Conv2D), the output is
  quantized by the ReLU after it, as tfmot already does for Conv2D -> BatchNorm -> ReLU.
  """

  def apply(self, model, layer_quantize_map):
    model, layer_quantize_map = super().apply(model, layer_quantize_map)
    registry = _qk.default_8bit.Default8BitQuantizeRegistry()
    for layer in model.layers:
      entry = layer_quantize_map.get(layer.name)
      config = (entry or {}).get("quantize_config")
      # tfmot's own NoOpQuantizeConfig (default_8bit or default_n_bit), never the one we annotate with.
      if (type(layer) in (keras.layers.Conv2D, keras.layers.Dense) and config is not None
          and type(config).__name__ == "NoOpQuantizeConfig" and not isinstance(config, NoOpQuantizeConfig)):
        default = registry.get_quantize_config(layer)
        entry["quantize_config"] = type(default).from_config(
            {**default.get_config(), "activation_attrs": [], "quantize_output": False})
    return model, layer_quantize_map


class _Scheme(_qk.default_8bit.Default8BitQuantizeScheme):

  def get_layout_transformer(self):
    return _KernelQuantizingLayoutTransform()


def quantize_scope():
  """Context in which Keras can load or clone a QAT model of this package (custom layers included)."""
  return _qk.quantize_scope({**CUSTOM_OBJECTS, "sqznet_tf>NoOpQuantizeConfig": NoOpQuantizeConfig})


def quantize_aware(model):
  """A quantization-aware training model of `model` (tfmot default 8-bit scheme), weights kept.

  Layers the default 8-bit registry supports get its configs: Conv2D [+ BatchNormalization] +
  ReLU are quantized after the ReLU only, as TFLite fuses them, and every Conv2D/Dense kernel
  is fake-quantized (see _KernelQuantizingLayoutTransform). The others (CeilMaxPool2D, LRN,
  ...) are annotated with NoOpQuantizeConfig and stay float. `model` is not changed. Load a
  saved one inside `quantize_scope()`.

  tfmot starts every quantization range at [-6, 6]; weight ranges follow the weights from the
  first training step, activation ranges move as an exponential moving average (decay 0.999),
  so predictions before fine-tuning can differ a lot from the float model's.
  """
  registry = _qk.default_8bit.Default8BitQuantizeRegistry()

  def annotate(layer):
    new = copy_layer(layer)
    if isinstance(layer, keras.layers.InputLayer):
      return new
    # BatchNormalization is not in the registry: the layout transform folds it with its conv.
    if registry.supports(layer) or isinstance(layer, keras.layers.BatchNormalization):
      return _qk.quantize_annotate_layer(new)
    return _qk.quantize_annotate_layer(new, quantize_config=NoOpQuantizeConfig())

  with quantize_scope():
    annotated = keras.models.clone_model(model, clone_function=annotate)
    return _qk.quantize_apply(annotated, scheme=_Scheme())


def qat_tflite(train_config, model, epochs: int) -> bytes:
  """Quantization-aware training of `model` on `train_config`'s data, then an int8 TFLite flatbuffer.

  tfmot's default 8-bit scheme (see `quantize_aware`); a plain `fit` at the configured learning
  rate, without train()'s checkpoints: QAT is a short fine-tune. The QAT model carries its own
  quantization ranges, so the converter needs no representative images.
  """
  if train_config is None:
    raise SqznetError("quantization-aware training needs training data (--train_data)")
  data = data_pipeline.make_datasets(train_config.data, train_config.batch_size, int(model.output_shape[-1]))
  steps = train_config.steps_per_epoch or max(1, data.train_size // train_config.batch_size)
  qat = quantize_aware(model)
  optimizers.compile_model(qat, optimizer=keras.optimizers.SGD(train_config.learning_rate, momentum=0.9),
                           loss=keras.losses.CategoricalCrossentropy())
  qat.fit(data.train.repeat(), epochs=epochs, steps_per_epoch=steps, verbose=train_config.verbose)
  return tflite.convert(qat, "dynamic", converter=tflite.keras_converter(qat))
