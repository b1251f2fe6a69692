# Two commands on a fresh machine: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run evaluate test lint bench bench-alibi example-data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(RUN_STAMP)

## run: the daemon on the bundled rules.yaml, with demo samples that drift after a minute
run: $(RUN_STAMP)
	$(BIN)/mlwatchdog demo --config rules.yaml

## evaluate: one-off drift table of the bundled example data (reference vs current)
evaluate: $(RUN_STAMP)
	$(BIN)/mlwatchdog evaluate --reference examples/data/reference.parquet --current examples/data/current.parquet

## test: lint, type-check the pure core, then the whole test suite
test: $(DEV_STAMP) lint
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check mlwatchdog tests benchmarks examples
	$(BIN)/ruff format --check mlwatchdog tests benchmarks examples
	$(BIN)/mypy mlwatchdog/detectors mlwatchdog/core mlwatchdog/rules

## bench: drift benchmark against the scipy loop, evidently and the numpy floor
bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/drift_bench.py

## bench-alibi: the same benchmark in a second venv that adds alibi-detect (it needs numpy < 2)
bench-alibi:
	$(PYTHON) -m venv .venv-alibi
	.venv-alibi/bin/python -m pip install --quiet -e '.[dev]' alibi-detect
	.venv-alibi/bin/python benchmarks/drift_bench.py

example-data: $(RUN_STAMP)
	$(BIN)/python examples/make_data.py

clean:
	rm -rf $(VENV) .venv-alibi .demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
