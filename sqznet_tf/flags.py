"""Every absl flag of the binaries, defined once per concept, and the binaries' error boundary.

The only library module that imports absl (besides tools/). A binary calls the `define_*`
functions it needs at import time, then `run_main(main)`; inside `main` the `*_from_flags`
functions turn the parsed flags into library objects.

Concepts:
  model        --weights (any model form), --model, --saved_model, metaparameter overrides,
               --classes, --input_size                       -> `load_model_from_flags`
  labelled     --data_dir, --data_format, --labels, --label_offset   -> `source_from_flags`
  preprocess   --preprocessing, --crop_size, --crop_fraction, --resize_method, --antialias,
               --resize_backend                               -> `preprocessing_from_flags`
  training     data, optimisation, distribution and output     -> `train_config_from_flags`
  output       --format, --output
"""

import atexit
import json
import os
import sys
import threading

from absl import app, flags, logging

from sqznet_tf import io as sq_io
from sqznet_tf.data import preprocessing
from sqznet_tf.data import sources
from sqznet_tf.data.sources import FORMATS as DATA_FORMATS
from sqznet_tf.data.spec import AUGMENTATIONS
from sqznet_tf.formats.labels import read_labels
from sqznet_tf.errors import SqznetError
from sqznet_tf.models.configs import BYPASS_CHOICES, list_models
from sqznet_tf.training.config import SCHEDULES, STRATEGIES

FLAGS = flags.FLAGS
HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "--helpfull", "--helpxml", "-?")
OUTPUT_FORMATS = ("table", "json")


# ---------------------------------------------------------------------------------------------
# The error boundary


def usage_error(message: str, exitcode: int = 1):
  """Prints `prog: error: message` and a pointer to the help on stderr, then exits."""
  prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "sqznet"
  sys.stderr.write(f"{prog}: error: {message}\nPass --helpshort or --helpfull to see help on flags.\n")
  sys.exit(exitcode)


def run_main(main, allow_args: bool = False, resume: str = ""):
  """Runs `main` under absl; bad input (SqznetError) is one line on stderr and exit 1, no traceback.

  Bad flag values are caught by absl itself, which also prints one line and exits 1. Ctrl-C is
  one line too (exit 130), saying how to resume when the binary can (`resume`). Positional
  arguments are refused unless `allow_args`.
  """
  def wrapped(argv):
    if not FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines (saving, sharding) stay quiet
    if len(argv) > 1 and not allow_args:
      usage_error(f"unexpected arguments {' '.join(argv[1:])!r}; this binary takes flags only")
    try:
      apply_threads_from_flags()  # before the binary's first TensorFlow op
      return main(argv)
    except SqznetError as e:
      usage_error(str(e))
    except KeyboardInterrupt:
      prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "sqznet"
      sys.stderr.write(f"\n{prog}: interrupted; " + (resume or "no output was left half-written") + "\n")
      sys.exit(130)
  _key_flags_for_main(main)
  try:
    app.run(wrapped)
  except SystemExit as e:
    # absl exits with status 1 after printing --help/--helpshort/--helpfull; asking for help succeeds.
    if e.code == 1 and any(a.split("=")[0] in HELP_FLAGS for a in sys.argv[1:]):
      _exit(0)
    _exit(e.code)


def _exit(code) -> None:
  """Ends the binary as the interpreter would, without its teardown of the loaded modules.

  What a normal exit does and this keeps: other non-daemon threads are waited for (after the hooks
  registered for that, `threading._shutdown`, as the interpreter does), atexit handlers
  run (logging's flush, temporary folders' finalizers, TensorFlow's own) and stdout/stderr are
  flushed; the exit status is SystemExit's. What it skips: freeing every module and object one by
  one, and TensorFlow's C++ teardown, 0.65 s of every binary's run on the AVX2-only CPU (BENCHMARKS.md
  "make demo"). The test suite's fork server ends every binary it runs the same way.
  """
  if code is None:
    code = 0
  elif not isinstance(code, int):
    sys.stderr.write(f"{code}\n")
    code = 1
  # What the interpreter's own shutdown starts with: the hooks threads registered (an executor's
  # idle workers are told to stop there; joining them without it waits forever), then every
  # non-daemon thread joined.
  threading._shutdown()  # pylint: disable=protected-access
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(code & 0xFF)  # pylint: disable=protected-access


