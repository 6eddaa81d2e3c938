# The two commands of the README: `make demo` and `make test`; `make check` is the inner loop. All build the
# virtualenv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check bench bundle-schema cli-reference wheelhouse browser screenshots clean

# Third-party assets, fetched at install from the npm registry, each pinned by version and the tarball's sha512
# (`npm view NAME@VERSION dist.integrity`), never committed (deploy/fetch-npm-asset checks the pin). Each is
# fetched again only when absent or when its pin changes (a new pin is a new stamp under var/asset-pins/). The
# virtualenv's stamp depends on them order-only: a fresh fetch does not reinstall the virtualenv.
HTMX_VERSION := 2.0.8
HTMX_INTEGRITY := sha512-fm297iru0iWsNJlBrjvtN7V9zjaxd+69Oqjh4F/Vq9Wwi2kFisLcrLCiv5oBX0KLfOX/zG8AUo9ROMU5XUB44Q==
HTMX := ops/console/static/vendor/htmx.min.js
AXE_VERSION := 4.10.3
AXE_INTEGRITY := sha512-Xm7bpRXnDSX2YE2YFfBk2FnF0ep6tmG7xPh8iHee8MIcrgq762Nkce856dYtJYLkuIoYZvGfTs/PbZhideTcEg==
AXE := var/test-assets/axe.min.js
ASSETS := $(HTMX) $(AXE)
# $(call pin,NAME,VERSION,INTEGRITY): the pin's stamp file (base64's / and = do not go in a file name)
pin = var/asset-pins/$(1)@$(2)-$(subst /,_,$(subst =,,$(3)))

var/asset-pins/%:
	mkdir -p $(@D) && touch '$@'

# the console's htmx (runtime: it ships in the wheel)
$(HTMX): $(call pin,htmx.org,$(HTMX_VERSION),$(HTMX_INTEGRITY))
	deploy/fetch-npm-asset htmx.org $(HTMX_VERSION) $(HTMX_INTEGRITY) dist/htmx.min.js $@

# axe-core for the browser tests' accessibility check (tests/support/browser.py): test-only
$(AXE): $(call pin,axe-core,$(AXE_VERSION),$(AXE_INTEGRITY))
	deploy/fetch-npm-asset axe-core $(AXE_VERSION) $(AXE_INTEGRITY) axe.min.js $@

$(STAMP): pyproject.toml | $(ASSETS)
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

# An offline wheelhouse for a 前置机 with no package index (README, "前置机: running the ferry agent"): the project
# and every runtime dependency (no test extras) as wheels for this platform, with INSTALL.txt and SHA256SUMS; then
# INSTALL.txt's own command is run against it, in a throwaway virtualenv with every index and pip setting turned
# off (PIP_CONFIG_FILE=/dev/null, --isolated), and the agent's command started from it, so a wheel missing from the
# folder fails here, not behind the gap.
# tests/unit/test_ferry_deployment.py holds this recipe, INSTALL.txt and the README to the same command.
WHEELHOUSE := dist/wheelhouse
wheelhouse: $(STAMP)
	rm -rf $(WHEELHOUSE) dist/wheelhouse-check
	$(BIN)/pip wheel --quiet --wheel-dir $(WHEELHOUSE) .
	cp deploy/wheelhouse/INSTALL.txt $(WHEELHOUSE)/INSTALL.txt
	$(BIN)/python -c "import platform, sysconfig; print(f'made for: CPython {platform.python_version()} on {sysconfig.get_platform()}')" >> $(WHEELHOUSE)/INSTALL.txt
	cd $(WHEELHOUSE) && sha256sum *.whl > SHA256SUMS
	cd dist && $(PYTHON) -m venv wheelhouse-check && PIP_CONFIG_FILE=/dev/null wheelhouse-check/bin/pip --isolated install --quiet --no-index --find-links wheelhouse yiwang
	dist/wheelhouse-check/bin/yiwang ferry serve --help > /dev/null && dist/wheelhouse-check/bin/yiwang --version
	rm -rf dist/wheelhouse-check
	du -sh $(WHEELHOUSE)

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

# The browser the browser tests drive (tests/support/browser.py): Debian's chromium and the CJK font its pages
# render Chinese with, installed with apt-get where missing (as root; otherwise it says what to run).
browser:
	deploy/install-browser

# The browser tests' screenshots (var/screenshots/, written by tests/support/browser.py `screenshot`) into the
# documentation.
screenshots:
	@ls var/screenshots/*.png > /dev/null 2>&1 || { echo "no screenshots in var/screenshots/: run the browser tests first (make test)" >&2; exit 1; }
	mkdir -p docs/screenshots
	cp var/screenshots/*.png docs/screenshots/

clean:
	rm -rf $(VENV) var dist .pytest_cache
