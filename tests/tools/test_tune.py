"""sqznet-tune run as a user would (subprocesses): a real-data search with a rejected candidate,
resuming, keras-tuner's chief/worker mode on 127.0.0.1, and bad input."""

import json
import os
import socket
import subprocess
import time

from tests.conftest import REPO, assert_figure, class_subset, shared_data_dir
from tests.tools import free_ports, last_json, run_script, start_script

TUNE = str(REPO / "tools" / "tune.py")
# Embedded digits at 24 px, three steps per trial: for the process-level tests.
TINY = ["--data=embedded", "--image_size=24", "--epochs=1", "--steps_per_epoch=3", "--verbose=0", "--format=json"]


def run(*args, env=None, tool=TUNE):
  return run_script(tool, *args, env=env, timeout=900)


def test_two_trial_search_on_cifar_rejects_the_big_one(tmp_path):
  train_dir = shared_data_dir("cifar10_subset", "train")
  # 50 test photos per class: the search validates on them and sqznet-evaluate scores them again.
  test_dir = class_subset(shared_data_dir("cifar10_subset", "test"), tmp_path / "val", 50)
  r = run(f"--data={train_dir}", f"--val_data={test_dir}", "--image_size=32", "--tuner=grid",
          '--space={"squeeze_ratio": [0.125, 1.0], "batch_norm": true}', "--max_params=1000000", "--epochs=1",
          "--steps_per_epoch=40", f"--directory={tmp_path}", "--verbose=0", "--format=json")
  assert r.returncode == 0, r.stderr
  assert "Traceback" not in r.stderr  # a rejected candidate is not an error
  d = last_json(r.stdout)
  trials = {t["values"]["squeeze_ratio"]: t for t in d["trials"]}
  small, big = trials[0.125], trials[1.0]
  assert small["status"] == "COMPLETED" and 0.0 < small["val_accuracy"] <= 1.0
  assert small["params"] == 752_498  # squeezenet_v1_0 (SR 0.125) with batch norm, 10 classes
  assert big["status"] == "REJECTED" and big["val_accuracy"] is None
  assert big["params"] > 1_000_000 and f"params {big['params']:,} > 1,000,000" in big["note"]
  assert not os.path.exists(tmp_path / "search" / "trial_1" / "checkpoint.index")  # never trained
  project = tmp_path / "search"
  assert_figure(project / "search.png")
  assert json.loads((project / "results.json").read_text()) == d
  events = [f for _, _, fs in os.walk(project / "logs") for f in fs if f.startswith("events.out")]
  assert events  # TensorBoard logs (with HParams) per trial
  # The best model loads and evaluates with sqznet-evaluate, with its own preprocessing metadata.
  best = d["best"]["model"]
  r = run(f"--saved_model={best}", f"--data_dir={test_dir}", "--format=json", tool=str(REPO / "tools" / "evaluate.py"))
  assert r.returncode == 0, r.stderr
  e = last_json(r.stdout)
  assert e["n"] == 500 and e["preprocessing"]["crop_size"] == 32
  # The same 500 photos the search validated on: the saved model is the trial's.
  assert abs(e["top1"] - small["val_accuracy"]) < 0.005, (e["top1"], small["val_accuracy"])


def test_resume_runs_only_the_new_trials(tmp_path):
  space = '--space={"squeeze_ratio": [0.125, 1.0, 0.25], "batch_norm": true}'
  r = run(*TINY, "--tuner=random", space, "--max_params=1000000", "--max_trials=2", f"--directory={tmp_path}")
  assert r.returncode == 0, r.stderr
  first = {t["trial"]: t for t in last_json(r.stdout)["trials"]}
  assert len(first) == 2
  r = run(*TINY, "--tuner=random", space, "--max_params=1000000", "--max_trials=3", "--nooverwrite",
          f"--directory={tmp_path}")
  assert r.returncode == 0, r.stderr
  second = {t["trial"]: t for t in last_json(r.stdout)["trials"]}
  assert len(second) == 3
  for tid, t in first.items():  # the first two trials were kept, not run again
    assert second[tid] == t
  assert sorted(t["values"]["squeeze_ratio"] for t in second.values()) == [0.125, 0.25, 1.0]


