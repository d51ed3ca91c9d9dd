"""What every binary in tools/ shares: the error boundary and atomic output writing."""

import contextlib
import json
import os
import shutil
import sys
import tempfile

from absl import app

from sqznet_tf.errors import SqznetError


def usage_error(message: str, exitcode: int = 1):
  """Prints `prog: error: message` and a pointer to the help on stderr, then exits."""
  prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "sqznet"
  sys.stderr.write(f"{prog}: error: {message}\nPass --helpshort or --helpfull to see help on flags.\n")
  sys.exit(exitcode)


def run_main(main, allow_args: bool = False):
  """Runs `main` under absl; bad input (SqznetError) is one line on stderr and exit 1, no traceback.

  Bad flag values are caught by absl itself, which also prints one line and exits 1.
  Positional arguments are refused unless `allow_args`.
  """
  def wrapped(argv):
    from absl import flags, logging  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines (saving, sharding) stay quiet
    if len(argv) > 1 and not allow_args:
      usage_error(f"unexpected arguments {' '.join(argv[1:])!r}; this binary takes flags only")
    try:
      return main(argv)
    except SqznetError as e:
      usage_error(str(e))
  _key_flags_for_main(main)
  app.run(wrapped)


def _key_flags_for_main(main) -> None:
  """Makes --helpshort list the binary's flags when it runs as a console script.

  absl shows the flags of the module named by sys.argv[0]; a console script's argv[0] is the
  wrapper, not the module that defined the flags (here, or in a shared flags module).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flags.FLAGS
  target = sys.argv[0] if sys.argv else None
  if not target:
    return
  for module in (main.__module__, "sqznet_tf.training.flags", __name__):
    for flag in fv.get_key_flags_for_module(module):
      fv.register_key_flag_for_module(target, flag)


def write_atomic(path: str, text) -> None:
  """Writes `text` (str or bytes) to `path` through a temporary file in the same folder, then renames it."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
  try:
    with os.fdopen(fd, "wb" if isinstance(text, (bytes, bytearray)) else "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


@contextlib.contextmanager
def atomic_folder(path: str):
  """Yields a temporary folder beside `path`; on success it replaces `path` (an existing one only
  once the new one is complete), on failure it is removed and `path` is left as it was."""
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{os.path.basename(path)}-")
  try:
    yield tmp
    old = None
    if os.path.exists(path):
      old = tmp + ".replaced"
      os.replace(path, old)
    os.replace(tmp, path)
    if old:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def read_bytes(path, what: str) -> bytes:
  """The whole file at `path`; SqznetError naming `what` and the reason when it cannot be read."""
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise SqznetError(f"cannot read {what} {str(path)!r}: {e.strerror}") from None


def write_json_atomic(path: str, obj) -> None:
  write_atomic(path, json.dumps(obj, indent=2) + "\n")


def stderr(msg: str) -> None:
  sys.stderr.write(msg + "\n")


# Metaparameter overrides (paper section 5) shared by the binaries; unset flags keep the
# variant's value.
OVERRIDE_FLAGS = ("squeeze_ratio", "pct3x3", "base_e", "incr_e", "freq", "bypass", "conv1_filters",
                  "conv1_kernel", "conv1_stride", "conv10_padding", "batch_norm")


def define_override_flags() -> None:
  """Defines --squeeze_ratio, --pct3x3, ... --batch_norm (absl), all unset by default."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from sqznet_tf.models.configs import BYPASS_CHOICES  # pylint: disable=g-import-not-at-top
  flags.DEFINE_float("squeeze_ratio", None, "SR: squeeze filters / expand filters (v1.0: 0.125).")
  flags.DEFINE_float("pct3x3", None, "Share of 3x3 filters among expand filters, in (0, 1) (v1.0: 0.5).")
  flags.DEFINE_integer("base_e", None, "Expand filters of the first Fire module (128).")
  flags.DEFINE_integer("incr_e", None, "Expand filters added every `freq` Fire modules (128).")
  flags.DEFINE_integer("freq", None, "Fire modules between increments of expand filters (2).")
  flags.DEFINE_enum("bypass", None, BYPASS_CHOICES, "Bypass connections (paper section 6).")
  flags.DEFINE_integer("conv1_filters", None, "Filters of conv1.")
  flags.DEFINE_integer("conv1_kernel", None, "Kernel side of conv1.")
  flags.DEFINE_integer("conv1_stride", None, "Stride of conv1.")
  flags.DEFINE_integer("conv10_padding", None, "Zero padding of conv10: 0 or 1 (Caffe v1.0 deploy file).")
  flags.DEFINE_bool("batch_norm", None, "BatchNormalization after every conv.")


def overrides_from_flags(flag_values) -> dict:
  """The metaparameter override flags that were set, as a dict."""
  return {k: getattr(flag_values, k) for k in OVERRIDE_FLAGS if getattr(flag_values, k) is not None}


def define_classifier_data_flags() -> None:
  """Defines --model, --weights, --saved_model and the labelled-data flags (--data_dir, --data_format,
  --labels, --label_offset) shared by sqznet-evaluate and sqznet-sensitivity."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data.sources import FORMATS  # pylint: disable=g-import-not-at-top
  from sqznet_tf.models.configs import list_models  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("model", "squeezenet_v1_0_caffe", f"Registered model: {', '.join(list_models())}.")
  flags.DEFINE_string("weights", "imagenet", "'imagenet' (the Deep Compression release, via the Keras "
                      "cache), a .net file, a .sqz container (it names its own architecture: --model is not "
                      "used), or Keras weights saved by this package.")
  flags.DEFINE_string("saved_model", None, "A Keras model saved by this package (replaces --model/--weights).")
  flags.DEFINE_string("data_dir", None, "Folder (or TFRecord file/glob) of labelled images.", required=True)
  flags.DEFINE_enum("data_format", "auto", FORMATS, "Layout of --data_dir.")
  flags.DEFINE_string("labels", None, "Synset file ('nXXXXXXXX name' per line, line i = class i); needed "
                      "for flat folders, used for folder names that are WordNet ids.")
  flags.DEFINE_integer("label_offset", 0, "Subtracted from TFRecord labels (1 for 1-based ImageNet records).")


def source_from_flags(flag_values):
  """The labelled image source that --data_dir, --data_format, --labels and --label_offset describe."""
  from sqznet_tf.data import sources  # pylint: disable=g-import-not-at-top
  from sqznet_tf.weights import labels as labels_lib  # pylint: disable=g-import-not-at-top
  f = flag_values
  labels = labels_lib.read_labels(f.labels) if f.labels else None
  return sources.open_source(f.data_dir, f.data_format, labels, f.label_offset)
