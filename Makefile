# The two commands of the README: `make demo` and `make test`; `make check` is the inner loop. All build the
# virtualenv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint bench clean

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

lint: $(STAMP)
	$(BIN)/lint-imports

# The inner loop, in seconds: the import contracts and the unit tests (tests/unit: no database, no network, no
# subprocess), in one process (xdist's start-up costs more than it saves here).
# Further static checks (type checking, ruff) go in this recipe, before the tests, and `make test` runs them too.
check: lint
	$(BIN)/pytest -q tests/unit

# Everything (tests/unit, integration, api, faults, e2e) in parallel: pytest-xdist workers, each with databases and
# a RabbitMQ vhost of its own; idle workers take tests from busy ones (worksteal), so a long test does not hold the
# end. Three workers on two cores: many tests wait on subprocesses, sleeps and sector delays, and a third worker
# uses that time. `make test PYTEST_WORKERS=0` runs in one process; `PYTEST_ARGS="-k delivery"` goes to pytest.
PYTEST_WORKERS ?= 3
test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
