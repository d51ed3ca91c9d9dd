"""Line-oriented JSON protocol between bench/vs_torchvision.py and its framework workers (stdlib only).

A worker reads one JSON request per line on stdin and answers one JSON line on stdout:
  {"task": "infer", "model", "batch", "size", "iters"}      -> {"seconds": [per call]}
  {"task": "train", "model", "batch", "size", "iters"}      -> {"seconds": [per step]}
  {"task": "matmul", "n", "iters"}                          -> {"seconds": [per product]}
Each task warms up (untimed) before its timed calls. Anything else a framework prints goes to
stderr, so stdout carries only answers.
"""

import json
import os
import sys
import time


def serve(handlers):
  """Answers requests with handlers[task](**request) -> dict, until stdin closes."""
  out = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)  # framework chatter on stdout goes to stderr
  for line in sys.stdin:
    if not line.strip():
      continue
    req = json.loads(line)
    task = req.pop("task")
    try:
      answer = handlers[task](**req)
    except Exception as e:  # pylint: disable=broad-except
      answer = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
    out.write(json.dumps(answer) + "\n")
    out.flush()


def timed(fn, iters, warmup=3):
  """Per-call wall seconds of `fn()` (which must block until its result is ready)."""
  for _ in range(warmup):
    fn()
  seconds = []
  for _ in range(iters):
    t = time.perf_counter()
    fn()
    seconds.append(time.perf_counter() - t)
  return seconds