def test_chief_and_two_workers_share_the_trials(tmp_path):
  env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_ports()[0])}
  args = [*TINY, "--tuner=grid", f"--directory={tmp_path}",
          '--space={"squeeze_ratio": [0.125, 0.25, 0.5], "batch_norm": true}']
  procs = {}
  for tid in ("chief", "tuner0"):
    procs[tid] = start_script(TUNE, *args, env=dict(env, KERASTUNER_TUNER_ID=tid))
  # 20-40 s alone on 2 cores; the deadline is for a hang, which then shows every process's stderr.
  deadline = time.time() + 300
  try:
    # The second worker joins once the first has finished a trial: the same command on every process
    # starts the search afresh, and a late worker must not delete the trials the others wrote (only
    # the chief starts afresh, before it serves the oracle).
    while (not list(tmp_path.glob("search/trial_*/checkpoint.index")) and time.time() < deadline
           and procs["chief"].poll() is None):
      time.sleep(0.5)
    procs["tuner1"] = start_script(TUNE, *args, env=dict(env, KERASTUNER_TUNER_ID="tuner1"))
    for p in procs.values():
      try:
        p.wait(timeout=max(1, deadline - time.time()))
      except subprocess.TimeoutExpired:
        break
  finally:
    for p in procs.values():
      p.kill()
  out = {tid: p.communicate() for tid, p in procs.items()}
  assert all(p.returncode == 0 for p in procs.values()), {k: (procs[k].returncode, v[1][-1500:]) for k, v in out.items()}
  d = last_json(out["chief"][0])
  assert len(d["trials"]) == 3 and all(t["status"] == "COMPLETED" for t in d["trials"])
  ran = {}
  for tid in ("tuner0", "tuner1"):
    line = [l for l in out[tid][1].splitlines() if "this worker ran" in l][-1]
    ran[tid] = int(line.rsplit("ran ", 1)[1].split()[0])
  # On totals, not on each worker's luck: the workers ran the 3 trials between them, none twice.
  assert sum(ran.values()) == 3, ran
  assert os.path.exists(d["best"]["model"])
  # Every trial's checkpoint is still there, the first one's included (written before tuner1 joined).
  missing = [t["trial"] for t in d["trials"] if not (tmp_path / "search" / f"trial_{t['trial']}" / "checkpoint.index").exists()]
  assert not missing, missing


def test_a_worker_killed_mid_trial_picks_it_up_again(tmp_path):
  """The chief keeps a dead worker's trial as running; the same worker id started again gets it."""
  env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_ports()[0])}
  args = [*TINY, "--tuner=grid", f"--directory={tmp_path}", '--space={"squeeze_ratio": [0.125, 0.25], "batch_norm": true}']
  chief = start_script(TUNE, *args, env=dict(env, KERASTUNER_TUNER_ID="chief"))
  worker = start_script(TUNE, *args, env=dict(env, KERASTUNER_TUNER_ID="tuner0"))
  procs = [chief, worker]
  deadline = time.time() + 300
  try:
    while not list(tmp_path.glob("search/trial_*")) and time.time() < deadline and chief.poll() is None:
      time.sleep(0.2)
    time.sleep(1.0)  # building the model and training: the trial is under way
    worker.kill()
    worker.communicate()
    again = start_script(TUNE, *args, env=dict(env, KERASTUNER_TUNER_ID="tuner0"))
    procs.append(again)
    for p in (again, chief):
      p.wait(timeout=max(1, deadline - time.time()))
  finally:
    for p in procs:
      p.kill()
  (out, err), (_, err_again) = chief.communicate(), again.communicate()
  assert chief.returncode == 0 and again.returncode == 0, (err[-1500:], err_again[-1500:])
  d = last_json(out)
  assert [t["status"] for t in d["trials"]] == ["COMPLETED", "COMPLETED"]
  assert "this worker ran 2 trials" in err_again or "this worker ran 1 trials" in err_again, err_again


