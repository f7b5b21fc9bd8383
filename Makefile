# provider-events — the two commands: `make demo` (the main job) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
SERVICES ?= $(or $(PROVIDER_EVENTS_DEV_SERVICES),dev/services.sh)
# Load the service addresses printed by `dev/services.sh env` into the recipe's environment.
WITH_SERVICES = set -a; eval "$$($(SERVICES) env)"; set +a;

.PHONY: install deps services services-down test test-unit lint schemas demo bench chaos clean

install: ## install the package with its dev tools (editable)
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e '.[dev]'

deps: ## Debian packages the tests use besides Kafka/PostgreSQL/kcat (Prometheus, Chromium)
	@dev/install-prometheus.sh
	@dev/install-chromium.sh

services: ## start real Kafka (KRaft, 127.0.0.1:29092) and PostgreSQL; print the export lines
	@$(SERVICES) up

services-down: ## stop them
	@$(SERVICES) down

lint: install
	@$(PYTHON) -m ruff check src agents scripts tests benchmarks examples conftest.py
	@$(PYTHON) -m ruff format --check src agents scripts tests benchmarks examples conftest.py
	@$(PYTHON) -m mypy

schemas: install ## regenerate schemas/ from the models
	@$(PYTHON) -m provider_events.cli schema --write schemas

test: install deps ## everything: lint, unit and integration tests on real Kafka and PostgreSQL
	@$(SERVICES) up >/dev/null
	@status=0; \
	$(WITH_SERVICES) $(PYTHON) -m pytest $(PYTEST_ARGS) || status=$$?; \
	$(MAKE) --no-print-directory lint || status=1; \
	[ $$status -eq 0 ] || status=1; exit $$status

test-unit: install ## fast tests, no services
	@$(PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

demo: install ## a synthetic week of selections, then stats, recommendations and an HTML report
	@$(PYTHON) -m provider_events.cli demo $(DEMO_ARGS)

bench: install ## side-by-side benchmarks, printed as ratios
	@$(SERVICES) up >/dev/null
	@$(WITH_SERVICES) $(PYTHON) -m benchmarks $(BENCH_ARGS)

chaos: install ## fault-injection suite (long)
	@$(SERVICES) up >/dev/null
	@$(WITH_SERVICES) $(PYTHON) -m pytest -m slow tests/chaos $(PYTEST_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache artifacts
