"""Pruning on tfmot: per-layer targets, Dense-Sparse-Dense training, sensitivity analysis."""
