# CAM Explorer: `make app` starts the app, `make test` runs lint, types and the whole test suite.
# Both create (or reuse) a local virtual environment in .venv from the pinned requirements and
# install the project itself into it (editable), with its `cam-explorer` command.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: app test lint types bench clean-venv

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, torchvision, streamlit, lmfit, explorer"
	test -x $(VENV)/bin/cam-explorer
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import pytest, playwright, pytorch_grad_cam, torchcam, mypy"
	test -x $(VENV)/bin/ruff
	touch $@

app: $(VENV)/.runtime
	$(PY) -m streamlit run app.py --server.port $(PORT)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

types: $(VENV)/.dev
	$(PY) -m mypy

test: lint types
	$(PY) -m pytest

bench: $(VENV)/.dev
	$(PY) -m benchmarks

clean-venv:
	rm -rf $(VENV)
