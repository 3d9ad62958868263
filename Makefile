# Two commands on a fresh machine: `make run` and `make test` set everything up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := data/sample/feature_registry.json
CHROMIUM := /usr/bin/chromium
# Debian's PostgreSQL server binaries (/usr/lib/postgresql/<major>/bin, the test globs the same
# path); when none is installed, the target is a path that never exists, so the recipe runs.
PG_INITDB := $(firstword $(sort $(wildcard /usr/lib/postgresql/*/bin/initdb)) \
               /usr/lib/postgresql/MAJOR/bin/initdb)
# Every fresh machine installs the same versions: requirements.lock pins each package (with its
# hashes) for CPython 3.11; `make lock` regenerates it from pyproject.toml (docs/deploy.md).
LOCK := requirements.lock
LOCK_EXTRAS := --extra test --extra real --extra postgres --extra cluster
UV := uv==0.13.9
UPGRADE ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PARITY_HOME ?= $(CURDIR)/.parity_home

.PHONY: setup lock data browser postgres redis run test test-fast ui bench lint clean cluster-demo

setup: $(STAMP)

# The locked set first (pip refuses any file whose hash differs), then this package alone.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve after editing pyproject.toml's dependencies (keeps the other pins);
# `make lock UPGRADE=--upgrade` moves every package to the newest version the ranges allow.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(UV)"
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile pyproject.toml $(LOCK_EXTRAS) \
	  --universal --python-version 3.11 --generate-hashes $(UPGRADE) -o $(LOCK)

data: $(SAMPLE)

$(SAMPLE): | $(STAMP)
	$(BIN)/parity data synth --out data/sample --symbols 10 --rows 20000 --seed 42 --if-absent

# The browser test drives Debian's chromium (Playwright gets executable_path; no browser download).
browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

# The PostgreSQL test (parity_tests/e2e/test_postgres.py) runs its own server from these binaries.
postgres: $(PG_INITDB)

$(PG_INITDB):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql

# The Celery broker of the local cluster (parity_pipeline/devcluster.py, the cluster test).
REDIS := /usr/bin/redis-server
redis: $(REDIS)

$(REDIS):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server

# PostgreSQL, Redis and two Celery workers on this machine; the whole pipeline runs on them,
# each worker's steps are printed, and everything is stopped (docs/deploy.md).
cluster-demo: setup data postgres redis
	$(BIN)/python -m parity_pipeline.devcluster --data data/sample

run: setup data
	$(BIN)/parity run

# Two pytest workers (pytest-xdist): most tests are single-threaded model fits. A test file goes
# to one worker whole (--dist loadfile), so its session-scoped pipeline runs are made once.
# (Not --dist loadgroup: xdist 3.8 writes its group suffix to a node attribute pytest 9 no
# longer reads, so groups were silently split across workers.)
PYTEST_ARGS ?=
test: setup data browser postgres redis
	$(BIN)/python -m pytest parity_tests -q -n 2 --dist loadfile --durations=25 $(PYTEST_ARGS)

# Unit and wiring tests only (no whole-pipeline runs, no browser, no PostgreSQL): about 1 minute
# on 2 cores (283 tests, 55 s of pytest, 2026-12-04).
test-fast: setup data
	$(BIN)/python -m pytest parity_tests -q -n 2 --dist loadfile -m "not slow and not browser" \
	  --ignore=parity_tests/e2e/test_browser.py $(PYTEST_ARGS)

# dagster dev stops its webserver and daemon cleanly on SIGINT (Ctrl-C, or `kill -INT` of the
# process group). It is exec'd with SIGINT restored: a job started in the background of a script
# inherits SIGINT ignored, and would otherwise never see the signal.
ui: setup data
	$(BIN)/parity home >/dev/null
	DAGSTER_HOME=$${DAGSTER_HOME:-$(PARITY_HOME)/dagster} exec $(BIN)/python -c \
	  'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
	  $(BIN)/dagster dev -h 127.0.0.1 -p 3000

bench: setup data
	$(BIN)/python bench/bench_sampling.py
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_repro.py

lint: setup
	$(BIN)/ruff check parity_pipeline parity_tests bench
	$(BIN)/mypy

clean:
	rm -rf $(PARITY_HOME)
