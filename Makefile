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

test: venv browser
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

# Debian's chromium for tests/test_site_browser.py (Playwright drives it; it downloads no browser). Installed
# when missing and root (as CI runs); otherwise, or when apt-get fails, the browser tests skip with the reason.
.PHONY: browser
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "browser: no $(CHROMIUM) and not root with apt-get: the browser tests will be skipped"; exit 0; fi; \
	echo "browser: installing Debian's chromium (apt-get)"; log=$$(mktemp); export DEBIAN_FRONTEND=noninteractive; \
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-liberation; } \
	    >"$$log" 2>&1 </dev/null; then \
	  tail -n 5 "$$log"; echo "browser: apt-get could not install chromium: the browser tests will be skipped"; fi; \
	rm -f "$$log"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/snakemake --lint

# Re-pin requirements.lock from the current venv (after changing pyproject.toml dependencies). gfootball (built by
# `make gfootball`, never from the lock) stays out.
lock: venv
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip freeze --all --exclude-editable | grep -v -E "^(pip|gfootball)==" | sed -e 's/^torch==2.13.0+cpu$$/torch==2.13.0/' > requirements.lock

clean:
	rm -rf results site .snakemake

# --- Scale-out: Slurm profile, a one-node test cluster, container images -----------------------
# See README "Running on a Slurm cluster". cluster-*, smoke-slurm, image* and smoke-container need
# root (they install Debian packages and start daemons or build images).
SNAKEMAKE_PROFILES ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/snakemake

.PHONY: profiles cluster-up cluster-down smoke-slurm image image-cuda smoke-container

# Named profiles for this checkout: `snakemake --profile slurm` and `--profile coopbench-local`
# (links into ~/.config/snakemake; an existing profile directory of that name is left alone).
profiles:
	@mkdir -p "$(SNAKEMAKE_PROFILES)"
	@for entry in slurm:slurm coopbench-local:default; do \
	  dst="$(SNAKEMAKE_PROFILES)/$${entry%%:*}"; src="$(abspath workflow/profiles)/$${entry#*:}"; \
	  if [ -e "$$dst" ] && [ ! -L "$$dst" ]; then echo "$$dst exists and is not a link: left alone (use --profile $$src)"; \
	  else ln -sfn "$$src" "$$dst" && echo "$$dst -> $$src"; fi; \
	done

# A real one-node Slurm cluster on this machine (Debian's slurm-wlm and munge).
cluster-up:
	.ci/slurm/start-cluster.sh

cluster-down:
	.ci/slurm/stop-cluster.sh

# What CI runs: smoke on the cluster vs locally, and a scancel'ed job that must resume.
smoke-slurm: venv
	.ci/slurm/smoke-on-slurm.sh

# The runtime images (podman; Apptainer .sif too where apptainer is installed).
image:
	containers/build.sh cpu

image-cuda:
	containers/build.sh cuda

# Build the CPU image and run the smoke suite inside it; compare with a local run.
smoke-container: venv
	containers/smoke-in-container.sh

# Google Research Football, built from source into the venv (heavy: not part of `venv`, `test` or CI).
include mk/gfootball.mk
