"""sqznet-compress: prune -> (fine-tune) -> share weights -> (fine-tune) -> encode, with a size/accuracy table.

Starts from --weights ('imagenet', a .net file, a .sqz container, Keras weights saved by this
package, or a sqznet-train folder) and writes --output: this package's .sqz container (sparse,
weight-shared, Huffman-coded; see docs/CONTAINER.md) or, with --output_format=net (or an output
ending in .net), the Deep Compression release's own format. Every stage is optional and each
gets a row: top-1/top-5, kernel density, float32 bytes, the zipped Keras weights file (what
tfmot's guides call the size), Deep Compression's accounting, and the real file.

Accuracy is measured on labelled photos (--data_dir, layouts as in sqznet-evaluate) or, without
them, on the validation split of --train_data. Fine-tuning (--prune_epochs, --cluster_epochs)
trains on --train_data (embedded, a class folder, TFRecords) with sqznet-train's pipeline.
--int8_tflite also writes an int8 TFLite model of the result (post-training quantization, or
quantization-aware training with --qat_epochs) and measures it.

Examples:
  sqznet-compress --weights=../shared/data/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net \\
      --bits=6 --output=/tmp/squeezenet_6bit.sqz \\
      --data_dir=../shared/data/imagenet_sample/images --labels=../shared/data/imagenet_sample/synset_words.txt
  sqznet-compress --model=squeezenet_v1_1 --batch_norm --weights=runs/demo/phase3_dense \\
      --train_data=embedded --prune --sparsity=0.8 --prune_epochs=1 --bits=4 --cluster_epochs=1 \\
      --output=/tmp/digits.sqz
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  # `python tools/compress.py`: make the repository importable without installing.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import cli, reporting  # noqa: E402
from sqznet_tf.errors import SqznetError  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("model", "squeezenet_v1_0_caffe", "Registered model (a .sqz --weights names its own).")
cli.define_override_flags()
flags.DEFINE_string("weights", "imagenet", "'imagenet', a .net file, a .sqz container, Keras weights (.h5) "
                    "saved by this package, or a sqznet-train folder.")
flags.DEFINE_integer("classes", None, "Classes of the model (default: the weights' metadata; 1000 for ImageNet).")
flags.DEFINE_integer("input_size", None, "Input side (default: the weights' crop size).", lower_bound=8)
# Evaluation on labelled photos.
flags.DEFINE_string("data_dir", None, "Labelled photos to measure each stage on (folder or TFRecords).")
flags.DEFINE_enum("data_format", "auto", ["auto", "folders", "flat", "tfrecord"], "Layout of --data_dir.")
flags.DEFINE_string("labels", None, "Synset file for --data_dir (flat folders, WordNet-id folder names).")
flags.DEFINE_integer("label_offset", 0, "Subtracted from TFRecord labels (1 for 1-based ImageNet records).")
flags.DEFINE_integer("limit", None, "Photos per evaluation (the first ones, taken round-robin over the classes); "
                     "default all.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Batch size of evaluation and fine-tuning.", lower_bound=1)
# Training data for fine-tuning (and evaluation without --data_dir).
flags.DEFINE_string("train_data", None, "Fine-tuning data: embedded, an image folder or TFRecords; its "
                    "validation split measures the stages when --data_dir is not given.")
flags.DEFINE_float("val_split", 0.1, "Share of --train_data held out for validation.")
flags.DEFINE_integer("steps_per_epoch", None, "Fine-tuning steps per epoch; default one pass over --train_data.",
                     lower_bound=1)
flags.DEFINE_float("learning_rate", 0.001, "Fine-tuning learning rate (SGD with momentum 0.9, constant).")
flags.DEFINE_string("work_dir", "runs/compress", "Fine-tuning runs keep checkpoints and logs here.")
# Stages.
flags.DEFINE_bool("prune", False, "Prune by magnitude to --sparsity (zeros already there count).")
flags.DEFINE_string("sparsity", "0.67", "Sparsity of every prunable layer, or a JSON/YAML map file or text "
                    "of layer (glob) -> sparsity, as sqznet-dsd reads.")
flags.DEFINE_list("keep_dense", ["conv1"], "Layers not pruned.")
flags.DEFINE_integer("prune_epochs", 0, "Retrain the pruned model with fixed masks (needs --train_data).",
                     lower_bound=0)
flags.DEFINE_bool("cluster", True, "Weight sharing: 2^bits values per layer, code 0 for zero.")
flags.DEFINE_integer("bits", 8, "Bits per shared-weight code, 1..8.")
flags.DEFINE_enum("cluster_init", "optimal", ["optimal", "linear", "density", "random", "kmeans_plus_plus"],
                  "Centroids: optimal (exact least-squares 1-D k-means) or an initialisation refined by Lloyd "
                  "iterations; linear is the paper's choice before retraining.")
flags.DEFINE_integer("cluster_epochs", 0, "Fine-tune the centroids with tfmot clustering (needs --train_data); "
                     "0: k-means without training.", lower_bound=0)
# Encoding.
flags.DEFINE_string("output", None, "The compressed file (.sqz, or .net for the release format).")
flags.DEFINE_enum("output_format", None, ["sqz", "net"], "Default: from the --output suffix (.net -> net).")
flags.DEFINE_bool("entropy", True, "Huffman-code codes and gaps (.sqz).")
flags.DEFINE_enum("layout", "auto", ["auto", "dense", "sparse"], "Per-kernel layout (.sqz); auto: the smaller.")
flags.DEFINE_integer("index_bits", 0, "Gap width of the sparse layout, 1..8; 0 chooses per layer.")
flags.DEFINE_string("int8_tflite", None, "Also write a post-training int8 TFLite model of the result here "
                    "(representative images from the evaluation data) and measure it.")
flags.DEFINE_integer("qat_epochs", 0, "With --int8_tflite: quantization-aware training (tfmot) of the result "
                     "for this many epochs on --train_data before conversion, instead of post-training "
                     "quantization.", lower_bound=0)
flags.DEFINE_bool("per_layer", False, "Also print bytes and bits per weight of every tensor in the file.")
flags.DEFINE_enum("format", "table", ["table", "json"], "Output format; json prints one JSON object as the "
                  "last line of stdout.")


def _evaluator(info, model_input: int):
  """(evaluate_fn, sample images for int8 calibration) from --data_dir or --train_data, or (None, None)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if FLAGS.data_dir:
    from sqznet_tf import evaluation  # pylint: disable=g-import-not-at-top
    from sqznet_tf.data import preprocessing  # pylint: disable=g-import-not-at-top
    source = cli.source_from_flags(FLAGS)
    prep = info.preprocessing if info else preprocessing.PRESETS["caffe"]
    if prep.crop_size != model_input:
      prep = preprocessing.with_crop(prep, model_input, None)
    pre = preprocessing.Preprocessor(prep)
    def evaluate(model):
      r = evaluation.evaluate(model, source, pre, FLAGS.batch_size, FLAGS.limit, progress=False)
      return r.top1, r.top5
    def samples(n):
      out = []
      for _, _, data in source:
        if len(out) == n:
          break
        if not isinstance(data, Exception):
          out.append(pre(data))
      return np.stack(out).astype(np.float32)
    return evaluate, samples
  if FLAGS.train_data:
    from sqznet_tf.data import pipeline  # pylint: disable=g-import-not-at-top
    spec = _train_spec(info, model_input)
    data = pipeline.make_datasets(spec, FLAGS.batch_size)
    if data.val is None:
      raise SqznetError(f"--train_data={FLAGS.train_data} has no validation split; set --val_split > 0")
    def evaluate(model):  # a Keras model, or anything with predict_on_batch (the TFLite runner)
      hit1 = hit5 = n = 0
      for x, y in data.val:
        top = np.argsort(-np.asarray(model.predict_on_batch(x.numpy())), axis=1)[:, :5]
        label = np.argmax(y.numpy(), axis=1)
        hit1 += int((top[:, 0] == label).sum())
        hit5 += int((top == label[:, None]).any(axis=1).sum())
        n += len(label)
      return hit1 / n, hit5 / n
    def samples(n):
      return np.concatenate([x.numpy() for x, _ in data.val.take(max(1, n // FLAGS.batch_size + 1))])[:n]
    return evaluate, samples
  return None, None


def _train_spec(info, model_input: int):
  from sqznet_tf.data.pipeline import DataSpec  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.flags import data_source  # pylint: disable=g-import-not-at-top
  source, path = data_source(FLAGS.train_data, "auto")
  prep = info.preprocessing.mode if info else "caffe"
  return DataSpec(source=source, path=path, val_split=FLAGS.val_split, image_size=model_input, preprocessing=prep)


def _config(model_input=None, info=None):
  from sqznet_tf.compression.pipeline import CompressConfig  # pylint: disable=g-import-not-at-top
  from sqznet_tf.pruning import prune  # pylint: disable=g-import-not-at-top
  fmt = FLAGS.output_format or ("net" if FLAGS.output and FLAGS.output.endswith(".net") else "sqz")
  train = None
  if FLAGS.train_data and model_input:
    from sqznet_tf.training.config import TrainConfig  # pylint: disable=g-import-not-at-top
    train = TrainConfig(data=_train_spec(info, model_input), batch_size=FLAGS.batch_size,
                        learning_rate=FLAGS.learning_rate, lr_schedule="constant", histogram_freq=0, verbose=2,
                        steps_per_epoch=FLAGS.steps_per_epoch)
  return CompressConfig(
      model=FLAGS.model, overrides=cli.overrides_from_flags(FLAGS), weights=FLAGS.weights, classes=FLAGS.classes,
      input_size=FLAGS.input_size, prune=FLAGS.prune, sparsity=prune.load_spec(FLAGS.sparsity),
      keep_dense=tuple(FLAGS.keep_dense), prune_epochs=FLAGS.prune_epochs, cluster=FLAGS.cluster, bits=FLAGS.bits,
      cluster_init=FLAGS.cluster_init, cluster_epochs=FLAGS.cluster_epochs, entropy=FLAGS.entropy,
      layout=FLAGS.layout, index_bits=FLAGS.index_bits, output=FLAGS.output, output_format=fmt, train=train,
      work_dir=FLAGS.work_dir)


def main(argv):
  del argv
  from sqznet_tf.compression import pipeline  # pylint: disable=g-import-not-at-top
  cfg = _config()
  cfg.validate(check_train=False)
  if FLAGS.qat_epochs and not (FLAGS.train_data and FLAGS.int8_tflite):
    raise SqznetError("--qat_epochs trains an int8 TFLite model: give --train_data and --int8_tflite")
  if (cfg.prune and cfg.prune_epochs) or (cfg.cluster and cfg.cluster_epochs):
    if not FLAGS.train_data:
      raise SqznetError("--prune_epochs/--cluster_epochs > 0 fine-tune the model: give --train_data")
  # The model sizes the evaluation data, then starts the run.
  model, info = pipeline.load_model(cfg)
  size = int(model.input_shape[1])
  evaluate, samples = _evaluator(info, size)
  cfg = _config(size, info)
  result = pipeline.compress(cfg, evaluate, log=reporting.progress, loaded=(model, info))
  rows = [r.to_dict() for r in result.rows]
  extra = {}
  if FLAGS.int8_tflite:
    from sqznet_tf.compression import tfmot_ops  # pylint: disable=g-import-not-at-top
    if samples is None:
      raise SqznetError("--int8_tflite needs images to calibrate on: give --data_dir or --train_data")
    if FLAGS.qat_epochs:
      reporting.progress(f"quantization-aware training for {FLAGS.qat_epochs} epochs, then int8 TFLite")
      data = pipeline.qat_tflite(cfg, result.model, FLAGS.qat_epochs)
      stage = f"int8 TFLite (QAT, {FLAGS.qat_epochs} epochs)"
    else:
      reporting.progress("post-training int8 quantization (TFLite)")
      data = tfmot_ops.int8_tflite(result.model, samples(64))
      stage = "int8 TFLite (post-training)"
    cli.write_atomic(FLAGS.int8_tflite, data)
    acc = _tflite_accuracy(data, evaluate, result.model) if evaluate else (None, None)
    rows.append(dict(stage=stage, top1=acc[0], top5=acc[1], density=rows[-1]["density"],
                     bits=8, fp32_bytes=rows[-1]["fp32_bytes"], zip_bytes=None, deep_compression_bytes=None,
                     file_bytes=len(data)))
    extra["int8_tflite"] = FLAGS.int8_tflite
  out = {"model": cfg.model, "weights": cfg.weights, "bits": cfg.bits, "output": result.output,
         "stages": rows, "tensors": [dict(vars(s), bits_per_weight=round(s.bits_per_weight, 3)) for s in result.stats],
         **extra}
  if FLAGS.format == "json":
    reporting.print_json(out)
    return
  table_rows = [{"stage": r["stage"], "top-1": _pct(r["top1"]), "top-5": _pct(r["top5"]),
                 "density": f"{r['density']:.3f}", "fp32": r["fp32_bytes"], "zip(h5)": r["zip_bytes"] or "",
                 "DC estimate": r["deep_compression_bytes"] or "", "file": r["file_bytes"] or ""} for r in rows]
  print(reporting.table(table_rows, ["stage", "top-1", "top-5", "density", "fp32", "zip(h5)", "DC estimate", "file"]))
  if result.output:
    total = rows[-1 - bool(extra)]["file_bytes"]
    nz = sum(s.nonzero for s in result.stats if s.kind == "coded")
    line = f"\n{result.output}: {total:,} bytes ({total / 1024:.1f} KiB)"
    if nz:
      line += f", {8 * total / nz:.2f} bits per non-zero weight"
    print(line)
  if FLAGS.per_layer and result.stats:
    print()
    print(reporting.table([{"tensor": s.name, "shape": "x".join(map(str, s.shape)), "layout": s.layout,
                            "index bits": s.index_bits or "", "huffman": "yes" if s.huffman else "",
                            "entries": s.entries, "nonzero": s.nonzero, "bytes": s.nbytes,
                            "bits/weight": f"{s.bits_per_weight:.2f}"} for s in result.stats],
                          ["tensor", "shape", "layout", "index bits", "huffman", "entries", "nonzero", "bytes",
                           "bits/weight"]))


def _pct(v):
  return "" if v is None else f"{v:.2%}"


def _tflite_accuracy(data, evaluate, model):
  """Accuracy of the TFLite flatbuffer, through a Keras-like wrapper the evaluators accept."""
  from sqznet_tf.compression import tfmot_ops  # pylint: disable=g-import-not-at-top

  class _Runner:
    input_shape = model.input_shape
    output_shape = model.output_shape

    def predict_on_batch(self, x):
      return tfmot_ops.tflite_predict(data, x)

  return evaluate(_Runner())


def run():
  cli.run_main(main)


if __name__ == "__main__":
  run()
