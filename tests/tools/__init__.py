"""The binaries in tools/ run as a user runs them: subprocesses with real flags."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def run_tool(tool, *args, env=None, timeout=900):
  """Runs tools/<tool>.py with `args`; returns the CompletedProcess (text stdout/stderr)."""
  e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
  return subprocess.run([sys.executable, str(REPO / "tools" / f"{tool}.py"), *args], capture_output=True,
                        text=True, env=e, timeout=timeout)


def last_json(stdout):
  """The JSON object a binary prints as the last line of stdout (--format=json)."""
  return json.loads(stdout.strip().splitlines()[-1])
