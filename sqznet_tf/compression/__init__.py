"""Deep Compression for SqueezeNet: weight sharing, entropy coding and a compressed container.

- `sharing`: k-means weight sharing of a kernel's non-zero weights (numpy, no training);
- `huffman`: canonical, length-limited Huffman coding of small alphabets;
- `container`: this package's compressed file format (`.sqz`), encoder and decoder;
- `tfmot_ops`: tfmot clustering (with fine-tuning), quantization-aware training and int8 TFLite;
- `pipeline`: prune -> cluster -> encode, as run by `sqznet-compress`.
"""
