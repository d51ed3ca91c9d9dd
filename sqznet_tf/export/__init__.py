"""Exports: TF Serving SavedModels with preprocessing, labels and warm-up; TFLite and ONNX; verification."""
