"""sqznet-prune-channels as a user runs it: the shipped CIFAR-10 model to half its multiply-adds,
fine-tuned, resumed, costed by sqznet-analyze, exported and verified; bad budgets refused."""

import pytest

from tests.conftest import class_subset, shared_data_dir
from tests.tools import last_json, run_tool


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  root = tmp_path_factory.mktemp("prune_channels")
  train = class_subset(shared_data_dir("cifar10_subset", "train"), root / "train", 8)
  test = class_subset(shared_data_dir("cifar10_subset", "test"), root / "test", 10)
  return root, train, test


def test_prune_fine_tune_resume_analyze_export(photos):
  root, train, test = photos
  out = root / "half"
  args = ["--weights=cifar10", "--target_macs=0.5", f"--data={train}", f"--val_data={test}", "--epochs=1",
          "--steps_per_epoch=2", "--batch_size=16", "--learning_rate=0.01", "--latency_runs=2", "--histogram_freq=0",
          "--verbose=0", f"--model_dir={out}", "--format=json"]
  r = run_tool("prune_channels", *args)
  assert r.returncode == 0, r.stderr[-3000:]
  s = last_json(r.stdout)
  assert s["after"]["macs"] <= s["target"] == round(0.5 * s["before"]["macs"])
  assert s["after"]["params"] < s["before"]["params"] and s["macs_ratio"] >= 2.0
  assert 0.8 <= s["before"]["top1"] <= 1 and 0 <= s["after"]["top1"] <= 1  # the shipped model, 100 photos
  assert s["before"]["latency_b1_ms"] > 0 and s["after"]["latency_b32_ms"] > 0
  assert len(s["overrides"]["fires"]) == 8 and s["overrides"]["conv1_filters"] < 64
  assert (out / "step1" / "final.weights.h5").exists() and (out / "final.weights.h5").exists()
  # The run folder is a model form; the analysis of what it builds is what the pruning reported.
  r = run_tool("analyze", f"--weights={out}", "--format=json")
  assert r.returncode == 0, r.stderr[-2000:]
  a = last_json(r.stdout)
  assert (a["params"], a["macs"]) == (s["after"]["params"], s["after"]["macs"])
  # The same command again: every step is done, nothing is redone.
  r = run_tool("prune_channels", *args)
  assert r.returncode == 0 and "step 1/1: done" in r.stderr, r.stderr[-2000:]
  assert last_json(r.stdout)["after"]["top1"] == s["after"]["top1"]
  # Exported for TF Serving and TFLite, and verified against the run folder it came from.
  r = run_tool("export", f"--weights={out}", f"--export_dir={root / 'exp'}", "--tflite=float32", "--format=json")
  assert r.returncode == 0, r.stderr[-2000:]
  r = run_tool("verify_export", f"--export_dir={root / 'exp'}", f"--data_dir={test}", "--limit=20", "--format=json")
  assert r.returncode == 0, r.stderr[-2000:]
  d = last_json(r.stdout)
  assert not d["failures"] and {row["format"] for row in d["rows"]} >= {"saved_model:serving_default",
                                                                         "tflite:model_float32"}


@pytest.mark.parametrize("args, message", [
    (["--target_macs=0"], "--target_macs=0 is not accepted"),
    (["--target_macs=1"], "--target_macs=1 is not accepted"),
    (["--target_params=0.5", "--target_macs=0.5"], "give one budget"),
    ([], "give one budget"),
    (["--target_macs=0.5", "--epochs=2"], "give its training data with --data"),
    (["--target_latency=1.5"], "--target_latency=1.5 is not accepted; expected a fraction in (0, 1)"),
    (["--target_params=5000000"], "the network has 739,442 params"),
], ids=["ratio-0", "ratio-1", "two-budgets", "no-budget", "epochs-without-data", "latency-above-1",
        "more-than-exists"])
def test_bad_budgets_are_refused(tmp_path, args, message):
  r = run_tool("prune_channels", "--weights=cifar10", *args, f"--model_dir={tmp_path / 'out'}")
  assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert not (tmp_path / "out" / "final.weights.h5").exists()
