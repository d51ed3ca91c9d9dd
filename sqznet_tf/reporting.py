"""Tables (plain text and markdown) and JSON shared by the tools and benchmarks."""

import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

FORMATS = ("table", "json", "markdown")


def human(n: float, unit: str = "") -> str:
  """1234567 -> '1.23 M'."""
  for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(n) >= factor:
      return f"{n / factor:.2f} {prefix}{unit}"
  return f"{n:g} {unit}".rstrip()


def human_bytes(n: float) -> str:
  """Bytes with binary prefixes: 4993696 -> '4.76 MiB'."""
  for factor, prefix in ((2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB")):
    if abs(n) >= factor:
      return f"{n / factor:.2f} {prefix}"
  return f"{int(n)} B"


def _cell(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
  if isinstance(v, int):
    return f"{v:,}"
  if isinstance(v, (list, tuple)):
    return "x".join("?" if d is None else str(d) for d in v)
  return str(v)


def table(rows: Sequence[Dict[str, Any]], columns: Sequence[str], markdown: bool = False) -> str:
  """Renders dict rows as an aligned text table (numbers right-aligned) or a markdown table."""
  cells = [[_cell(r.get(c, "")) for c in columns] for r in rows]
  if markdown:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)
  widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
  numeric = [all(isinstance(r.get(c), (int, float)) for r in rows if r.get(c, "") != "") for c in columns]
  def fmt(vals):
    return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(vals, widths, numeric)).rstrip()
  lines = [fmt(columns), fmt(["-" * w for w in widths])] + [fmt(row) for row in cells]
  return "\n".join(lines)


def print_json(obj: Any, stream=None) -> None:
  """Prints `obj` as one line of JSON (the last line of stdout, by the tools' convention)."""
  stream = stream or sys.stdout
  stream.write(json.dumps(obj, sort_keys=False) + "\n")
  stream.flush()


# x86-64 CPUs: where the package switches TensorFlow's oneDNN kernels on (sqznet_tf/__init__.py) and
# where inference.max_pool_v2_pays applies. Also `sqznet_tf.X86`.
X86 = platform.machine().lower() in ("x86_64", "amd64")


def machine() -> Dict[str, Any]:
  """The CPU this runs on: {"cpu": model name, "avx512": bool, "cores": usable cores} (for figures and caches).

  The project's machines differ 4x in fp32 matmul between AVX-512 and AVX2-only CPUs, so every
  figure names its CPU and whether it has AVX-512.
  """
  name, flags = None, ""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if name is None and line.startswith("model name"):
          name = line.split(":", 1)[1].strip()
        elif not flags and line.startswith("flags"):
          flags = line.split(":", 1)[1]
  except OSError:
    pass
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    cores = os.cpu_count() or 1
  return {"cpu": name or platform.processor() or "unknown CPU", "avx512": "avx512f" in flags.split(),
          "cores": cores}


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
  """Median wall seconds of `fn()` over `repeats` calls after `warmup` untimed ones (fn must block
  until its result is ready)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def progress(msg: str) -> None:
  """Progress lines go to stderr so stdout stays parseable."""
  sys.stderr.write(msg + "\n")
  sys.stderr.flush()


def heading(text: str, markdown: bool = False) -> str:
  return f"### {text}" if markdown else f"{text}\n{'=' * len(text)}"


def kv_lines(pairs: List[tuple], markdown: bool = False) -> str:
  if markdown:
    return "\n".join(f"- **{k}**: {v}" for k, v in pairs)
  width = max(len(k) for k, _ in pairs)
  return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


class ProgressBar:
  """A progress bar on stderr: redrawn in place on a terminal, a line every 10% otherwise."""

  def __init__(self, total, label: str = "", stream=None, width: int = 30):
    import time  # pylint: disable=g-import-not-at-top  (standard library, used by the bar only)
    self._time = time.time
    self.total, self.label, self.width = total, label, width
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.start = self._time()
    self._last_decile = -1

  def update(self, done: int, extra: str = "") -> None:
    elapsed = self._time() - self.start
    rate = done / elapsed if elapsed > 0 else 0.0
    if self.total:
      frac = min(1.0, done / self.total)
      bar = "#" * int(frac * self.width)
      text = f"{self.label} [{bar.ljust(self.width)}] {done}/{self.total} {rate:.1f}/s {extra}".rstrip()
      decile = int(frac * 10)
    else:
      text = f"{self.label} {done} {rate:.1f}/s {extra}".rstrip()
      decile = done // 1000
    if self.tty:
      self.stream.write("\r" + text)
    elif decile != self._last_decile:
      self.stream.write(text + "\n")
    self._last_decile = decile
    self.stream.flush()

  def close(self) -> None:
    if self.tty:
      self.stream.write("\n")
      self.stream.flush()