def _key_flags_for_main(main) -> None:
  """Makes --helpshort list the binary's flags when it runs as a console script.

  absl shows the flags of the module named by sys.argv[0]; a console script's argv[0] is the
  wrapper, not the module that defined the flags (the binary, or this module).
  """
  target = sys.argv[0] if sys.argv else None
  if not target:
    return
  for module in (main.__module__, __name__):
    for flag in FLAGS.get_key_flags_for_module(module):
      FLAGS.register_key_flag_for_module(target, flag)


# ---------------------------------------------------------------------------------------------
# One definition per flag that several binaries take (each binary passes its own default)


def define_architecture_flag(default=None) -> None:
  """--model: the registered network (the architecture)."""
  flags.DEFINE_string("model", default, f"Architecture (registry name): {', '.join(list_models())}. With weights "
                      "that name their own network (metadata, .sqz, run folders), it is taken from them unless given.")


def define_classes_flag(default=None) -> None:
  flags.DEFINE_integer("classes", default, "Number of classes (default: what the weights' metadata or the data "
                       "says; 1000 for the release).", lower_bound=1)


def define_data_format_flag() -> None:
  flags.DEFINE_enum("data_format", "auto", DATA_FORMATS, "Layout of the data: auto detects it; folders (one "
                    "sub-folder per class), flat (WordNet-id file names; evaluation only) or tfrecord.")


def define_label_offset_flag() -> None:
  flags.DEFINE_integer("label_offset", 0, "Subtracted from TFRecord labels (1 for 1-based ImageNet records).")


def define_labels_flag() -> None:
  flags.DEFINE_string("labels", None, "Synset or class-name file ('nXXXXXXXX name' or a name per line, line i = "
                      "class i): class names for the output, and for flat folders / WordNet-id folder names.")


def define_preprocessing_flag(default=None) -> None:
  flags.DEFINE_enum("preprocessing", default, list(preprocessing.PRESETS), "Normalisation preset (caffe, torch, tf, cifar)"
                    + ("; default: the one stored with the weights (caffe for the release)." if default is None else "."))


def define_batch_size_flag(default: int) -> None:
  flags.DEFINE_integer("batch_size", default, "Images per step: per forward pass when evaluating, the global batch "
                       "(divided among the replicas) when training.", lower_bound=1)


def define_evaluation_flags(batch_size: int = 32) -> None:
  """--batch_size and --limit of a pass over labelled photos."""
  define_batch_size_flag(batch_size)
  flags.DEFINE_integer("limit", None, "Photos per evaluation, the first ones taken round-robin over the classes; "
                       "default all.", lower_bound=1)


def define_optimisation_flags(batch_size: int = 64, epochs: int = 10, learning_rate: float = 0.04,
                              epochs_help: str = "Epochs (a search: per trial; Hyperband: the most a trial gets).",
                              min_epochs: int = 1) -> None:
  """--batch_size, --epochs, --steps_per_epoch, --learning_rate."""
  define_batch_size_flag(batch_size)
  flags.DEFINE_integer("epochs", epochs, epochs_help, lower_bound=min_epochs)
  define_steps_flag()
  define_learning_rate_flag(learning_rate)


def define_learning_rate_flag(default: float) -> None:
  flags.DEFINE_float("learning_rate", default, "Base learning rate (Caffe solver: 0.04 at batch 512; fine-tuning in "
                     "sqznet-compress: constant, SGD with momentum 0.9).")


def define_val_split_flag() -> None:
  flags.DEFINE_float("val_split", 0.1, "Share of the training data held out for validation (when no separate "
                     "validation data is given).")


def define_bits_flags(bits=None, index_bits: int = 4) -> None:
  """--bits (per shared-weight code) and --index_bits (per relative index of a stored weight)."""
  flags.DEFINE_integer("bits", bits, "Bits per shared-weight code, 1..8 (a codebook of 2^bits values per layer, "
                       "code 0 for zero).")
  flags.DEFINE_integer("index_bits", index_bits, "Bits of the relative index per stored weight (Deep Compression: "
                       "4; sqznet-compress: 1..8, 0 chooses per layer).")


