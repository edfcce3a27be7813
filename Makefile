# CAM Explorer: `make app` starts the app, `make test` runs the whole test suite.
# Both create (or reuse) a local virtual environment in .venv from the pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: app test bench clean-venv

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, torchvision, streamlit, lmfit"
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import pytest, playwright, pytorch_grad_cam, torchcam"
	touch $@

app: $(VENV)/.runtime
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: $(VENV)/.dev
	$(PY) -m pytest

bench: $(VENV)/.dev
	$(PY) -m benchmarks

clean-venv:
	rm -rf $(VENV)
