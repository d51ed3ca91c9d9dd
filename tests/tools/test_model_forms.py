"""Every binary that reads a model loads every form through the one loader (README "Model forms").

One trained model (the shared CIFAR-10 run: SqueezeNet v1.1 with batch norm, 32 px) in four
forms: its sqznet-train run folder, its SavedModel folder, a `.keras` model and a `.sqz` container
written by sqznet-compress from the run folder. None of them is given --model or --batch_norm:
each form names its own network. The release `.net` is covered by the other tool tests
(evaluate, predict, compress, export, sensitivity).
"""

import json
import os

import pytest

from tests.conftest import shared_data_dir
from tests.tools import last_json, run_tool

LIMIT = 100  # test photos per evaluation, round-robin over the 10 classes


@pytest.fixture(scope="module")
def forms(cifar_run, tmp_path_factory):
  """{form: path} of the same trained network, and the 8-bit .sqz written by sqznet-compress."""
  from sqznet_tf import loading, weights  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("forms")
  model, info = loading.load_model(cifar_run.model_dir)
  keras_path = root / "cifar.keras"
  weights.save_model(model, str(keras_path), info)
  test_dir = shared_data_dir("cifar10_subset", "test")
  sqz = root / "cifar8.sqz"
  r = run_tool("compress", f"--weights={cifar_run.model_dir}", "--bits=8", f"--output={sqz}",
               f"--data_dir={test_dir}", f"--limit={LIMIT}", f"--work_dir={root / 'compress'}", "--format=json")
  assert r.returncode == 0, r.stderr
  d = last_json(r.stdout)
  assert d["model"] == "squeezenet_v1_1" and d["output"] == str(sqz)
  return {"run": cifar_run.model_dir, "saved_model": os.path.join(cifar_run.model_dir, "saved_model"),
          "keras": str(keras_path), "sqz": str(sqz), "compress_run": str(root / "compress"),
          "compress_rows": d["stages"], "test_dir": str(test_dir), "root": root}


def test_evaluate_gives_the_same_accuracy_for_every_dense_form(forms):
  """Run folder, SavedModel and .keras hold the same weights: the same top-1 on the same photos,
  and well above chance (the run scores about 40% on the test photos; chance is 10%)."""
  results = {}
  for form in ("run", "saved_model", "keras"):
    r = run_tool("evaluate", f"--weights={forms[form]}", f"--data_dir={forms['test_dir']}", f"--limit={LIMIT}",
                 "--format=json")
    assert r.returncode == 0, (form, r.stderr)
    d = last_json(r.stdout)
    assert d["n"] == LIMIT and d["preprocessing"]["crop_size"] == 32, form
    results[form] = d["top1"]
  assert len(set(results.values())) == 1, results
  assert results["run"] > 0.25
  # sqznet-compress measured the loaded run folder on the same photos with the same preprocessing.
  assert forms["compress_rows"][0]["top1"] == results["run"]


def test_the_compress_run_folder_loads_as_its_sqz(forms):
  """A sqznet-compress work folder (compress.json) loads as the file it wrote."""
  r = run_tool("evaluate", f"--weights={forms['compress_run']}", f"--data_dir={forms['test_dir']}",
               f"--limit={LIMIT}", "--format=json")
  assert r.returncode == 0, r.stderr
  assert last_json(r.stdout)["top1"] == forms["compress_rows"][-1]["top1"]


