"""Finished benchmark runs recorded in the repository, so that a long benchmark resumes on a fresh clone.

A run folder (checkpoints, logs) lives under runs/, out of git, and resumes after an interruption on
the same machine. A clone on another machine has no runs/: the ledger (a small JSON file under
bench/results/, committed) keeps what every finished run measured, and a benchmark skips a run whose
record is there. The ledger also keeps the benchmark's settings; a run with other settings refuses
to mix its results into it (stdlib only).
"""

import json
import os
import platform
import tempfile


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


class Ledger:
  """{"settings": {...}, "records": {key: {...}}} in one JSON file, rewritten atomically."""

  def __init__(self, path: str, settings: dict):
    self.path, self.settings = path, settings
    self.records = {}
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        data = json.load(f)
      if data.get("settings") != settings:
        old = data.get("settings", {})
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        raise SystemExit(f"ledger {path} holds runs with other settings ({', '.join(diff)}: "
                         f"{[old.get(k) for k in diff]} there, {[settings.get(k) for k in diff]} here); "
                         "pass another --ledger or the same settings")
      self.records = data.get("records", {})

  def get(self, key: str):
    return self.records.get(key)

  def put(self, key: str, record: dict):
    self.records[key] = dict(record, cpu=cpu_name(), cores=os.cpu_count())
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(self.path)), suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump({"settings": self.settings, "records": self.records}, f, indent=1, sort_keys=True)
      f.write("\n")
    os.replace(tmp, self.path)
