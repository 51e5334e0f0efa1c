# spdlab entry points.  `make demo` and `make test` work on a fresh Debian 12
# machine as root: they install what is missing, build, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SPDLAB := $(VENV)/bin/spdlab
PYTEST_ARGS ?=

.PHONY: all setup deps venv firmware firmware-asan kernels test demo bench lint fmt clean dashboards

all: setup

deps:
	@scripts/deps.sh base prometheus fuzz chromium docker qemu kernel ssh fresh

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.stamp

firmware: deps
	@$(MAKE) -s -C firmware all

firmware-asan: deps
	@$(MAKE) -s -C firmware asan

setup: deps venv firmware

# Every kernel build on both arches, into the shared cache ($$SPDLAB_KERNEL_CACHE).
kernels: setup
	$(PY) -m orchestrator.kernel --all --arch x86_64 --arch arm64 >/dev/null

test: setup firmware-asan kernels lint
	$(PY) -m pytest $(PYTEST_ARGS) tests

demo: setup
	$(SPDLAB) run labs/demo.yaml

bench: setup
	$(PY) bench/run.py --out BENCHMARKS.md

lint: venv
	$(VENV)/bin/ruff check orchestrator tests bench
	$(VENV)/bin/ruff format --check orchestrator tests bench
	$(PY) -m orchestrator.export.dashboard --check

# The Grafana dashboard is generated, never edited by hand.
dashboards: venv
	$(PY) -m orchestrator.export.dashboard

fmt: venv
	$(VENV)/bin/ruff format orchestrator tests bench
	$(VENV)/bin/ruff check --fix orchestrator tests bench

clean:
	$(MAKE) -C firmware clean
	rm -rf $(VENV) .cache