def test_a_worker_killed_for_good_is_lost_and_the_chief_stops(tmp_path):
  """A worker killed mid-trial and never started again: after --worker_timeout the chief fails its
  trial and, with no worker left, stops with the results it has (exit 1, one line)."""
  env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_ports()[0])}
  args = [*TINY, "--tuner=grid", f"--directory={tmp_path}", '--space={"squeeze_ratio": [0.125, 0.25], "batch_norm": true}']
  worker = start_script(TUNE, *args, env=dict(env, KERASTUNER_TUNER_ID="tuner0"))
  chief = start_script(TUNE, *args, "--worker_timeout=10", env=dict(env, KERASTUNER_TUNER_ID="chief"))
  deadline = time.time() + 300
  try:
    while not list(tmp_path.glob("search/trial_*")) and time.time() < deadline and chief.poll() is None:
      time.sleep(0.2)
    time.sleep(1.0)  # the trial is under way
    worker.kill()
    worker.communicate()
    chief.wait(timeout=max(1, deadline - time.time()))
  finally:
    for p in (worker, chief):
      p.kill()
  out, err = chief.communicate()
  assert chief.returncode == 1 and "Traceback" not in err, err[-1500:]
  assert "the search stopped without its workers: no worker sent anything for" in err, err[-1500:]
  assert "worker tuner0 was lost" in err, err[-1500:]
  d = json.load(open(tmp_path / "search" / "results.json"))
  # The trial under way when the worker died failed (on a fast machine the first may have finished).
  statuses = [t["status"] for t in d["trials"]]
  assert statuses in (["FAILED"], ["COMPLETED", "FAILED"]), d["trials"]
  assert d["trials"][-1]["note"].startswith("worker tuner0 sent nothing for"), d["trials"][-1]
  assert d["lost_workers"] == [{"worker": "tuner0", "trial": d["trials"][-1]["trial"]}]
  assert d["stopped"].startswith("no worker sent anything for")


def test_bad_input_fails_cleanly(tmp_path):
  # (Impossible ranges and the other space errors are tested on the library, tests/search.)
  for args, message in [(["--tuner=annealing"], "--tuner=annealing is not accepted"),
                        (['--space={"squeeze_ratio": {"min": 0.001, "max": 0.5}}'], "impossible squeezenet_v1_0"),
                        (['--space={"pct3x3": {"min": 0.2, "max": 0.8}}', "--tuner=grid"], "continuous range")]:
    r = run(*TINY, f"--directory={tmp_path}", *args)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert message in r.stderr, r.stderr
  r = run(*TINY, f"--directory={tmp_path}", "--worker_timeout=3")
  assert r.returncode != 0 and "--worker_timeout=3 is not accepted; expected 0 (wait forever) or at least 10" in r.stderr, r.stderr
  # A grid search does not resume (keras-tuner keeps the grid in memory): refused, not run half.
  (tmp_path / "search").mkdir(exist_ok=True)
  (tmp_path / "search" / "oracle.json").write_text("{}")
  r = run(*TINY, f"--directory={tmp_path}", "--tuner=grid", "--nooverwrite")
  assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
  assert "a grid search does not resume" in r.stderr, r.stderr
  # A chief whose oracle port is taken says so (keras-tuner's gRPC server would share it silently).
  with socket.socket() as held:
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    r = run(*TINY, f"--directory={tmp_path}",
            env={"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)})
  assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
  assert f"KERASTUNER_ORACLE_PORT={port} on 127.0.0.1 is in use" in r.stderr, r.stderr


def test_sweep_with_compute_and_size_budgets_and_hparams_logs(tmp_path):
  """--sweep=sr (the paper's Figure 3 points) under --max_macs and --max_bytes: at 24 px with batch
  norm, SR 0.125 costs 4,261,152 MACs and 326,560 bytes (Deep Compression at 0.334 / 6 bits), SR 0.25
  7,374,112 and 627,743, SR 0.375 10,487,072 (sqznet-analyze); the limits below keep only 0.125."""
  r = run(*TINY, "--sweep=sr", "--tuner=grid", "--max_trials=8", "--max_macs=9000000", "--max_bytes=500000",
          f"--directory={tmp_path}")
  assert r.returncode == 0, r.stderr
  d = last_json(r.stdout)
  trials = {t["values"]["squeeze_ratio"]: t for t in d["trials"]}
  assert sorted(trials) == [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
  assert all(t["values"]["pct3x3"] == 0.5 for t in d["trials"])  # the sweep fixes the 3x3 share
  assert trials[0.125]["status"] == "COMPLETED" and trials[0.125]["macs"] == 4_261_152
  assert trials[0.25]["status"] == "REJECTED" and trials[0.25]["note"] == "over budget: bytes 627,743 > 500,000"
  assert all(trials[sr]["status"] == "REJECTED" and trials[sr]["note"].startswith("over budget: macs ") for sr in trials if sr > 0.25)
  # TensorBoard's HParams plugin gets each trained trial's hyperparameters.
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  logged = set()
  for folder, _, files in os.walk(tmp_path / "search" / "logs"):
    for f in files:
      if f.startswith("events.out"):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, f)):
          for v in event.summary.value:
            if v.tag == "_hparams_/session_start_info":
              logged.add(v.metadata.plugin_data.content)
  assert logged and all(b"squeeze_ratio" in c and b"pct3x3" in c for c in logged)
