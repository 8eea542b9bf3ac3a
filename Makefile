# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint format bench faults clean venv

venv: $(STAMP)

# Re-install whenever pyproject.toml changes (creates the virtualenv on first use).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `make demo EHR=plain-r4`: the same against a generic FHIR R4 server (no $prefetch, polling)
EHR ?= sandbox
demo: $(STAMP)
	$(BIN)/slotsync demo --ehr-profile $(EHR)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app rules workers

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks all --out results.json

# Fault suite (about 40 minutes): private PostgreSQL/Redis, sandbox, API, 2 workers, beat.
FAULTS_SIZE ?= 50000
FAULTS_OUT  ?= benchmarks/results/faults-$(shell date -u +%Y-%m-%dT%H%M).json
faults: $(STAMP)
	mkdir -p $(dir $(FAULTS_OUT))
	$(BIN)/python -m benchmarks faults --size $(FAULTS_SIZE) --out $(FAULTS_OUT)
	$(BIN)/python -m benchmarks faults-readme  # the README's table, from the newest two runs

clean:
	rm -rf $(VENV) .slotsync .pytest_cache .ruff_cache
