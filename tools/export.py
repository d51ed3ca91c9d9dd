"""sqznet-export: a model for TF Serving (SavedModel with preprocessing, labels and warm-up), TFLite, ONNX.

Starts from --weights (any model form: see --helpfull) and writes

  EXPORT_DIR/VERSION/             SavedModel in TF Serving's layout (default EXPORT_DIR:
                                  savedmodels/<model>; VERSION: the next free integer)
    assets/labels.txt             class names, looked up in the graph
    assets.extra/tf_serving_warmup_requests   PredictionLog records replayed by TF Serving on load
    assets.extra/sqznet_export.json           what was exported, from what, how to preprocess
  EXPORT_DIR/portable/VERSION/    --tflite and --onnx files (TF Serving skips this folder)

Signatures: serving_default (float32 images [N, size, size, 3], RGB 0-255), serving_uint8 (the
same in uint8) and serving_bytes (encoded JPEG/PNG strings [N], decoded, resized and cropped in
the graph). Each returns probabilities, classes, scores and labels (the top --top_k).
An existing version is never replaced without --overwrite. Check the result with
sqznet-verify-export.

Examples:
  sqznet-export --weights=../shared/data/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net \\
      --labels=../shared/data/imagenet_sample/synset_words.txt --export_dir=savedmodels/squeezenet \\
      --tflite=float32,float16,dynamic,int8 --representative_data=../shared/data/imagenet_sample/images --onnx
  sqznet-export --model=squeezenet_v1_1 --batch_norm --weights=runs/demo/phase3_dense
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import flags as sq_flags  # noqa: E402
from sqznet_tf import reporting  # noqa: E402

FLAGS = flags.FLAGS

sq_flags.define_model_flags()
sq_flags.define_export_dir_flags()
sq_flags.define_overwrite_flag()
sq_flags.define_labels_flag()  # default: the weights' metadata (training runs store their class folders)
sq_flags.define_top_k_flag()
flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests (needs tensorflow-serving-api).")
flags.DEFINE_list("warmup_images", [], "Photos for the warm-up requests (default: a generated JPEG).")
flags.DEFINE_list("tflite", [], "TFLite files to write: any of float32, float16, dynamic, int8.")
flags.DEFINE_string("representative_data", None, "Folder of photos (searched recursively) to calibrate int8 on.")
flags.DEFINE_integer("representative_count", 100, "Photos to calibrate int8 on (spread over the folder).",
                     lower_bound=1)
flags.DEFINE_enum("tflite_sparsity", "auto", ["auto", "on", "off"], "The converter's sparsity optimization; "
                  "auto: on when at most half of the kernel weights are non-zero (a pruned model).")
flags.DEFINE_bool("onnx", False, "Also write model.onnx (tf2onnx; fails if an op is left unconverted).")
flags.DEFINE_integer("opset", 17, "ONNX opset.", lower_bound=9)
sq_flags.define_output_flags(output=False)


def main(argv):
  del argv
  sq_flags.check_outputs(folders=[("--export_dir", FLAGS.export_dir)])
  sq_flags.check_model_flags()
  from sqznet_tf.export import exporter  # pylint: disable=g-import-not-at-top  (TensorFlow after flag parsing)
  cfg = exporter.ExportConfig(
      export_dir=FLAGS.export_dir, version=FLAGS.version, overwrite=FLAGS.overwrite, labels=FLAGS.labels,
      top_k=FLAGS.top_k, warmup=FLAGS.warmup, warmup_images=FLAGS.warmup_images, tflite=FLAGS.tflite,
      representative_data=FLAGS.representative_data, representative_count=FLAGS.representative_count,
      tflite_sparsity=FLAGS.tflite_sparsity, onnx=FLAGS.onnx, opset=FLAGS.opset)
  cfg.validate()
  model, info = sq_flags.load_model_from_flags()
  out = exporter.export(model, info, sq_flags.model_ref_from_flags(), cfg, log=reporting.progress)
  if FLAGS.format == "json":
    reporting.print_json(out)
    return
  print(reporting.table([{"export": r["file"], "bytes": r["bytes"]} for r in out["files"]], ["export", "bytes"]))
  print(f"\nVersion {out['version']} of {out['export_dir']} (model name "
        f"{os.path.basename(os.path.abspath(out['export_dir']))!r}); {out['warmup_requests']} warm-up requests; "
        f"labels from {out['labels_from']}.")


def run():
  sq_flags.run_main(main)


if __name__ == "__main__":
  run()
