# make demo: the main job, offline. make test: the whole suite. Both create .venv if missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sqznet-installed

.PHONY: demo test venv clean bench-torch-env

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Reinstall when the dependencies change; the package itself is installed editable.
$(STAMP): $(PY) setup.py constraints.txt
	$(PY) -m pip install -q -c constraints.txt -e '.[test,export]'
	touch $@

venv: $(STAMP)

# The main job: Dense -> Sparse -> Dense training of SqueezeNet v1.1 on the embedded MNIST digits
# (offline, about two minutes on 2 cores), then its cost next to AlexNet's.
demo: venv
	rm -rf runs/demo
	$(VENV)/bin/sqznet-dsd --data=embedded --model=squeezenet_v1_1 --batch_norm --image_size=64 \
	    --dense_epochs=3 --sparse_epochs=2 --redense_epochs=2 --sparsity=0.67 --keep_dense=conv1 \
	    --histogram_freq=0 --verbose=2 --model_dir=runs/demo
	$(VENV)/bin/sqznet-analyze --compare=squeezenet_v1_0,squeezenet_v1_1,alexnet,alexnet_owt

test: venv
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=12 tests

# Optional: PyTorch + torchvision for bench/vs_torchvision.py, in their own venv (not a dependency
# of the package). On the project's machines pip takes both from local files.
TORCH_VENV := .venv-torch
bench-torch-env:
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(TORCH_VENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
