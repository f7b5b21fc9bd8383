# provider-events — the two commands: `make demo` (the main job) and `make test`.
#
# Every target runs in the project virtualenv .venv (created by dev/install-venv.sh with the
# first Python >= 3.11 on PATH, or PYTHON=...): nothing is installed into the interpreter you
# started with, and each clone runs its own code. Installs run again only when pyproject.toml
# changes; their output goes to .dev/logs/install.log.
#
# INSTALLER=uv (default) installs uv from PyPI into .venv and lets it install the rest;
# INSTALLER=pip uses pip alone. Measured on this project (fresh venv, 2 loaded cores):
# see docs/install.md.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV
SERVICES ?= $(or $(PROVIDER_EVENTS_DEV_SERVICES),dev/services.sh)
# Load the service addresses printed by `dev/services.sh env` into the recipe's environment.
WITH_SERVICES = set -a; eval "$$($(SERVICES) env)"; set +a;

.PHONY: install venv deps services services-down test test-unit lint schemas demo bench chaos chaos-cluster clean distclean

install: ## create .venv and install the package with its dev tools (editable) into it
	@dev/install-venv.sh

venv: install

deps: ## what the tests use besides Kafka/PostgreSQL/kcat (Prometheus, Chromium, Claude Code)
	@dev/install-prometheus.sh
	@dev/install-chromium.sh
	@dev/install-claude-code.sh >/dev/null

services: ## start real Kafka (KRaft, 127.0.0.1:29092; KAFKA_BROKERS=3: a 3-broker cluster) and PostgreSQL; print the export lines
	@$(SERVICES) up

services-down: ## stop them
	@$(SERVICES) down

lint: install
	@$(PY) -m ruff check src agents scripts tests benchmarks examples conftest.py
	@$(PY) -m ruff format --check src agents scripts tests benchmarks examples conftest.py
	@$(PY) -m mypy

schemas: install ## regenerate schemas/ from the models
	@$(PY) -m provider_events.cli schema --write schemas

test: install deps ## everything: lint, unit and integration tests on real Kafka and PostgreSQL
	@$(SERVICES) up >/dev/null
	@status=0; \
	$(WITH_SERVICES) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	$(MAKE) --no-print-directory lint || status=1; \
	[ $$status -eq 0 ] || status=1; exit $$status

test-unit: install ## fast tests, no services
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: install ## a synthetic week of selections, then stats, recommendations and an HTML report
	@$(PY) -m provider_events.cli demo $(DEMO_ARGS)

bench: install ## side-by-side benchmarks, printed as ratios
	@$(SERVICES) up >/dev/null
	@dev/install-ccusage.sh >/dev/null
	@$(WITH_SERVICES) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m benchmarks $(BENCH_ARGS)

chaos: install ## fault-injection suite (long): on one broker, then on a 3-broker cluster
	@KAFKA_BROKERS=1 $(SERVICES) up >/dev/null
	@$(WITH_SERVICES) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -m "slow and not cluster" tests/chaos $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory chaos-cluster

chaos-cluster: install ## the cluster's fault scenarios (KAFKA_BROKERS=3), then back to one broker
	@KAFKA_BROKERS=3 $(SERVICES) up >/dev/null
	@status=0; $(WITH_SERVICES) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -m "slow and cluster" tests/chaos $(PYTEST_ARGS) \
	  || status=$$?; KAFKA_BROKERS=1 $(SERVICES) up >/dev/null; exit $$status

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache artifacts

distclean: clean ## also remove the virtualenv
	rm -rf $(VENV)
