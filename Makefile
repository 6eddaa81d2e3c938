# The two commands of the README: `make demo` and `make test`. Both build the virtualenv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

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

# The suite runs on every core (pytest-xdist; each worker has databases and a RabbitMQ vhost of its own).
# `make test PYTEST_WORKERS=0` runs it in one process; `PYTEST_ARGS="-k delivery"` passes arguments to pytest.
PYTEST_WORKERS ?= auto
test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
