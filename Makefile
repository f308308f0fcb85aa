# revisit: `make demo` and `make test` install what is missing, then do their job.
SHELL := /bin/bash
CACHE_DIR ?= $(HOME)/.cache/revisit
VENV ?= $(CACHE_DIR)/venv
PY := $(VENV)/bin/python
SERVICE_DIRS := common models catalog preprocess inference store cli
export PYTHONPATH := $(subst $(eval) ,:,$(addprefix $(CURDIR)/services/,$(SERVICE_DIRS)))
export REVISIT_CACHE_DIR := $(CACHE_DIR)
REVISIT := $(PY) -m revisit_cli
#: Python checked by ruff: the services, tests and the generators of proto, docker, k8s, Grafana
PY_SOURCES := services tests proto docker k8s infra/grafana

.PHONY: help install demo down status test test-fast test-faults lint format typecheck rules proto bench lock

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## install what is missing (Debian packages, cached venv, model files)
	@REVISIT_VENV=$(VENV) bash infra/install.sh
	@$(REVISIT) models build

demo: install ## start the embedded stack and services, feed the sample passes, show the indicators
	$(REVISIT) demo

down: ## stop the stack and the services; leaves no process behind
	@if [ -x $(PY) ]; then $(REVISIT) stack down; fi

status: ## what is running, on which port
	@$(REVISIT) stack status

test: install lint typecheck rules ## lint, types, rules, unit, integration and end-to-end tests
	$(PY) proto/generate.py --check
	$(PY) -m pytest --ignore=tests/bench

test-fast: install ## unit tests only (no Kafka, PostgreSQL or Triton)
	$(PY) -m pytest -m "not integration and not e2e"

test-faults: install ## fault injection: 50 trials (SIGKILL, Kafka/PostgreSQL/Triton restarts, read-only payload store) and their table
	REVISIT_FAULT_TRIALS=50 $(PY) -m pytest -m faults tests/faults -s -p no:cacheprovider

lint: install ## ruff format check and lint
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/ruff check $(PY_SOURCES)

format: install ## ruff format and autofix
	$(VENV)/bin/ruff format $(PY_SOURCES)
	$(VENV)/bin/ruff check --fix $(PY_SOURCES)

rules: install ## promtool: check the Prometheus rules and run their unit tests
	promtool check rules infra/prometheus/rules/*.yml
	promtool test rules infra/prometheus/tests/*.yml

typecheck: install ## mypy --strict on services/
	$(VENV)/bin/mypy services

proto: install ## regenerate the Python code of proto/
	$(PY) proto/generate.py

bench: install ## benchmarks, as ratios against a baseline run side by side
	$(PY) -m pytest tests/bench -q -s -p no:cacheprovider -o python_files="test_bench_*.py"

lock: ## re-resolve requirements.in into requirements.lock (needs the network)
	rm -rf $(CACHE_DIR)/lock-venv && python3.11 -m venv $(CACHE_DIR)/lock-venv
	$(CACHE_DIR)/lock-venv/bin/pip install -q -r requirements.in
	{ head -2 requirements.lock; $(CACHE_DIR)/lock-venv/bin/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
