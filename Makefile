# make demo: the main job, offline. make test: the whole suite. Both create .venv if missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sqznet-installed

.PHONY: demo test venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Reinstall when the dependencies change; the package itself is installed editable.
$(STAMP): $(PY) setup.py constraints.txt
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(STAMP)

demo: venv
	$(VENV)/bin/sqznet-analyze --compare=squeezenet_v1_0,squeezenet_v1_1,alexnet,alexnet_owt
	$(VENV)/bin/sqznet-analyze --model=squeezenet_v1_0_caffe --density=0.334 --bits=8

test: venv
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