def define_steps_flag() -> None:
  flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch; default: one pass over the training data.",
                       lower_bound=1)


def define_run_flags() -> None:
  """--seed and --verbose."""
  flags.DEFINE_integer("seed", 0, "Random seed (data order, augmentation, initialisation, the tuner).")
  flags.DEFINE_integer("verbose", 1, "Keras output: 1 progress bar, 2 one line per epoch, 0 silent.")


def define_overwrite_flag(default: bool = False) -> None:
  flags.DEFINE_bool("overwrite", default, "Replace what is there: an existing export version (otherwise refused), "
                    "a search found in its folder (--nooverwrite resumes it).")


def define_export_dir_flags() -> None:
  """--export_dir and --version of a TF Serving model folder."""
  flags.DEFINE_string("export_dir", None, "The model folder TF Serving watches (export default: "
                      "savedmodels/<model>), or one of its version folders.")
  flags.DEFINE_integer("version", None, "Version folder (export: default the next free one; checks: the latest).",
                       lower_bound=1)


RUNTIMES = ("auto", "tf", "tflite", "onnx")  # sqznet_tf.runtimes.RUNTIMES (that module imports TensorFlow)


def define_runtime_flag() -> None:
  flags.DEFINE_enum("runtime", "auto", RUNTIMES,
                    "Inference runtime. auto: batches of up to 8 images on whichever of TF, TFLite (XNNPACK) "
                    "and ONNX Runtime measured fastest on this machine at batch 1 (one image) or 8 (2-8 images), "
                    "converted once and cached in $SQZNET_CACHE_DIR or ~/.cache/sqznet_tf; larger batches in TF. "
                    "tf: TF alone (up to 8 images: its traced function or the same graph with the weights frozen "
                    "in a session of its own, whichever measured faster here; reported as tf-frozen).")


def define_threads_flags() -> None:
  """TensorFlow's two thread pools, set when the binary starts (before its first TensorFlow op)."""
  flags.DEFINE_integer("intra_op_threads", None, "Threads TensorFlow gives one op (its intra-op pool; default: "
                       "TensorFlow's, all cores). 1 runs every op on one core: lower latency for single small "
                       "images, where handing an op's work to a second thread costs more than it gains (the "
                       "CIFAR-10 network at batch 1: 3.1 -> 2.0 ms, BENCHMARKS.md). TFLite and ONNX Runtime keep "
                       "their own threads.", lower_bound=1)
  flags.DEFINE_integer("inter_op_threads", None, "Ops TensorFlow runs side by side (its inter-op pool; default: "
                       "TensorFlow's).", lower_bound=1)


def apply_threads_from_flags() -> None:
  """Sets TensorFlow's thread pools from --intra_op_threads / --inter_op_threads (where the binary
  defines them and they are given). `run_main` calls it before `main`; without them TensorFlow is not
  imported here."""
  given = {n: FLAGS[n].value for n in ("intra_op_threads", "inter_op_threads") if n in FLAGS and FLAGS[n].value}
  if not given:
    return
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  setters = {"intra_op_threads": tf.config.threading.set_intra_op_parallelism_threads,
             "inter_op_threads": tf.config.threading.set_inter_op_parallelism_threads}
  for name, value in given.items():
    try:
      setters[name](value)
    except RuntimeError as e:  # TensorFlow already ran an op in this process
      raise SqznetError(f"--{name}={value} cannot be applied: {e}") from None


def tf_threads() -> dict:
  """TensorFlow's thread pools as set in this process (0: TensorFlow's default, all cores)."""
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
          "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def define_top_k_flag() -> None:
  flags.DEFINE_integer("top_k", 5, "Classes returned per image.", lower_bound=1)


# ---------------------------------------------------------------------------------------------
# Output


