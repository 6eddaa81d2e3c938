# The two commands of the README: `make demo` and `make test`; `make check` is the inner loop. All build the
# virtualenv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check bench bundle-schema cli-reference clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/yiwang demo

# `make bench` writes bench-report.json (see bench/run.py); `make bench QUICK=1` is the CI smoke run.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(filter-out 0,$(QUICK)),--quick)

# The published bundle schema, generated from the adapter kinds (adapters/bundle_schema.py); a test keeps it current.
bundle-schema: $(STAMP)
	$(BIN)/python -m adapters.bundle_schema --write

# The command tables of docs/cli.md, generated from the typer tree (tests/support/cli_reference.py); a test keeps
# them current.
cli-reference: $(STAMP)
	$(BIN)/python -m tests.support.cli_reference

lint: $(STAMP)
	$(BIN)/lint-imports

# ruff (the rule set in pyproject.toml) and mypy --strict ([tool.mypy]: gateway, adapters, mappings, certstore, ops,
# ferry).
typecheck: $(STAMP)
	$(BIN)/ruff check gateway adapters ops mappings certstore ferry
	$(BIN)/mypy

# The inner loop, in seconds: the import contracts, ruff and mypy, and the unit tests (tests/unit: no database,
# no network, no subprocess), in one process (xdist's start-up costs more than it saves here).
check: lint typecheck
	$(BIN)/pytest -q tests/unit

# Everything (tests/unit, integration, api, faults, e2e) in parallel: pytest-xdist workers, each with databases and
# a RabbitMQ vhost of its own; idle workers take tests from busy ones (worksteal), so a long test does not hold the
# end, and each worker opens with an even share of the long tests (tests/support/schedule.py), so none starts
# last. Three workers on two cores: many tests wait on subprocesses, sleeps and sector delays, and a third worker
# uses that time. `make test PYTEST_WORKERS=0` runs in one process; `PYTEST_ARGS="-k delivery"` goes to pytest.
PYTEST_WORKERS ?= 3
test: lint typecheck
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
