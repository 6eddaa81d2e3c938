"""The third-party assets' pins (Makefile) are what the docs name and what an install fetches: every pin is a
version and a sha512 integrity, each asset is fetched before the virtualenv's stamp (order-only: a fetch does
not reinstall), the console's htmx lands where the wheel's package-data picks it up and git ignores it, and CI
installs the browser before the tests. Files are read; nothing is fetched here (tests/integration/
test_npm_assets.py runs the fetch)."""

from __future__ import annotations

import re
import tomllib

from tests.support.markdown import ROOT

MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def variable(name: str) -> str:
    found = re.search(rf"^{name} := (\S+)$", MAKEFILE, re.MULTILINE)
    assert found, f"the Makefile sets no {name}"
    return found.group(1)


def test_each_asset_is_pinned_by_version_and_sha512_and_documented() -> None:
    development = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    for prefix, package in (("HTMX", "htmx.org"), ("AXE", "axe-core")):
        assert re.fullmatch(r"\d+\.\d+\.\d+", variable(f"{prefix}_VERSION"))
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", variable(f"{prefix}_INTEGRITY"))
        assert f"`{package}@{variable(f'{prefix}_VERSION')}`" in development


def test_the_assets_are_fetched_before_the_virtualenv_without_reinstalling_it() -> None:
    assert re.search(r"^\$\(STAMP\): pyproject\.toml \| \$\(ASSETS\)$", MAKEFILE, re.MULTILINE)
    assert "ASSETS := $(HTMX) $(AXE)\n" in MAKEFILE


def test_the_consoles_htmx_ships_in_the_wheel_and_is_never_committed() -> None:
    htmx = variable("HTMX")
    assert htmx == "ops/console/static/vendor/htmx.min.js"
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"]
    assert "console/static/**/*" in package_data["ops"]
    assert "ops/console/static/vendor/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_ci_installs_the_browser_before_the_tests() -> None:
    steps = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert steps.index("make browser") < steps.index("make test")