def define_output_flags(output: bool = True, formats=OUTPUT_FORMATS) -> None:
  """--format (table|json, ...) and, with `output`, --output (the JSON result written to a file)."""
  flags.DEFINE_enum("format", "table", formats, "Output format; json prints one JSON object as the last "
                    "line of stdout.")
  if output:
    flags.DEFINE_string("output", None, "Also write the JSON result to this file (atomically).")


def check_outputs(files=(), folders=()) -> None:
  """Before any work: each (flag, path) of `files` can be written and each of `folders` exists or is
  created; otherwise one line naming the flag and the path (no path: nothing to check)."""
  for flag, path in files:
    if path:
      sq_io.check_output_file(path, flag)
  for flag, path in folders:
    if path:
      sq_io.prepare_output_folder(path, flag)


# ---------------------------------------------------------------------------------------------
# Models

OVERRIDE_FLAGS = ("squeeze_ratio", "pct3x3", "base_e", "incr_e", "freq", "bypass", "conv1_filters",
                  "conv1_kernel", "conv1_stride", "conv1_padding", "pool_after", "conv10_padding", "batch_norm",
                  "fires", "bypass_kinds")
MODEL_FORMS = ("'imagenet' (the Deep Compression release, via the Keras cache), 'cifar10' (squeezenet_v1_1_cifar "
               "trained on CIFAR-10, shipped with the package), a .net file, a .sqz container, "
               "Keras weights (.h5) saved by this package (a pruning/clustering checkpoint included), a .keras "
               "model, a sqznet-train/-dsd/-compress run folder, or a SavedModel folder (sqznet-train's "
               "saved_model/, a sqznet-export version)")


def define_override_flags() -> None:
  """Metaparameter overrides (paper section 5): --squeeze_ratio ... --batch_norm, unset by default."""
  flags.DEFINE_float("squeeze_ratio", None, "SR: squeeze filters / expand filters (v1.0: 0.125).")
  flags.DEFINE_float("pct3x3", None, "Share of 3x3 filters among expand filters, in (0, 1) (v1.0: 0.5).")
  flags.DEFINE_integer("base_e", None, "Expand filters of the first Fire module (128).")
  flags.DEFINE_integer("incr_e", None, "Expand filters added every `freq` Fire modules (128).")
  flags.DEFINE_integer("freq", None, "Fire modules between increments of expand filters (2).")
  flags.DEFINE_enum("bypass", None, BYPASS_CHOICES, "Bypass connections (paper section 6).")
  flags.DEFINE_integer("conv1_filters", None, "Filters of conv1.")
  flags.DEFINE_integer("conv1_kernel", None, "Kernel side of conv1.")
  flags.DEFINE_integer("conv1_stride", None, "Stride of conv1.")
  flags.DEFINE_integer("conv1_padding", None, "Zero padding of conv1 (1 with a 3x3 stride-1 conv1: the "
                       "small-image stem of squeezenet_v1_1_cifar).")
  flags.DEFINE_list("pool_after", None, "Layers followed by a 3x3 stride-2 max pool, e.g. conv1,fire5 "
                    "(v1.0: conv1,fire4,fire8; v1.1: conv1,fire3,fire5).")
  flags.DEFINE_integer("conv10_padding", None, "Zero padding of conv10: 0 or 1 (Caffe v1.0 deploy file).")
  flags.DEFINE_bool("batch_norm", None, "BatchNormalization after every conv.")
  flags.DEFINE_string("fires", None, "Explicit widths of fire2..fire9 as JSON [[squeeze, expand1x1, expand3x3], "
                      "...] instead of the metaparameters' (a channel-pruned network's, see "
                      "sqznet-prune-channels' prune_summary.json).")
  flags.DEFINE_list("bypass_kinds", None, "Explicit bypass of fire2..fire9: none, identity or conv each (with --fires "
                    "and a bypass).")


def overrides_from_flags() -> dict:
  """The metaparameter override flags that were set, as a dict."""
  out = {k: getattr(FLAGS, k) for k in OVERRIDE_FLAGS if getattr(FLAGS, k) is not None}
  if "fires" in out:
    try:
      out["fires"] = json.loads(out["fires"])
    except ValueError as e:
      raise SqznetError(f"--fires={out['fires']!r} is not accepted: not JSON ({e}); expected 8 lists "
                        "[squeeze, expand1x1, expand3x3], e.g. [[16,64,64],[16,64,64],...]") from None
  return out


