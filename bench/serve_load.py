"""Load test of sqznet-serve: throughput and latency over HTTP at several concurrencies.

For each model (an export written here from --weights) and each batching setting, starts
`tools/serve.py` as a subprocess on 127.0.0.1, waits until it is ready, sends 50 requests to warm
it, then for each concurrency C sends --requests requests from C client threads (one keep-alive
connection each): TF Serving REST Predict bodies with one real photo each, as b64 JPEG on the
`serving_bytes` signature, cycling through the photos. Every answer is checked (status 200, the
first label equal to the one the server gave that photo when warm). Reports requests per second,
p50/p90/p99 latency and the number of failed requests. The client threads run on the same machine
as the server: the figures include their cost (JSON encoding and parsing).

Usage (from the repository root, nothing else running):
  python bench/serve_load.py --out=bench/results/serve_load.json
"""

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _ledger import cpu_name  # noqa: E402

S = os.environ.get("SQZNET_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
MODELS = {
    "release": dict(weights=f"{S}/squeezenet_v1_0_deep_compression/compressed_SqueezeNet.net",
                    labels=f"{S}/imagenet_sample/synset_words.txt", photos=f"{S}/imagenet_sample/images"),
    "cifar10": dict(weights="cifar10", labels=None, photos=f"{S}/cifar10_subset/test"),
}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def photo_files(folder: str, n: int):
  out = []
  for root, _, files in sorted(os.walk(folder)):
    out += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith((".jpg", ".jpeg"))]
  step = max(1, len(out) // n)
  return out[::step][:n]


def body(data: bytes) -> bytes:
  return json.dumps({"signature_name": "serving_bytes",
                     "instances": [{"b64": base64.b64encode(data).decode()}]}).encode()


class Client:
  """One keep-alive connection per thread."""

  def __init__(self, port: int, name: str):
    self.port, self.path = port, f"/v1/models/{name}:predict"
    self.local = threading.local()

  def post(self, data: bytes):
    conn = getattr(self.local, "conn", None)
    if conn is None:
      conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
    try:
      conn.request("POST", self.path, body=data, headers={"Content-Type": "application/json"})
      r = conn.getresponse()
      raw = r.read()
    except (OSError, http.client.HTTPException):
      conn.close()
      self.local.conn = None
      raise
    return r.status, raw


def start_server(root: str, port: int, log_path: str, batching: bool):
  flags = [f"--export_dir={root}", f"--rest_api_port={port}"]
  if batching:
    flags += ["--enable_batching", "--max_batch_size=8", "--batch_timeout_micros=2000"]
  log = open(log_path, "w")
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "serve.py"), *flags],
                          stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  name = os.path.basename(root)
  deadline = time.monotonic() + 300
  while True:
    if proc.poll() is not None:
      raise SystemExit(f"sqznet-serve exited {proc.returncode}; see {log_path}")
    try:
      c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
      c.request("GET", f"/v1/models/{name}")
      if c.getresponse().status == 200:
        break
    except OSError:
      pass
    if time.monotonic() > deadline:
      proc.kill()
      raise SystemExit(f"sqznet-serve not ready in 300 s; see {log_path}")
    time.sleep(0.5)
  return proc


def load(client: Client, bodies, expected, concurrency: int, n: int) -> dict:
  latencies, failures = [], 0
  lock = threading.Lock()

  def one(i):
    nonlocal failures
    k = i % len(bodies)
    t = time.perf_counter()
    try:
      status, raw = client.post(bodies[k])
      ok = status == 200 and json.loads(raw)["predictions"][0]["labels"][0] == expected[k]
    except (OSError, http.client.HTTPException, ValueError, KeyError):
      ok = False
    dt = time.perf_counter() - t
    with lock:
      latencies.append(dt)
      failures += not ok

  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    list(pool.map(one, range(n)))
  wall = time.perf_counter() - start
  ms = np.asarray(latencies) * 1000
  return {"concurrency": concurrency, "requests": n, "failed": failures, "seconds": round(wall, 2),
          "requests_per_s": round(n / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
          "p90_ms": round(float(np.percentile(ms, 90)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--models", default="release,cifar10", help=f"comma list of {', '.join(MODELS)}")
  ap.add_argument("--concurrency", default="1,4,8")
  ap.add_argument("--requests", type=int, default=500)
  ap.add_argument("--batching", default="off,on")
  ap.add_argument("--photos", type=int, default=50, help="distinct photos cycled through")
  ap.add_argument("--out", default=None, help="JSON file for the results")
  args = ap.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  sys.argv = sys.argv[:1]
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf.export import exporter  # pylint: disable=g-import-not-at-top

  rows = []
  tmp = tempfile.mkdtemp(prefix="serve-load-")
  for key in args.models.split(","):
    m = MODELS[key]
    root = os.path.join(tmp, key)
    model, info = sqznet_tf.load_model(m["weights"])
    exporter.export(model, info, m["weights"], exporter.ExportConfig(export_dir=root, labels=m["labels"]))
    bodies = [body(open(f, "rb").read()) for f in photo_files(m["photos"], args.photos)]
    for batching in args.batching.split(","):
      port = free_port()
      proc = start_server(root, port, os.path.join(tmp, f"{key}-{batching}.log"), batching == "on")
      try:
        client = Client(port, key)
        expected = [json.loads(client.post(b)[1])["predictions"][0]["labels"][0] for b in bodies]
        load(client, bodies, expected, 4, 50)  # warm: threads, connections, the batcher
        for c in [int(x) for x in args.concurrency.split(",")]:
          r = dict(model=key, batching=batching, **load(client, bodies, expected, c, args.requests))
          rows.append(r)
          print(f"{key:8} batching {batching:3}  concurrency {c}: {r['requests_per_s']:6.1f} req/s  p50 "
                f"{r['p50_ms']:6.1f} ms  p90 {r['p90_ms']:6.1f}  p99 {r['p99_ms']:6.1f}  failed {r['failed']}/{r['requests']}",
                flush=True)
      finally:
        proc.terminate()
        proc.wait(timeout=60)
  result = {"cpu": cpu_name(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
            "command": "python bench/serve_load.py " + " ".join(f"--{k}={v}" for k, v in vars(args).items() if v),
            "rows": rows}
  if args.out:
    from sqznet_tf.io import write_json_atomic  # pylint: disable=g-import-not-at-top
    write_json_atomic(args.out, result)
  print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
  main()
