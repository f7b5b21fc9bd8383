# provider-events — the two commands: `make demo` (the main job) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
SERVICES := dev/services.sh
# Load the service addresses printed by `dev/services.sh env` into the recipe's environment.
WITH_SERVICES = set -a; eval "$$($(SERVICES) env)"; set +a;

.PHONY: install services services-down test test-unit lint schemas demo bench chaos clean

install: ## install the package with its dev tools (editable)
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e '.[dev]'

services: ## start real Kafka (KRaft, 127.0.0.1:29092) and PostgreSQL; print the export lines
	@$(SERVICES) up

services-down: ## stop them
	@$(SERVICES) down

lint: install
	@$(PYTHON) -m ruff check src agents scripts tests benchmarks examples
	@$(PYTHON) -m ruff format --check src agents scripts tests benchmarks examples

schemas: install ## regenerate schemas/ from the models
	@$(PYTHON) -m provider_events.cli schema --write schemas

test: install ## everything: lint, unit and integration tests on real Kafka and PostgreSQL
	@$(SERVICES) up >/dev/null
	@$(MAKE) --no-print-directory lint
	@$(WITH_SERVICES) $(PYTHON) -m pytest $(PYTEST_ARGS)

test-unit: install ## fast tests, no services
	@$(PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

demo: install ## publish the guide's example selections and show what arrived
	@$(PYTHON) -m provider_events.cli demo

bench: install ## side-by-side benchmarks, printed as ratios
	@$(SERVICES) up >/dev/null
	@$(WITH_SERVICES) $(PYTHON) -m benchmarks $(BENCH_ARGS)

chaos: install ## fault-injection suite (long)
	@$(SERVICES) up >/dev/null
	@$(WITH_SERVICES) $(PYTHON) -m pytest -m slow tests/chaos $(PYTEST_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache artifacts
