# Two commands do all set-up on a fresh machine:
#   make leaderboard   create .venv if missing, install, run the default suite, build site/index.html
#   make test          create .venv if missing, run the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
CORES ?= $(shell nproc)
SUITE ?= default
# Workflow jobs call `coopbench` and `python -m leaderboard`: the venv must come first on PATH.
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv leaderboard test test-fast lint lock clean

# The stamp is rebuilt when the dependency spec or lock changes.
$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

venv: $(VENV)/.installed

leaderboard: venv
	$(BIN)/snakemake --cores $(CORES) --config suite=$(SUITE)
	@echo "leaderboard: file://$(abspath site/index.html)"

test: venv
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

# Re-pin requirements.lock from the current venv (after changing pyproject.toml dependencies).
lock: venv
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip freeze --all --exclude-editable | grep -v "^pip==" | sed -e 's/^torch==2.13.0+cpu$$/torch==2.13.0/' > requirements.lock

clean:
	rm -rf results site .snakemake
