# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# Installs are exactly uv.lock's versions. uv comes from PATH, or is bootstrapped once with
# pip into .uv/ (pinned). `uv lock` after changing dependencies in pyproject.toml.
UV_VERSION = 0.13.8
UV     ?= $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
SYNC    = UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --python $(PYTHON) --quiet --compile-bytecode
# Bytecode for our own packages too (the dependencies get theirs at install): where
# PYTHONDONTWRITEBYTECODE is set, as on this machine class, a process without .pyc files
# compiles every module it imports, each time it starts (the API: 3.4 s and +12 MB RSS
# against 1.1 s). Stale files are only recompiled; a stale .pyc is never used.
COMPILE = $(BIN)/python -m compileall -q -j 0 app rules workers sandbox_ehr benchmarks
DEV     = $(VENV)/.installed-dev
DEMO    = $(VENV)/.installed-demo

.PHONY: demo test lint format bench bench-scale faults clean venv

venv: $(DEV)

.uv/bin/uv:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .uv uv==$(UV_VERSION)

# Everything the tests, linters and benchmarks need (re-synced when the lock changes).
$(DEV): pyproject.toml uv.lock Makefile | $(UV)
	$(SYNC) --extra dev
	touch $@

# Just the server and the sandbox EHR: the quickest path to a first $find. --inexact
# keeps whatever a `make test` added.
$(DEMO): pyproject.toml uv.lock Makefile | $(UV)
	$(SYNC) --extra sandbox --inexact
	touch $@

# `make demo EHR=plain-r4`: the same against a generic FHIR R4 server (no $prefetch, polling)
EHR ?= sandbox
DEMO_ARGS ?=
demo: $(DEMO)
	$(COMPILE)
	$(BIN)/slotsync demo --ehr-profile $(EHR) $(DEMO_ARGS)

test: $(DEV)
	$(COMPILE)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy app rules workers benchmarks sandbox_ehr

format: $(DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every part 3 times (median and spread), the chart beside the result, and the README's
# performance blocks from the newest full result (bench-readme). About an hour at the
# default sizes; `make bench BENCH_ARGS="--sizes 10000 --quick"` tries it out in minutes.
STAMP      := $(shell date -u +%Y-%m-%dT%H%M)
BENCH_OUT  ?= benchmarks/results/bench-$(STAMP).json
BENCH_REPEAT ?= 3
BENCH_ARGS ?=
bench: $(DEV)
	@command -v wrk >/dev/null || { echo "make bench needs wrk (apt-get install wrk): without it the find benchmark's clients are Python ones, which take the cores the API is measured on"; exit 1; }
	$(COMPILE)
	$(BIN)/python -m benchmarks all --repeat $(BENCH_REPEAT) $(BENCH_ARGS) --out $(BENCH_OUT)
	$(BIN)/python -m benchmarks bench-chart --result $(BENCH_OUT)
	$(BIN)/python -m benchmarks bench-readme

# Load and $find at 10M slots (one run, most of an hour, several GB of memory); the README's
# growth curve and chart take its sizes beyond make bench's.
SCALE_SIZES ?= 10000000
# a 10M-slot horizon holds more candidate offers than the offer memo's default bound (2M)
SCALE_ARGS  ?= --offer-memo-max-offers 4000000
SCALE_OUT   ?= benchmarks/results/scale-$(STAMP).json
bench-scale: $(DEV)
	$(COMPILE)
	$(BIN)/python -m benchmarks scale --sizes $(SCALE_SIZES) $(SCALE_ARGS) --out $(SCALE_OUT)
	$(BIN)/python -m benchmarks bench-readme

# Fault suite (about 40 minutes): private PostgreSQL/Redis, sandbox, API, 2 workers, beat.
FAULTS_SIZE ?= 50000
FAULTS_OUT  ?= benchmarks/results/faults-$(STAMP).json
faults: $(DEV)
	$(COMPILE)
	mkdir -p $(dir $(FAULTS_OUT))
	$(BIN)/python -m benchmarks faults --size $(FAULTS_SIZE) --out $(FAULTS_OUT)
	$(BIN)/python -m benchmarks faults-readme  # the README's table, from the newest two runs

clean:
	rm -rf $(VENV) .uv .slotsync .pytest_cache .ruff_cache
