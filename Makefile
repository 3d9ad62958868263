# Two commands on a fresh machine: `make run` and `make test` set everything up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := data/sample/feature_registry.json
export PARITY_HOME ?= $(CURDIR)/.parity_home

.PHONY: setup data run test ui bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

data: $(SAMPLE)

$(SAMPLE): | $(STAMP)
	$(BIN)/parity data synth --out data/sample --symbols 10 --rows 20000 --seed 42 --if-absent

run: setup data
	$(BIN)/parity run

test: setup data
	$(BIN)/python -m pytest parity_tests -q

ui: setup data
	$(BIN)/parity home >/dev/null
	DAGSTER_HOME=$${DAGSTER_HOME:-$(PARITY_HOME)/dagster} $(BIN)/dagster dev -h 127.0.0.1 -p 3000

bench: setup data
	$(BIN)/python bench/bench_sampling.py
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_repro.py

lint: setup
	$(BIN)/ruff check parity_pipeline parity_tests bench

clean:
	rm -rf $(PARITY_HOME)
