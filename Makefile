# The two commands of the README: `make demo` and `make test`. Both build the virtualenv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check bench bundle-schema clean

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

lint: $(STAMP)
	$(BIN)/lint-imports

# ruff (the rule set in pyproject.toml) and mypy --strict ([tool.mypy]: gateway, adapters, mappings, certstore, ops).
typecheck: $(STAMP)
	$(BIN)/ruff check gateway adapters ops mappings certstore
	$(BIN)/mypy

# The inner loop: lint and type check. TODO: add the unit tests once tests/unit/ exists.
check: lint typecheck

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