def define_model_flags(weights: str = "imagenet", model: str = None, classes: int = None) -> None:
  """The flags of every binary that reads a model: what to load and how to build it.

  Args:
    weights, model, classes: the binary's defaults for --weights, --model and --classes.
  """
  flags.DEFINE_string("weights", weights, f"The model to load: {MODEL_FORMS}, or a registry name "
                      "(fresh weights).")
  define_architecture_flag(model)
  flags.DEFINE_string("saved_model", None, "A saved Keras model (.keras, .h5 model or SavedModel folder): the "
                      "same as --weights=PATH.")
  define_classes_flag(classes)
  flags.DEFINE_integer("input_size", None, "Square input side in pixels (default: the weights' crop size, else "
                       "the variant's own).", lower_bound=8)
  define_override_flags()


def model_ref_from_flags():
  """What --weights / --saved_model name (the reference `sqznet_tf.loading.load_model` takes)."""
  return FLAGS.saved_model or FLAGS.weights


def check_model_flags(input_size=None) -> None:
  """Before TensorFlow: the registry model and metaparameters the flags name (when no weights are
  given, or --model is given with them) exist and accept the input size; SqznetError otherwise."""
  if model_ref_from_flags() and not FLAGS["model"].present:
    return  # the weights name their own network
  from sqznet_tf.models import configs  # pylint: disable=g-import-not-at-top  (TF-free)
  config = configs.get_config(FLAGS.model, **overrides_from_flags())
  size = input_size or FLAGS.input_size
  if size:
    configs.check_input_size(config, size, size)


def load_model_from_flags(input_size=None):
  """(model, WeightsInfo or None) for the model flags; `input_size` replaces --input_size when given."""
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top  (TensorFlow: after flag parsing)
  return loading.load_model(model_ref_from_flags(), model=FLAGS.model, overrides=overrides_from_flags(),
                            classes=FLAGS.classes, input_size=input_size or FLAGS.input_size)


# ---------------------------------------------------------------------------------------------
# Labelled images (evaluation)


def define_labelled_data_flags(required: bool = True, what: str = "Labelled images") -> None:
  """--data_dir, --data_format, --labels, --label_offset."""
  flags.DEFINE_string("data_dir", None, f"{what}: a folder of class folders, a flat folder of WordNet-id files "
                      "(with --labels), or TFRecords (file, folder or glob).", required=required)
  define_data_format_flag()
  define_labels_flag()
  define_label_offset_flag()


def source_from_flags(data_dir=None):
  """The labelled image source that --data_dir (or `data_dir`), --data_format, --labels, --label_offset describe."""
  labels = read_labels(FLAGS.labels) if FLAGS.labels else None
  return sources.open_source(data_dir or FLAGS.data_dir, FLAGS.data_format, labels, FLAGS.label_offset)


def define_preprocessing_flags(full: bool = True) -> None:
  """--resize_backend and, with `full`, the preset and its overrides."""
  if full:
    define_preprocessing_flag()
    flags.DEFINE_integer("crop_size", None, "Centre-crop side; default: the model's input.", lower_bound=1)
    flags.DEFINE_float("crop_fraction", None, "crop_size / resize side; default: the preset's (caffe 227/256).")
    flags.DEFINE_enum("resize_method", None, preprocessing.METHODS, "Resize interpolation; default: the preset's.")
    flags.DEFINE_bool("antialias", None, "Antialias when downscaling (tf back-end); default: the preset's.")
  flags.DEFINE_enum("resize_backend", "tf", preprocessing.BACKENDS, "tf: tf.image (as in exported graphs); "
                    "pil: Pillow's antialiased resize (as the Caffe reference figures were measured).")


