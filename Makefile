# batchdrop developer commands. `make test` is what CI runs; `make demo` shows the pipeline locally.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_VERSION := $(shell cat .python-version)
# pyenv's shim honours .python-version; otherwise take the interpreter of that version from PATH.
PYTHON ?= $(shell command -v python$(PYTHON_VERSION) || command -v python3)
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
BIN := $(VENV)/bin
PIP_QUIET := --quiet --disable-pip-version-check
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help dev lint typecheck cfn-lint sam-validate sam-build checkov unit integration contract soak soak-ci pytest test demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# A stamp per requirements file makes `make dev` idempotent and quick when nothing changed.
$(VENV)/.installed: requirements/dev.txt layers/batchdrop/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip
	$(BIN)/pip install $(PIP_QUIET) -r requirements/dev.txt
	$(BIN)/pip install $(PIP_QUIET) --no-deps --editable .
	touch $@

$(SAM_VENV)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(SAM_VENV)/bin/pip install $(PIP_QUIET) -r requirements/sam.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(CHECKOV_VENV)/bin/pip install $(PIP_QUIET) -r requirements/checkov.txt
	touch $@

dev: $(VENV)/.installed $(SAM_VENV)/.installed ## create both virtualenvs

lint: $(VENV)/.installed ## ruff lint and format check, and the layer's import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=layers/batchdrop $(BIN)/lint-imports --no-logo --no-cache

# The unit tests' fakes are checked too: that is what holds them to the ports they stand in for.
typecheck: $(VENV)/.installed ## mypy --strict: the layer, the handlers, the local stack, the fakes
	$(BIN)/mypy layers/batchdrop/batchdrop functions/submit/app.py functions/poll/app.py local \
	  tests/unit/fakes

cfn-lint: $(VENV)/.installed ## cfn-lint template.yaml
	$(BIN)/cfn-lint template.yaml

sam-validate: $(SAM_VENV)/.installed ## sam validate --lint
	$(SAM_VENV)/bin/sam validate --lint

# sam build runs pip for the layer; the runtime's Python must come first on PATH.
sam-build: $(SAM_VENV)/.installed ## sam build (layer and both functions)
	PATH="$(dir $(realpath $(PYTHON))):$$PATH" $(SAM_VENV)/bin/sam build --cached

# Every skip is declared next to its resource (Metadata: checkov: skip:) with the reason.
checkov: $(CHECKOV_VENV)/.installed ## checkov on template.yaml (zero failed checks)
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --quiet --compact

# The few unit tests marked slow (large inputs, a subprocess) run in `make test`, not `make unit`.
# Bytecode is cached even where the environment says not to (PYTHONDONTWRITEBYTECODE): compiling
# the code and rewriting the tests' asserts afresh would add seconds to every run. The spill
# tests write thousands of small files, kept in memory (tmpfs) where the system has one.
UNIT_TMPDIR := $(or $(wildcard /dev/shm),$(TMPDIR),/tmp)
unit: $(VENV)/.installed ## unit tests (fast: not those marked slow)
	PYTHONDONTWRITEBYTECODE= TMPDIR=$(UNIT_TMPDIR) $(BIN)/pytest tests/unit -m "not slow"

integration: $(VENV)/.installed ## moto + simulator tests
	$(BIN)/pytest tests/integration

contract: $(VENV)/.installed ## the openai SDK against the simulator
	$(BIN)/pytest tests/contract

# The soak runs JOBS jobs as shards of at most SHARD_JOBS, each on a stack and a seed of its own
# (SEED, SEED+1, ...), one per core at a time (tests/soak/shards.py). SEED defaults to one from
# the clock, printed first, so that repeated soaks explore; a failing shard prints the command
# that replays exactly it.
SEED ?= $(shell date +%s)
JOBS ?= 200
SHARD_JOBS ?= 100
soak: $(VENV)/.installed ## seeded fault soak (SEED=n replays a run, JOBS=5000 runs longer)
	@echo "soak: SEED=$(SEED) JOBS=$(JOBS) SHARD_JOBS=$(SHARD_JOBS)"
	$(BIN)/python -m tests.soak.shards --seed $(SEED) --jobs $(JOBS) --shard-jobs $(SHARD_JOBS)

# `make test`'s soak: 200 jobs as two fixed-seed shards of 100, so that both cores work.
soak-ci: $(VENV)/.installed ## the soak as make test runs it (seeds 11 and 12, 100 jobs each)
	$(MAKE) --no-print-directory soak SEED=11 JOBS=200 SHARD_JOBS=100

# Spread over every core (pytest-xdist): CI's two cores halve the suite's time.
pytest: $(VENV)/.installed ## every test, then the soak
	$(BIN)/pytest --ignore=tests/soak -n auto
	$(MAKE) --no-print-directory soak-ci

test: lint typecheck cfn-lint sam-validate sam-build checkov pytest ## everything CI checks

demo: $(VENV)/.installed ## run the whole pipeline locally (moto + the OpenAI simulator)
	$(BIN)/python -m local.demo

# matplotlib only draws the benchmark charts; it goes into the dev venv under its own stamp.
$(VENV)/.bench-installed: $(VENV)/.installed requirements/bench.txt
	$(BIN)/pip install $(PIP_QUIET) -r requirements/bench.txt
	touch $@

bench: $(VENV)/.bench-installed ## benchmarks (moto + simulator) -> docs/benchmarks.md
	@test -f .aws-sam/build/template.yaml || $(MAKE) sam-build
	$(BIN)/python -m benchmarks

clean: ## remove build output and virtualenvs
	rm -rf .aws-sam $(VENV) $(SAM_VENV) $(CHECKOV_VENV) demo-output
