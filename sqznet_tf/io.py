"""Files: atomic writes of files and folders, whole-file reads, JSON, figures.

Everything the package writes goes through here: to a temporary path in the same folder, then
renamed, so a reader never sees half a file and a failed run leaves nothing behind. No absl, no
TensorFlow.
"""

import contextlib
import json
import os
import shutil
import tempfile

from sqznet_tf.errors import SqznetError


def _usual_permissions(path: str) -> None:
  """mkstemp creates 0600; outputs get the usual permissions (0666 less the umask)."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, 0o666 & ~umask)


def write_atomic(path: str, text) -> None:
  """Writes `text` (str or bytes) to `path` through a temporary file in the same folder, then renames it."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  _usual_permissions(tmp)
  try:
    with os.fdopen(fd, "wb" if isinstance(text, (bytes, bytearray)) else "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json_atomic(path: str, obj) -> None:
  write_atomic(path, json.dumps(obj, indent=2) + "\n")


@contextlib.contextmanager
def atomic_file(path: str, suffix: str = ""):
  """Yields a temporary path beside `path` (ending in `suffix`) for a writer that wants a file
  name (Keras' save_weights, matplotlib); on success it is renamed to `path`, on failure removed."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path) + suffix)
  os.close(fd)
  _usual_permissions(tmp)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


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


def read_json(path, what: str = "JSON file"):
  """The parsed JSON file at `path`; SqznetError naming `what` when it cannot be read or parsed."""
  try:
    return json.loads(read_bytes(path, what).decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise SqznetError(f"{what} {str(path)!r} is not valid JSON: {e}") from None


def save_figure(fig, path: str, dpi: int = 100) -> None:
  """Saves a matplotlib figure atomically (format from the suffix of `path`, default PNG)."""
  ext = os.path.splitext(path)[1] or ".png"
  with atomic_file(path, ext) as tmp:
    fig.savefig(tmp, format=ext.lstrip("."), dpi=dpi)


def prepare_output_folder(path: str, what: str = "output folder") -> None:
  """Creates folder `path` (and its parents) or fails at once with one line: before the work, not after."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise SqznetError(f"{what} {path!r} is a file, not a folder")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise SqznetError(f"cannot create {what} {path!r}: {e.strerror}") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise SqznetError(f"cannot write in {what} {path!r}: permission denied")


def check_output_file(path: str, what: str = "output file") -> None:
  """Fails at once with one line when file `path` could not be written (creating its folder if needed)."""
  if os.path.isdir(path):
    raise SqznetError(f"{what} {path!r} is a folder; give a file name")
  try:
    prepare_output_folder(os.path.dirname(os.path.abspath(path)), "its folder")
  except SqznetError as e:
    raise SqznetError(f"cannot write {what} {path!r}: {e}") from None
