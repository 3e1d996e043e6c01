# Two entry points that set everything up on a machine with only Python:
#   make quickstart   trains CSQ on the bundled digits and evaluates it (offline, CPU, ~2 minutes)
#   make test         runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
WORKDIR ?= runs/quickstart

.PHONY: quickstart test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Marker files record which extras are installed; they are rebuilt when pyproject.toml changes.
$(VENV)/.installed-train: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train,tfds,test]"
	touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e ".[train,tfds,test,bench]"
	touch $@

quickstart: $(VENV)/.installed-train
	$(BIN)/python -m jaxretrieval.train --config configs/quickstart.py --workdir $(WORKDIR)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n 2 $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	@echo "benchmarks are run one by one: $(BIN)/python benchmarks/<name>.py"

clean:
	rm -rf $(VENV) build *.egg-info
