"""Parameters, compute and memory traffic, per layer; model size at a bit width and density."""

from sqznet_tf.analysis.cost import (CostReport, LayerCost, analyze, analyze_model, compare,
                                     five_by_five_vs_two_3x3, kernel_example_models, layer_macs)
from sqznet_tf.analysis.storage import deep_compression_bytes, size_bytes

__all__ = ["CostReport", "LayerCost", "analyze", "analyze_model", "compare", "deep_compression_bytes",
           "five_by_five_vs_two_3x3", "kernel_example_models", "layer_macs", "size_bytes"]
