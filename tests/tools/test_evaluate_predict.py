"""sqznet-evaluate and sqznet-predict run as a user would (subprocesses)."""

import json

from tests.tools import run_tool


def run(tool, *args):
  return run_tool(tool, *args, timeout=600)


def test_predict_puts_a_cat_first(release_path, sample_dir, synsets):
  r = run("predict", f"--weights={release_path}", f"--labels={synsets}", "--format=json",
          str(sample_dir / "n02123394_Persian_cat.JPEG"), str(sample_dir / "n02124075_Egyptian_cat.JPEG"))
  assert r.returncode == 0, r.stderr
  preds = json.loads(r.stdout.strip().splitlines()[-1])["predictions"]
  cats = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}  # ImageNet classes 281-285
  assert [p["top"][0]["label"] for p in preds] == ["Persian cat", "Egyptian cat"]
  assert all(p["top"][0]["label"] in cats and 281 <= p["top"][0]["class"] <= 285 for p in preds)


def test_evaluate_json(release_path, sample_dir, synsets, tmp_path):
  out = tmp_path / "result.json"
  r = run("evaluate", f"--weights={release_path}", f"--data_dir={sample_dir}", f"--labels={synsets}",
          "--limit=64", "--format=json", f"--output={out}", "--intra_op_threads=1", "--inter_op_threads=2")
  assert r.returncode == 0, r.stderr
  d = json.loads(r.stdout.strip().splitlines()[-1])
  assert d["n"] == 64 and d["skipped"] == 0 and d["layout"] == "flat"
  assert 0.0 <= d["top1"] <= d["top5"] <= 1.0 and d["top1"] == d["correct1"] / 64
  assert d["preprocessing"]["mode"] == "caffe" and d["preprocessing"]["crop_size"] == 227
  assert d["runtime"] == "tf"  # --runtime=auto sends batches of 32 to TF
  assert d["tf_threads"] == {"intra_op": 1, "inter_op": 2}  # set before TensorFlow's first op
  assert json.loads(out.read_text()) == d
  assert "evaluating [" in r.stderr  # progress on stderr


def test_bad_inputs_fail_cleanly(release_path, sample_dir, tmp_path):
  truncated = tmp_path / "cut.net"
  truncated.write_bytes(release_path.read_bytes()[:300_000])
  r = run("predict", f"--weights={truncated}", str(sample_dir / "n01440764_tench.JPEG"))
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert "cut.net: compressed file is truncated: layer" in r.stderr
  empty = tmp_path / "empty"
  empty.mkdir()
  r = run("evaluate", f"--weights={release_path}", f"--data_dir={empty}")
  assert r.returncode != 0 and "Traceback" not in r.stderr and "no images found in" in r.stderr
  r = run("predict", f"--weights={release_path}", "--intra_op_threads=0", str(sample_dir / "n01440764_tench.JPEG"))
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert "--intra_op_threads=0: 0 is not a positive integer" in r.stderr, r.stderr