def preprocessing_from_flags(info, model):
  """The preset asked for, else the weights' own, with the flags' overrides, cropped to the model's input."""
  p = info.preprocessing if info else preprocessing.PRESETS["caffe"]
  crop, fraction = None, None
  if "preprocessing" in FLAGS:
    if FLAGS.preprocessing:
      p = preprocessing.PRESETS[FLAGS.preprocessing]
    crop, fraction = FLAGS.crop_size, FLAGS.crop_fraction
    if FLAGS.resize_method:
      p = p.replace(method=FLAGS.resize_method)
    if FLAGS.antialias is not None:
      p = p.replace(antialias=FLAGS.antialias)
  size = model.input_shape[1]
  if crop is not None and size is not None and crop != size:
    raise SqznetError(f"--crop_size={crop} does not match the model's input {size}; pass --input_size={crop} "
                      "to build the model for it")
  return preprocessing.with_crop(p, crop or (size if size != p.crop_size else None), fraction)


# ---------------------------------------------------------------------------------------------
# Training


def define_train_flags(model: str = "squeezenet_v1_1", **optimisation) -> None:
  """The model, data, optimisation, distribution and output flags of sqznet-train and sqznet-dsd
  (`optimisation`: define_optimisation_flags' arguments)."""
  define_architecture_flag(model)
  define_training_data_flags()
  define_optimisation_flags(**optimisation)
  flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam", "adamw"], "sgd: momentum SGD as the Caffe solver.")
  flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
  flags.DEFINE_enum("lr_schedule", "poly", list(SCHEDULES), "poly: Caffe's linear decay to 0.")
  flags.DEFINE_float("warmup_epochs", 0.0, "Linear learning-rate warm-up, in epochs.")
  flags.DEFINE_float("weight_decay", 2e-4, "L2 weight decay on kernels (Caffe solver: 0.0002).")
  flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.")
  flags.DEFINE_float("dropout", None, "Dropout rate before conv10 (default: the model's, 0.5).")
  define_run_flags()
  flags.DEFINE_string("init_weights", None, "Start from 'imagenet', a .net file or .h5 Keras weights (layers "
                      "that do not fit, e.g. a classifier with another class count, start fresh), or from "
                      "'cifar10' or a .sqz file (the same architecture: every tensor must fit).")
  flags.DEFINE_enum("mixed_precision", None, ["mixed_float16", "mixed_bfloat16"], "Mixed-precision policy.")
  flags.DEFINE_bool("jit_compile", False, "Compile with XLA (slower than plain TF on CPUs).")
  flags.DEFINE_integer("steps_per_execution", None, "Training steps per call into the graph (fewer returns "
                       "to Python; progress and per-batch callbacks update once per group). Default: 8 in runs of "
                       "2,000 steps or more (grouping costs one more trace of the step, repaid over a long run), "
                       "else 1. Pruning and clustering phases run 1.", lower_bound=1)
  flags.DEFINE_bool("pointwise_matmul", True, "Run every 1x1 convolution as one matrix product while training "
                    "(same numbers to float round-off, faster on CPUs); the model keeps its Conv2D layers.")
  flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                    "Distribution strategy; multi_worker_mirrored reads TF_CONFIG.")
  flags.DEFINE_string("tpu", None, "TPU address or name for --strategy=tpu ('local' on a TPU VM).")
  flags.DEFINE_integer("cpu_devices", None, "Split the CPU into this many logical devices (mirrored "
                       "training without GPUs).", lower_bound=1)
  flags.DEFINE_string("model_dir", "runs/default", "Output folder; rerun with the same folder to resume.")
  flags.DEFINE_integer("histogram_freq", 1, "Epochs between weight histograms in TensorBoard (0: none).",
                       lower_bound=0)
  flags.DEFINE_bool("save_model", True, "Also write saved_model/ (a Keras SavedModel) at the end (sqznet-dsd: "
                    "in its last phase). The run folder loads as a model form without it.")
  define_output_flags(output=False)
  define_override_flags()


