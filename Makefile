# spdlab entry points.  `make demo` and `make test` work on a fresh Debian 12
# machine as root: they install what is missing, build, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SPDLAB := $(VENV)/bin/spdlab
PYTEST_ARGS ?=

# scripts/deps.sh groups: the demo runs netns gateways only; the tests run every kind,
# the HTML report in Chromium, Prometheus and the fuzz harnesses.
DEMO_GROUPS := base
TEST_GROUPS := base prometheus fuzz chromium docker qemu kernel ssh
ALL_GROUPS := $(TEST_GROUPS) fresh bench

.PHONY: all setup deps deps-demo deps-test venv firmware firmware-asan kernels test test-under-load demo bench \
	lint fmt clean dashboards check-fresh fuzz-campaign

all: setup

deps:
	@scripts/deps.sh $(ALL_GROUPS)

deps-demo:
	@scripts/deps.sh $(DEMO_GROUPS)

deps-test:
	@scripts/deps.sh $(TEST_GROUPS)

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: deps-demo $(VENV)/.stamp

firmware: deps-demo
	@$(MAKE) -s -C firmware all

firmware-asan: deps-demo
	@$(MAKE) -s -C firmware asan

# everything, for working on spdlab
setup: deps venv firmware

# Every kernel build on both arches, into the shared cache ($$SPDLAB_KERNEL_CACHE).
kernels: deps-test venv
	$(PY) -m orchestrator.kernel --all --arch x86_64 --arch arm64 >/dev/null

test: deps-test venv firmware firmware-asan kernels lint
	$(PY) -m pytest --durations=30 $(PYTEST_ARGS) tests

# 5 trials: the fewest at which every comparison's rank test can decide (README "Regressions")
demo: deps-demo venv firmware
	$(SPDLAB) run labs/demo.yaml --trials 5

# Each libFuzzer harness to 3*10^7 executions, one at a time; the minimized corpora land in
# firmware/fuzz/corpus (RELIABILITY.md).  FUZZ_HARNESSES=..., FUZZ_MAX_SECS=... narrow it.
fuzz-campaign: venv
	@scripts/deps.sh fuzz
	@$(MAKE) -s -C firmware fuzz-campaign

# make test N times (default 3) on fresh clones while stress-ng keeps every core busy
test-under-load:
	@scripts/test-under-load.sh $(or $(N),3)

# the install steps on a fresh Debian 12, in a debootstrap chroot (scripts/check-fresh.sh)
check-fresh:
	@scripts/check-fresh.sh

bench: setup
	$(PY) bench/run.py --out BENCHMARKS.md

lint: venv
	$(VENV)/bin/ruff check orchestrator tests bench
	$(VENV)/bin/ruff format --check orchestrator tests bench
	$(PY) -m orchestrator.export.dashboard --check
	$(PY) -m orchestrator.export.result --check

# The Grafana dashboard is generated, never edited by hand.
dashboards: venv
	$(PY) -m orchestrator.export.dashboard

fmt: venv
	$(VENV)/bin/ruff format orchestrator tests bench
	$(VENV)/bin/ruff check --fix orchestrator tests bench

clean:
	$(MAKE) -C firmware clean
	rm -rf $(VENV) .cache
