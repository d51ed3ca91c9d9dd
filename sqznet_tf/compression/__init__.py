"""Deep Compression for SqueezeNet: weight sharing, clustering, quantization, and the compression run.

- `sharing`: k-means weight sharing of a kernel's non-zero weights (numpy, no training);
- `cluster`: k-means sharing of a whole model, and tfmot clustering to fine-tune the shared values;
- `quantize`: quantization-aware training (tfmot) and its int8 TFLite model;
- `tflite`: the TFLite converter (float32, float16, dynamic, int8) and runner;
- `container`: a model's weights as `.sqz` tensors (the codec is `sqznet_tf.formats.sqz`);
- `pipeline`: prune -> cluster -> encode (-> int8), as run by `sqznet-compress`.
"""
