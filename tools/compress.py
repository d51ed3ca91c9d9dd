"""sqznet-compress: prune -> (fine-tune) -> share weights -> (fine-tune) -> encode, with a size/accuracy table.

Starts from --weights (any model form: see --helpfull) and writes --output: this package's .sqz container (sparse,
weight-shared, Huffman-coded; see docs/CONTAINER.md) or, with --output_format=net (or an output
ending in .net), the Deep Compression release's own format. Every stage is optional and each
gets a row: top-1/top-5, kernel density, float32 bytes, the zipped Keras weights file (what
tfmot's guides call the size), Deep Compression's accounting, and the real file.

Accuracy is measured on labelled photos (--data_dir, layouts as in sqznet-evaluate) or, without
them, on the validation split of --train_data. Fine-tuning (--prune_epochs, --cluster_epochs)
trains on --train_data (embedded, a class folder, TFRecords) with sqznet-train's pipeline.
--int8_tflite also writes an int8 TFLite model of the result (post-training quantization, or
quantization-aware training with --qat_epochs) and measures it.

Without labels: --distill_data=DIR trains only the shared values (every code and zero fixed) to
match the model before sharing on DIR's photos (KL divergence at --distill_temperature), to win
back what re-sharing at fewer bits loses (measured: BENCHMARKS.md); --max_bytes=N picks each layer's width so
that the file fits N bytes (measured sensitivity per layer and width, exact knapsack).

Examples:
  sqznet-compress --weights=../shared/data/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net \\
      --bits=6 --output=/tmp/squeezenet_6bit.sqz \\
      --data_dir=../shared/data/imagenet_sample/images --labels=../shared/data/imagenet_sample/synset_words.txt
  sqznet-compress --weights=../shared/data/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net \\
      --max_bytes=409600 --distill_data=../shared/data/imagenet_sample/images --distill_reassign \\
      --distill_temperature=2 --distill_fisher_photos=128 --output=/tmp/squeezenet_400k.sqz
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

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402

FLAGS = flags.FLAGS

sq_flags.define_model_flags()
sq_flags.define_labelled_data_flags(required=False, what="Labelled photos to measure each stage on")
sq_flags.define_evaluation_flags()
flags.DEFINE_string("train_data", None, "Fine-tuning data: embedded, an image folder or TFRecords; its "
                    "validation split measures the stages when --data_dir is not given.")
sq_flags.define_val_split_flag()
sq_flags.define_steps_flag()
sq_flags.define_learning_rate_flag(0.001)
flags.DEFINE_string("work_dir", "runs/compress", "Fine-tuning runs keep checkpoints and logs here; compress.json "
                    "records the run (the folder then loads as the compressed model).")
flags.DEFINE_bool("prune", False, "Prune by magnitude to --sparsity (zeros already there count).")
sq_flags.define_sparsity_flags()
flags.DEFINE_integer("prune_epochs", 0, "Retrain the pruned model with fixed masks (needs --train_data).", lower_bound=0)
flags.DEFINE_bool("cluster", True, "Weight sharing: 2^bits values per layer, code 0 for zero.")
sq_flags.define_bits_flags(bits=8, index_bits=0)
flags.DEFINE_enum("cluster_init", "optimal", ["optimal", "linear", "density", "random", "kmeans_plus_plus"],
                  "Centroids: optimal (exact least-squares 1-D k-means) or an initialisation refined by Lloyd "
                  "iterations; linear is the paper's choice before retraining.")
flags.DEFINE_integer("cluster_epochs", 0, "Fine-tune the centroids with tfmot clustering (needs --train_data); "
                     "0: k-means without training.", lower_bound=0)
flags.DEFINE_string("output", None, "The compressed file (.sqz, or .net for the release format).")
flags.DEFINE_enum("output_format", None, ["sqz", "net"], "Default: from the --output suffix (.net -> net).")
flags.DEFINE_bool("entropy", True, "Huffman-code codes and gaps (.sqz).")
flags.DEFINE_enum("layout", "auto", ["auto", "dense", "sparse"], "Per-kernel layout (.sqz); auto: the smaller.")
flags.DEFINE_string("int8_tflite", None, "Also write a post-training int8 TFLite model of the result here "
                    "(representative images from the evaluation data) and measure it.")
flags.DEFINE_integer("qat_epochs", 0, "With --int8_tflite: quantization-aware training (tfmot) of the result "
                     "for this many epochs on --train_data before conversion, instead of post-training "
                     "quantization.", lower_bound=0)
flags.DEFINE_string("distill_data", None, "Codebook fine-tuning by distillation: a folder of photos (no labels "
                    "needed) on which the shared values are trained to match the model before sharing (the "
                    "teacher, i.e. --weights). Resumable in --work_dir/distill.")
flags.DEFINE_integer("distill_epochs", 8, "Passes over --distill_data (0: with --max_bytes, choose the widths "
                     "without training).", lower_bound=0)
flags.DEFINE_integer("distill_batch_size", 16, "Photos per distillation step.", lower_bound=1)
flags.DEFINE_float("distill_learning_rate", 0.001, "Adam step of the shared values, in units of each layer's "
                   "weight scale (root mean square of its non-zero weights); cosine decay over the run.", lower_bound=0)
flags.DEFINE_float("distill_temperature", 1.0, "Temperature of the softened predictions (KL divergence x T^2).",
                   lower_bound=0)
flags.DEFINE_float("distill_feature_weight", 0.0, "Weight of feature matching (every coded layer's output, "
                   "squared error relative to the teacher's) added to the divergence.", lower_bound=0)
flags.DEFINE_bool("distill_offsets", True, "Also train the coded layers' biases and the batch norms' offsets.")
flags.DEFINE_bool("distill_augment", True, "Random crops and flips of the distillation photos (off: centre crops).")
flags.DEFINE_bool("distill_mixup", False, "Blend each distillation photo with another of its batch (weight uniform "
                  "in [0, 1]); the teacher labels the blend.")
flags.DEFINE_integer("distill_fisher_photos", 0, "Fisher-weighted sharing: weigh each weight's error in the "
                     "k-means by the teacher's Fisher information from this many distillation photos "
                     "(0: plain k-means).", lower_bound=0)
flags.DEFINE_bool("distill_reassign", False, "Let the codes move during distillation too: each weight keeps a "
                  "latent value trained straight-through and takes the code of the nearest shared value "
                  "after every step (zeros stay zeros). Off: every code fixed.")
flags.DEFINE_float("distill_reassign_rate", None, "With --distill_reassign: Adam step of the latent values in units "
                   "of each layer's weight scale (default: --distill_learning_rate); larger moves more codes.")
flags.DEFINE_integer("distill_limit", None, "Use at most this many distillation photos (first in sorted order).",
                     lower_bound=1)
flags.DEFINE_integer("max_bytes", None, "Choose each layer's code width (from --widths) so that the .sqz file "
                     "fits this many bytes, least measured loss first (needs --distill_data).", lower_bound=1)
flags.DEFINE_list("widths", ["3", "4", "5", "6", "7", "8"], "Candidate code widths of --max_bytes.")
flags.DEFINE_integer("budget_photos", 64, "Distillation photos on which --max_bytes measures each layer's "
                     "sensitivity (divergence from the teacher).", lower_bound=1)
flags.DEFINE_bool("per_layer", False, "Also print bytes and bits per weight of every tensor in the file.")
sq_flags.define_output_flags(output=False)


def main(argv):
  del argv
  sq_flags.check_outputs(files=[("--output", FLAGS.output), ("--int8_tflite", FLAGS.int8_tflite)])
  sq_flags.check_model_flags()
  from sqznet_tf.compression.config import CompressConfig, DistillConfig  # pylint: disable=g-import-not-at-top  (TF-free)
  from sqznet_tf.errors import SqznetError  # pylint: disable=g-import-not-at-top
  try:
    widths = tuple(int(w) for w in FLAGS.widths)
  except ValueError:
    raise SqznetError(f"--widths={','.join(FLAGS.widths)} is not accepted; expected integers 1..8, "
                      "comma-separated") from None
  distill = DistillConfig(
      data=FLAGS.distill_data, epochs=FLAGS.distill_epochs, batch_size=FLAGS.distill_batch_size,
      learning_rate=FLAGS.distill_learning_rate, temperature=FLAGS.distill_temperature,
      train_offsets=FLAGS.distill_offsets, feature_weight=FLAGS.distill_feature_weight,
      augment=FLAGS.distill_augment, mixup=FLAGS.distill_mixup,
      fisher_photos=FLAGS.distill_fisher_photos, reassign=FLAGS.distill_reassign,
      reassign_rate=FLAGS.distill_reassign_rate,
      work_dir=os.path.join(FLAGS.work_dir, "distill"), limit=FLAGS.distill_limit) if FLAGS.distill_data else None
  fmt = FLAGS.output_format or ("net" if FLAGS.output and FLAGS.output.endswith(".net") else "sqz")
  cfg = CompressConfig(
      model=FLAGS.model, overrides=sq_flags.overrides_from_flags(), weights=sq_flags.model_ref_from_flags(),
      classes=FLAGS.classes, input_size=FLAGS.input_size, prune=FLAGS.prune, sparsity=sq_flags.sparsity_from_flags(),
      keep_dense=tuple(FLAGS.keep_dense), prune_epochs=FLAGS.prune_epochs, cluster=FLAGS.cluster, bits=FLAGS.bits,
      cluster_init=FLAGS.cluster_init, cluster_epochs=FLAGS.cluster_epochs, entropy=FLAGS.entropy,
      layout=FLAGS.layout, index_bits=FLAGS.index_bits, output=FLAGS.output, output_format=fmt,
      work_dir=FLAGS.work_dir, int8_tflite=FLAGS.int8_tflite, qat_epochs=FLAGS.qat_epochs, distill=distill,
      max_bytes=FLAGS.max_bytes, widths=widths, budget_photos=FLAGS.budget_photos)
  cfg.validate(train_data=bool(FLAGS.train_data))  # before TensorFlow: a bad flag is answered at once
  from sqznet_tf.compression import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow after parsing)
  finetune = pipeline.FineTuneData(FLAGS.train_data, FLAGS.val_split, FLAGS.batch_size, FLAGS.learning_rate,
                                   FLAGS.steps_per_epoch) if FLAGS.train_data else None
  out = pipeline.run(cfg, sq_flags.source_from_flags() if FLAGS.data_dir else None, FLAGS.limit, FLAGS.batch_size,
                     finetune, log=reporting.progress)
  if FLAGS.format == "json":
    reporting.print_json(out)
    return
  pct = lambda v: "" if v is None else f"{v:.2%}"  # noqa: E731
  rows = out["stages"]
  agree = any(r.get("agreement") is not None for r in rows[1:])
  print(reporting.table([{"stage": r["stage"], "top-1": pct(r["top1"]), "top-5": pct(r["top5"]),
                          "agree": pct(r.get("agreement")),
                          "density": f"{r['density']:.3f}", "fp32": r["fp32_bytes"], "zip(h5)": r["zip_bytes"] or "",
                          "DC estimate": r["deep_compression_bytes"] or "", "file": r["file_bytes"] or ""} for r in rows],
                        ["stage", "top-1", "top-5"] + (["agree"] if agree else [])
                        + ["density", "fp32", "zip(h5)", "DC estimate", "file"]))
  if agree:
    print("agree: share of the photos whose top-1 class is the loaded model's")
  if isinstance(out.get("widths"), dict):
    print("code widths: " + ", ".join(f"{n} {w}" for n, w in out["widths"].items()))
  if out["output"]:
    total = rows[-1 - bool(out.get("int8_tflite"))]["file_bytes"]
    nz = sum(t["nonzero"] for t in out["tensors"] if t["kind"] == "coded")
    print(f"\n{out['output']}: {total:,} bytes ({total / 1024:.1f} KiB)"
          + (f", {8 * total / nz:.2f} bits per non-zero weight" if nz else ""))
  if FLAGS.per_layer and out["tensors"]:
    cols = ["tensor", "shape", "layout", "index bits", "huffman", "entries", "nonzero", "bytes", "bits/weight"]
    print()
    print(reporting.table([{"tensor": t["name"], "shape": "x".join(map(str, t["shape"])), "layout": t["layout"],
                            "index bits": t["index_bits"] or "", "huffman": "yes" if t["huffman"] else "",
                            "entries": t["entries"], "nonzero": t["nonzero"], "bytes": t["nbytes"],
                            "bits/weight": f"{t['bits_per_weight']:.2f}"} for t in out["tensors"]], cols))


def run():
  sq_flags.run_main(main, resume="rerun the same command: the fine-tuning stages resume from their last finished epoch")


if __name__ == "__main__":
  run()