def test_eight_bit_sharing_changes_only_near_ties(forms):
  """8-bit sharing moves probabilities by little (mean change under 0.005, none over 0.06), and
  changes the top-1 class of a photo only where the dense model's top two classes were within
  0.05 of each other.

  Per photo rather than as a top-1 difference or a count of changed classes: this 4-epoch model
  decides many photos by a hair. Measured on 500 test photos: 8 flipped, every one with a dense
  margin under 0.01, largest probability change 0.023. Another training of the fixture (2026-12-04):
  35 of the first 100 photos within 0.05 of a tie, 7 of them flipped (margins 0.001-0.031), mean
  change 0.0014, largest 0.018; on 500 photos 12 flipped, mean 0.0013, largest 0.021. CI's own
  training at d0457d7: mean 0.0017, largest 0.0355; another (2026-12-04, later): 0.0016, 0.026. The
  mean is stable from training to training, the largest single change (the tail of 1,000
  probabilities) less so. On that last training a uniform grid per layer fails both bounds: 6 bits
  mean 0.0059, largest 0.090; 5 bits 0.0076, 0.087; 4 bits 0.019, 0.27.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from sqznet_tf import loading  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data import preprocessing, sources  # pylint: disable=g-import-not-at-top
  dense, info = loading.load_model(forms["run"])
  shared, _ = loading.load_model(forms["sqz"])
  files = sources.open_source(forms["test_dir"]).files[:LIMIT]  # round-robin over the classes
  prep = preprocessing.Preprocessor(info.preprocessing)
  x = np.stack([prep(open(path, "rb").read()) for path, _ in files])
  p_dense = dense.predict_on_batch(x)
  p_shared = shared.predict_on_batch(x)
  change = np.abs(p_dense - p_shared)
  assert float(np.mean(change)) <= 0.005 and float(np.max(change)) <= 0.06, (np.mean(change), np.max(change))
  top2 = np.sort(p_dense, axis=1)[:, -2:]
  flipped = np.argmax(p_dense, axis=1) != np.argmax(p_shared, axis=1)
  assert np.all(top2[flipped, 1] - top2[flipped, 0] < 0.05), (top2[flipped], np.flatnonzero(flipped))


def test_predict_names_cifar_classes_from_a_sqz(forms):
  photo = os.path.join(forms["test_dir"], "ship", sorted(os.listdir(os.path.join(forms["test_dir"], "ship")))[0])
  r = run_tool("predict", f"--weights={forms['sqz']}", "--top_k=3", "--format=json", photo)
  assert r.returncode == 0, r.stderr
  top = last_json(r.stdout)["predictions"][0]["top"]
  assert len(top) == 3 and all(t["class"] in range(10) for t in top)
  assert sum(t["probability"] for t in top) <= 1.0 + 1e-5
  # No --labels: the names come from the .sqz's metadata (the training folder's class folders).
  names = sorted(os.listdir(forms["test_dir"]))
  assert [t["label"] for t in top] == [names[t["class"]] for t in top], top


def test_sensitivity_reads_a_keras_model(forms):
  r = run_tool("sensitivity", f"--weights={forms['keras']}", f"--data_dir={forms['test_dir']}", "--limit=50",
               "--layers=conv10,fire9_expand3x3", "--sparsities=0.5,0.9", "--budget=0.05", "--format=json")
  assert r.returncode == 0, r.stderr
  d = last_json(r.stdout)
  assert d["model"] == "squeezenet_v1_1" and set(d["sparsity_map"]) == {"conv10", "fire9_expand3x3"}
  assert d["sensitivity"]["baseline"] > 0.2


def test_analyze_counts_the_zeros_of_a_sqz(forms):
  r = run_tool("analyze", f"--weights={forms['sqz']}", "--format=json")
  assert r.returncode == 0, r.stderr
  d = last_json(r.stdout)
  assert d["model"] == "squeezenet_v1_1(batch_norm=True)" and d["input_size"][:2] == [32, 32]
  assert {r["layer"] for r in d["sparsity_layers"]} >= {"conv1", "conv10"}


def test_export_and_verify_a_keras_model_and_a_sqz(forms):
  """sqznet-export takes a .keras model and a .sqz; sqznet-verify-export rebuilds its reference from
  what the export records (the .sqz) and finds the SavedModel equal to it."""
  root = forms["root"]
  r = run_tool("export", f"--weights={forms['keras']}", f"--export_dir={root / 'exp_keras'}", "--tflite=float32",
               "--tflite_sparsity=on", "--format=json")
  assert r.returncode == 0, r.stderr
  assert os.path.exists(root / "exp_keras" / "1" / "saved_model.pb") and last_json(r.stdout)["sparse"]
  r = run_tool("export", f"--weights={forms['sqz']}", f"--export_dir={root / 'exp_sqz'}", "--tflite=float32,dynamic",
               "--format=json")
  assert r.returncode == 0, r.stderr
  assert not last_json(r.stdout)["sparse"]  # auto: a dense model is converted without the sparsity option
  meta = json.loads((root / "exp_sqz" / "1" / "assets.extra" / "sqznet_export.json").read_text())
  assert meta["source"]["architecture"] == "squeezenet_v1_1" and meta["source"]["overrides"] == {"batch_norm": True}
  assert meta["source"]["weights"] == "cifar8.sqz"  # a file name, not the maker's folders
  # 20 photos: one flipped top-1 is 5 points, so the quantized rows (serving_uint8, dynamic TFLite) get
  # a 10-point allowance here; their accuracy is checked on the 500 photos in test_export.py.
  r = run_tool("verify_export", f"--export_dir={root / 'exp_sqz'}", f"--data_dir={forms['test_dir']}", "--limit=20",
               "--max_top1_drop=0.1", "--format=json")
  assert r.returncode == 0, r.stderr
  d = last_json(r.stdout)
  rows = {row["format"]: row for row in d["rows"]}
  assert rows["saved_model:serving_default"]["max_abs_diff"] <= 1e-4 and not d["failures"]
  assert rows["tflite:model_float32"]["pass"] and rows["tflite:model_dynamic"]["pass"]  # dynamic: top-1 check
  assert rows["tflite:model_dynamic"]["check"].startswith("top-1 drop")
  # The served graph runs the batch norms folded into the convolutions (sqznet_tf.inference).
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  graph = tf.saved_model.load(str(root / "exp_sqz" / "1")).signatures["serving_default"].graph.as_graph_def()
  ops = [n.op for f in graph.library.function for n in f.node_def] + [n.op for n in graph.node]
  assert "Conv2D" in ops and not [op for op in ops if op.startswith("FusedBatchNorm")]
  # The version folder itself is a model form too: it loads with the weights the export holds.
  r = run_tool("evaluate", f"--weights={root / 'exp_sqz' / '1'}", f"--data_dir={forms['test_dir']}",
               f"--limit={LIMIT}", "--format=json")
  assert r.returncode == 0, r.stderr
  assert last_json(r.stdout)["top1"] == forms["compress_rows"][-1]["top1"]


def test_verify_export_fails_on_what_does_not_match(forms):
  """The checker is shown failing (exit 1, the failing check named) on an export whose reference
  weights differ, whose TFLite file is another model's, whose recorded preprocessing drifted, and
  whose signatures drifted."""
  import shutil  # pylint: disable=g-import-not-at-top
  root = forms["root"]
  if not (root / "exp_sqz" / "1").exists() or not (root / "exp_keras" / "portable").exists():
    pytest.skip("needs the exports of test_export_and_verify_a_keras_model_and_a_sqz (same module)")
  common = [f"--data_dir={forms['test_dir']}", "--limit=20", "--max_top1_drop=0.1", "--format=json"]

  def verify(export_dir, *extra):
    r = run_tool("verify_export", f"--export_dir={export_dir}", *common, *extra)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return last_json(r.stdout)["failures"], r.stderr

  # 1. Weights: the dense run folder is not what the 8-bit export holds.
  failures, err = verify(root / "exp_sqz", f"--weights={forms['run']}")
  assert any(f.startswith("saved_model:serving_bytes fails diff <= 0.0001") for f in failures), failures
  assert "checks failed: " in err and "saved_model:serving_bytes fails" in err
  # 2. A TFLite file of another model (the dense .keras export's) in place of the export's own.
  swapped = root / "exp_swapped"
  shutil.copytree(root / "exp_sqz", swapped)
  shutil.copy(root / "exp_keras" / "portable" / "1" / "model_float32.tflite", swapped / "portable" / "1")
  failures, _ = verify(swapped)
  assert [f.split(" fails")[0] for f in failures] == ["tflite:model_float32"], failures
  # 3. The preprocessing the export records no longer is the one its graph applies.
  drift = root / "exp_drift"
  shutil.copytree(root / "exp_sqz", drift)
  meta_path = drift / "1" / "assets.extra" / "sqznet_export.json"
  meta = json.loads(meta_path.read_text())
  meta["preprocessing"]["mean"] = [m + 20 for m in meta["preprocessing"]["mean"]]
  meta_path.write_text(json.dumps(meta))
  failures, _ = verify(drift)
  assert any(f.startswith("saved_model:serving_default fails") for f in failures), failures
  # 4. The signatures drifted: a version re-saved with serving_default only.
  from sqznet_tf._keras import tf  # pylint: disable=g-import-not-at-top
  sigs = root / "exp_one_signature"
  restored = tf.saved_model.load(str(root / "exp_sqz" / "1"))
  tf.saved_model.save(restored, str(sigs / "1"), signatures={"serving_default": restored.signatures["serving_default"]})
  shutil.copytree(root / "exp_sqz" / "1" / "assets.extra", sigs / "1" / "assets.extra")
  failures, _ = verify(sigs)
  assert any(f.startswith("saved_model:serving_bytes fails its request") and "not found" in f
             for f in failures), failures
  assert any("warm-up requests fail" in f for f in failures), failures


def test_compress_layout_index_bits_and_per_layer(forms):
  root = forms["root"]
  r = run_tool("compress", f"--weights={forms['sqz']}", "--layout=sparse", "--index_bits=3",
               f"--output={root / 'sparse3.sqz'}", f"--work_dir={root / 'c2'}", "--format=json")
  assert r.returncode == 0, r.stderr
  coded = [t for t in last_json(r.stdout)["tensors"] if t["kind"] == "coded"]
  assert coded and all(t["layout"] == "sparse" and t["index_bits"] == 3 for t in coded)
  r = run_tool("compress", f"--weights={forms['sqz']}", "--layout=dense", "--noentropy", "--per_layer",
               f"--output={root / 'dense.sqz'}", f"--work_dir={root / 'c3'}")
  assert r.returncode == 0, r.stderr
  rows = [l.split() for l in r.stdout.splitlines() if l.startswith(("conv1:0", "conv10:0", "fire2_squeeze1x1:0"))]
  assert len(rows) == 3 and all(row[2] == "dense" for row in rows), r.stdout[-1500:]
  assert "bits/weight" in r.stdout
