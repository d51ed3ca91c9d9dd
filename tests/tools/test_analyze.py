"""sqznet-analyze run as a user would: a process per call, JSON on the last line of stdout."""

import json
import os

import pytest

from tests.conftest import assert_figure
from tests.tools import run_tool

def run(*args):
  return run_tool("analyze", *args, timeout=300)


def test_json_report_of_a_design_space_point(tmp_path):
  out = tmp_path / "report.json"
  r = run("--model=squeezenet_v1_0", "--squeeze_ratio=0.75", "--pct3x3=0.25", "--input_size=224",
          "--density=0.334", "--bits=6", "--format=json", f"--output={out}")
  assert r.returncode == 0, r.stderr
  d = json.loads(r.stdout.strip().splitlines()[-1])
  assert d["model"] == "squeezenet_v1_0(squeeze_ratio=0.75, pct3x3=0.25)"
  assert d["input_size"] == [224, 224, 3]
  layers = {l["name"]: l for l in d["layers"]}
  assert layers["fire2_squeeze1x1"]["output_shape"] == [54, 54, 96]
  assert layers["fire2_expand3x3"]["output_shape"] == [54, 54, 32]
  assert {"name", "type", "output_shape", "params", "macs", "weight_bytes", "activation_bytes",
          "intensity"} <= set(layers["conv1"])
  assert d["params"] == sum(l["params"] for l in d["layers"]) > 1_248_424
  assert d["sizes"]["deep_compression"]["bits"] == 6
  assert json.loads(out.read_text()) == d
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_compare_markdown():
  r = run("--compare=squeezenet_v1_0,alexnet", "--format=markdown")
  assert r.returncode == 0, r.stderr
  assert "| model | input | params | x params |" in r.stdout
  row = [l for l in r.stdout.splitlines() if l.startswith("| alexnet ")][0]
  assert "| 60,965,224 | 48.8 |" in row


@pytest.mark.parametrize("args, fragment", [
    (["--model=sqznet"], "Unknown model 'sqznet'; known: squeezenet_v1_0"),
    (["--squeeze_ratio=-1"], "squeeze_ratio=-1.0 is not accepted"),
    (["--input_size=16"], "smallest accepted is 21x21"),
    (["--classes=0"], "--classes=0"),
])
def test_bad_input_is_one_line_without_traceback(args, fragment):
  r = run(*args)
  assert r.returncode != 0
  assert fragment in r.stderr
  assert "Traceback" not in r.stderr
  assert r.stdout == ""


def test_sparsity_report_of_real_weights(tmp_path, release_path):
  png = tmp_path / "sparsity.png"
  r = run("--model=squeezenet_v1_0_caffe", f"--weights={release_path}", f"--sparsity_png={png}", "--format=json")
  assert r.returncode == 0, r.stderr
  d = json.loads(r.stdout.strip().splitlines()[-1])
  assert round(d["kernel_sparsity"], 3) == 0.666 and len(d["sparsity_layers"]) == 26
  assert_figure(png)
  r = run("--sparsity_png=x.png")
  assert r.returncode != 0 and "--sparsity_png needs --weights" in r.stderr
