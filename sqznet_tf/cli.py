"""What every binary in tools/ shares: the error boundary and atomic output writing."""

import json
import os
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
    if len(argv) > 1 and not allow_args:
      usage_error(f"unexpected arguments {' '.join(argv[1:])!r}; this binary takes flags only")
    try:
      return main(argv)
    except SqznetError as e:
      usage_error(str(e))
  app.run(wrapped)


def write_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file in the same folder, then renames it."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json_atomic(path: str, obj) -> None:
  write_atomic(path, json.dumps(obj, indent=2) + "\n")


def stderr(msg: str) -> None:
  sys.stderr.write(msg + "\n")
