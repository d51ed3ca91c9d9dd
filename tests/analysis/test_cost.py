"""Cost analysis against REFERENCE.md's computed MAC counts and the closed-form kernel example."""

import pytest

from sqznet_tf.analysis import cost, storage
from sqznet_tf.errors import SqznetError

# MACs per image, conv (and fc) layers, ceil-mode pools (REFERENCE.md sections 1, 2 and 6).
MACS = [
    ("squeezenet_v1_0", 224, 818.9e6),
    ("squeezenet_v1_0", 227, 832.7e6),
    ("squeezenet_v1_0_caffe", 227, 861.3e6),
    ("squeezenet_v1_1", 224, 349.2e6),
    ("squeezenet_v1_1", 227, 387.7e6),
    ("alexnet", None, 724.4e6),  # 227, BVLC
    ("alexnet_owt", None, 714.2e6),  # 224, torchvision
]


@pytest.mark.parametrize("name, size, expected", MACS)
def test_macs_within_0_1_percent(models, name, size, expected):
  report = cost.analyze_model(models.get(name, size))
  assert abs(report.macs - expected) / expected < 0.001


def test_report_fields_and_totals(models):
  report = cost.analyze_model(models.get("squeezenet_v1_0", 224))
  d = report.to_dict(density=0.334, bits=8)
  assert d["model"] == "squeezenet_v1_0" and d["input_size"] == [224, 224, 3]
  assert d["params"] == 1_248_424 and d["macs"] == report.macs
  by_name = {l["name"]: l for l in d["layers"]}
  conv1 = by_name["conv1"]
  assert conv1["output_shape"] == [109, 109, 96] and conv1["params"] == 14_208
  assert conv1["macs"] == 109 * 109 * 96 * 7 * 7 * 3
  assert conv1["weight_bytes"] == 4 * 14_208 and conv1["activation_bytes"] == 4 * 109 * 109 * 96
  moved = conv1["input_bytes"] + conv1["weight_bytes"] + conv1["activation_bytes"]
  assert conv1["intensity"] == pytest.approx(conv1["macs"] / moved, rel=1e-3)
  assert sum(l["params"] for l in d["layers"]) == d["params"]
  assert "conv1_relu" not in by_name  # fused element-wise layers are listed only on request
  assert "conv1_relu" in {l["name"] for l in report.to_dict(all_layers=True)["layers"]}
  assert d["sizes"]["fp32"] == 4 * 1_248_424 and d["sizes"]["int8"] == 1_248_424
  assert d["sizes"]["fp16"] == 2 * 1_248_424


def test_deep_compression_accounting(models):
  report = cost.analyze_model(models.get("squeezenet_v1_0_caffe", 227))
  assert len(report.kernel_and_bias) == 26  # conv1, 8 x 3 fire convs, conv10
  kernels = sum(k for _, k, _ in report.kernel_and_bias)
  biases = sum(b for _, _, b in report.kernel_and_bias)
  assert kernels + biases == 1_248_424 and biases == 3_976
  dc8 = report.sizes(density=0.334, bits=8)["deep_compression"]
  # The release file (8-bit codes, 4-bit gaps, 256-entry codebooks) is 675,763 bytes; this count
  # leaves out the filler entries that bridge long gaps, so it is a little below that.
  assert 0.97 * 675_763 < dc8["total"] < 675_763
  dc6 = report.sizes(density=0.334, bits=6)["deep_compression"]
  assert 530_000 < dc6["total"] < 560_000  # REFERENCE.md section 3: "~550,000 bytes"


def test_storage_checks():
  assert storage.size_bytes(10, 6) == 8
  with pytest.raises(SqznetError, match="density=1.5"):
    storage.deep_compression_bytes([(100, 1)], 1.5, 8)
  with pytest.raises(SqznetError, match="bits=0"):
    storage.deep_compression_bytes([(100, 1)], 0.5, 0)


@pytest.mark.parametrize("c, c_prime, n", [(1, 1, 5), (8, 4, 7), (64, 64, 14)])
def test_five_by_five_vs_two_3x3(c, c_prime, n):
  closed = cost.five_by_five_vs_two_3x3(c, c_prime, n)
  assert closed["conv5x5_macs"] == 25 * c * n * n
  assert closed["two_3x3_macs"] == 9 * c * n * n + 9 * c * c_prime * n * n
  one, two = cost.kernel_example_models(c, c_prime, n)
  assert cost.analyze_model(one).macs == closed["conv5x5_macs"]
  assert cost.analyze_model(two).macs == closed["two_3x3_macs"]
  assert one.count_params() == closed["conv5x5_weights"]
  assert two.count_params() == closed["two_3x3_weights"]


def test_grouped_conv_macs_halve(models):
  conv2 = {l.name: l for l in cost.analyze_model(models.get("alexnet")).layers}["conv2"]
  assert conv2.macs == 27 * 27 * 256 * 5 * 5 * 48  # groups 2: each filter sees 48 of 96 channels


def test_analyze_rejects_bad_input_size():
  with pytest.raises(SqznetError, match="input_size=0"):
    cost.analyze("squeezenet_v1_1", input_size=0)


def test_sparsity_of_the_pretrained_release(pretrained):
  report = cost.analyze_model(pretrained)
  assert report.kernel_weights == 1_248_424 - 3_976
  assert round(report.kernel_zeros / report.kernel_weights, 3) == 0.666  # REFERENCE.md section 7
  rows = {r["layer"]: r for r in report.sparsity_rows()}
  assert len(rows) == 26 and rows["conv10"]["sparsity"] > 0.75 and rows["fire2_squeeze1x1"]["sparsity"] < 0.05
  assert report.to_dict()["kernel_sparsity"] == round(report.kernel_zeros / report.kernel_weights, 4)
