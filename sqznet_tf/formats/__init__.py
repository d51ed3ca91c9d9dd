"""What is on disk, as plain data: pure numpy and Python, no TensorFlow.

- `net`: the Deep Compression release's `.net` format (reader and writer).
- `sqz`: this package's `.sqz` container (codec: bytes <-> named arrays plus a config dict).
- `huffman`: canonical Huffman codes for the container.
- `labels`: synset / class-name files.
- `metadata`: the `.sqznet.json` description that travels with weights (`WeightsInfo`).
"""
