"""The measured roofline (`analysis.roofline`, `sqznet-analyze --roofline`) on tiny inputs: every
layer that costs time is timed, its FLOPs and bytes are the cost model's, the figure is drawn.
No assertion on the times themselves (they are the machine's)."""

import json

import pytest

import sqznet_tf
from sqznet_tf.analysis import cost, report, roofline
from tests.conftest import assert_figure
from tests.tools import last_json, run_tool

ROOF = {"peak_gflops": 100.0, "bandwidth_gbs": 20.0, "matmul_size": 0, "copy_mib": 0}  # given, not measured

FAMILIES = [("squeezenet_v1_0", 64, {"bypass": "complex"}), ("squeezenet_v1_1", 64), ("alexnet", 227),
            ("squeezenet_v1_1_cifar", 32)]


@pytest.mark.parametrize("family", FAMILIES, ids=[f"{f[0]}{'-' + str(f[2]) if len(f) > 2 else ''}" for f in FAMILIES])
def test_every_costly_layer_is_timed_with_the_cost_models_flops_and_bytes(family, tmp_path):
  name, size, overrides = family[0], family[1], (family[2] if len(family) > 2 else {})
  model = sqznet_tf.get_model(name, input_shape=(size, size, 3), classes=10, **overrides)
  d = report.roofline_report([(name, model)], batch=2, repeats=1, inner=1, roof=ROOF, png=str(tmp_path / "r.png"))
  m = d["models"][0]
  costs = {l.name: l for l in cost.analyze_model(model).layers}
  expected = [l.name for l in model.layers if costs[l.name].type not in cost.FUSED_TYPES]
  assert [r["name"] for r in m["layers"]] == expected  # every layer that costs time, in order
  for r in m["layers"]:
    c = costs[r["name"]]
    assert r["flops"] == 2 * c.macs * 2
    assert r["bytes"] == 2 * (c.input_bytes + c.activation_bytes) + c.weight_bytes
    assert r["seconds"] > 0 and r["bound"] == ("memory" if r["intensity"] < 5.0 else "compute")
  assert sum(r["flops"] for r in m["layers"]) == 2 * 2 * cost.analyze_model(model).macs
  assert abs(sum(m["time_share"].values()) - 1) < 1e-9
  assert {r["group"] for r in m["layers"] if r["flops"]} <= {"conv 1x1", "conv 3x3", "conv other", "dense"}
  assert_figure(tmp_path / "r.png", min_size=(600, 400))


def test_sqznet_analyze_roofline_on_a_compare_and_a_single_model(tmp_path):
  png, out = tmp_path / "cmp.png", tmp_path / "cmp.json"
  r = run_tool("analyze", "--compare=squeezenet_v1_0,squeezenet_v1_1", "--input_size=64", f"--roofline={png}",
               "--roofline_repeats=1", f"--output={out}")
  assert r.returncode == 0, r.stderr[-2000:]
  d = json.loads(out.read_text())["roofline"]
  assert [m["model"] for m in d["models"]] == ["squeezenet_v1_0", "squeezenet_v1_1"]
  assert d["roof"]["peak_gflops"] > 0 and d["roof"]["bandwidth_gbs"] > 0
  assert "Roof:" in r.stdout and "memory-bound" in r.stdout
  assert_figure(png, min_size=(600, 400))
  r = run_tool("analyze", "--model=squeezenet_v1_1_cifar", f"--roofline={tmp_path / 'one.png'}",
               "--roofline_repeats=1", "--format=json")
  assert r.returncode == 0, r.stderr[-2000:]
  one = last_json(r.stdout)["roofline"]["models"][0]
  names = [l["name"] for l in one["layers"]]
  assert "conv1" in names and "fire9_concat" in names and "conv10" in names
  r = run_tool("analyze", "--kernel_example=8,8,16", f"--roofline={tmp_path / 'x.png'}")
  assert r.returncode == 1 and "does not apply to --kernel_example" in r.stderr