def define_training_data_flags(data: str = "embedded") -> None:
  """--data, --data_format, --val_data, --val_split, --classes, --label_offset, --image_size, ..."""
  flags.DEFINE_string("data", data, "embedded, synthetic, an image folder (one sub-folder per class), "
                      "TFRecords (folder, file or glob), or tfds:NAME.")
  define_data_format_flag()
  flags.DEFINE_string("val_data", None, "Validation data of the same kind; default: --val_split of --data.")
  define_val_split_flag()
  define_classes_flag()
  define_label_offset_flag()
  flags.DEFINE_integer("image_size", 32, "Network input side in pixels (crop size).", lower_bound=8)
  define_preprocessing_flag("caffe")
  flags.DEFINE_enum("augmentation", "crop_flip", list(AUGMENTATIONS),
                    "crop_flip: random crop of the resized image + horizontal flip (the paper's); "
                    "pad_crop_flip: 4 reflected pixels around the image, a random crop back to its size "
                    "+ flip (CIFAR).")
  flags.DEFINE_bool("deterministic", False, "Fixed element order in the input pipeline (slower).")
  flags.DEFINE_bool("strict_data", False, "Stop at the first unreadable image instead of skipping it.")


def data_spec_from_flags(**changes):
  """The DataSpec that the training data flags describe."""
  from sqznet_tf.data.spec import DataSpec  # pylint: disable=g-import-not-at-top
  source, path = sources.resolve_source(FLAGS.data, FLAGS.data_format)
  values = dict(source=source, path=path, val_path=FLAGS.val_data, val_split=FLAGS.val_split,
                image_size=FLAGS.image_size, preprocessing=FLAGS.preprocessing, augmentation=FLAGS.augmentation,
                seed=FLAGS.seed if "seed" in FLAGS else 0, deterministic=FLAGS.deterministic,
                strict=FLAGS.strict_data, label_offset=FLAGS.label_offset)
  values.update(changes)
  return DataSpec(**values)


def train_config_from_flags(**changes):
  """The TrainConfig the training flags describe (with `changes` applied to it)."""
  from sqznet_tf.training.config import TrainConfig  # pylint: disable=g-import-not-at-top  (TensorFlow)
  f = FLAGS
  if f.learning_rate <= 0:
    raise SqznetError(f"--learning_rate={f.learning_rate} is not accepted; expected a number > 0")
  values = dict(
      model=f.model, overrides=overrides_from_flags(), data=data_spec_from_flags(), classes=f.classes,
      batch_size=f.batch_size, epochs=f.epochs, steps_per_epoch=f.steps_per_epoch, optimizer=f.optimizer,
      learning_rate=f.learning_rate, momentum=f.momentum, lr_schedule=f.lr_schedule,
      warmup_epochs=f.warmup_epochs, weight_decay=f.weight_decay, label_smoothing=f.label_smoothing,
      dropout=f.dropout, seed=f.seed, init_weights=f.init_weights, mixed_precision=f.mixed_precision,
      jit_compile=f.jit_compile, steps_per_execution=f.steps_per_execution,
      pointwise_matmul=f.pointwise_matmul, strategy=f.strategy, tpu=f.tpu,
      cpu_devices=f.cpu_devices, model_dir=f.model_dir, histogram_freq=f.histogram_freq, save_model=f.save_model,
      verbose=f.verbose)
  values.update(changes)
  return TrainConfig(**values)


def define_sparsity_flags() -> None:
  """--sparsity (a number or a per-layer map) and --keep_dense, as sqznet-dsd and sqznet-compress read them."""
  flags.DEFINE_string("sparsity", "0.67", "Target sparsity: one number for every prunable layer, a JSON map "
                      "of layer names or globs to sparsities ('{\"fire*_expand3x3\": 0.67}'), or a .json/.yaml "
                      "file (e.g. the map sqznet-sensitivity proposes).")
  flags.DEFINE_list("keep_dense", ["conv1"], "Layers (names or globs) never pruned.")


def sparsity_from_flags():
  """--sparsity parsed (a float or a layer -> sparsity map)."""
  from sqznet_tf.pruning.spec import load_spec  # pylint: disable=g-import-not-at-top  (TF-free)
  return load_spec(FLAGS.sparsity)


def float_list(name: str, values, lo: float = 0.0, hi: float = 1.0):
  """A comma-separated flag as floats; SqznetError naming the flag and the first bad value."""
  out = []
  for v in values:
    try:
      out.append(float(v))
    except ValueError:
      raise SqznetError(f"--{name}: {v!r} is not accepted; expected numbers in [{lo:g}, {hi:g})") from None
  return out
