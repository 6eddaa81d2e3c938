"""The settings table (docs/configuration.md) and the declarations in gateway/config.py name the same settings,
with the same defaults: each declared variable has a row, each row names a declared variable (or one the gateway
does not read as a setting, listed here with why), and a default the row shows parses to the declared one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import Setting, Settings, declared_defaults

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (?P<names>.+?) \| (?P<default>.+?) \| (?P<doc>.+) \|$")

NOT_SETTINGS = {  # rows of the table that are not fields of Settings
    "YIWANG_SECRET_*": "a family: bundles' secrets, read by name through their `env:` references",
    "YIWANG_REQUIRE_SERVICES": "read by the test suite (tests/conftest.py), not the gateway",
    "YIWANG_UNSAFE_FERRY_CRASH_AT": "read from the environment by the ferry's stations (adapters/kinds/ferry/"
                                    "station.py) on both sides of a link, the gateway's and the agent's",
    "YIWANG_TEST_PG_ADMIN_URL": "read by the test suite (tests/conftest.py), not the gateway",
}
DERIVED_DEFAULTS = {  # defaults the table shows as the gateway derives them, not as declared
    "YIWANG_DATABASE_URL": lambda shown: Settings().db_url == shown,  # declared None: SQLite under var_dir
    "YIWANG_CATALOGUE": lambda shown: Settings().catalogue == ROOT / shown,  # the table shows it repo-relative
    "YIWANG_CALENDAR": lambda shown: Settings().calendar == ROOT / shown,
}
UNSET = (None, {}, frozenset())  # declared defaults a row shows in words ("—", "bundle's", "twice the rate")


def _rows() -> list[tuple[list[str], str]]:
    """(the variables a row names, the text of its default column), one per row of the table."""
    lines = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines()
    rows = []
    for line in lines:
        if line.startswith("| `YIWANG_"):
            match = ROW.match(line)
            assert match, line
            rows.append((re.findall(r"`(YIWANG_[A-Z0-9_*]+)`", match["names"]), match["default"]))
    return rows


def test_every_declared_setting_has_a_row_and_every_row_a_declaration() -> None:
    documented = {name for names, _ in _rows() for name in names}
    declared = set(declared_defaults())
    assert declared - documented == set(), "declared in gateway/config.py, missing from docs/configuration.md"
    assert documented - declared - set(NOT_SETTINGS) == set(), "in docs/configuration.md, declared nowhere"
    assert set(NOT_SETTINGS) <= documented  # the exceptions above are still in the table
    assert not set(NOT_SETTINGS) & declared


@pytest.mark.parametrize(("names", "shown"), _rows(), ids=lambda value: str(value)[:40])
def test_the_default_a_row_shows_is_the_declared_one(names: list[str], shown: str) -> None:
    defaults = declared_defaults()
    for name in (name for name in names if name in defaults):
        declared: Setting = defaults[name][0]
        default = defaults[name][1]
        if not shown.startswith("`"):  # said in words: the setting is unset unless given
            assert default in UNSET, (name, shown, default)
            continue
        value = shown.split("`")[1]
        if name in DERIVED_DEFAULTS:
            assert DERIVED_DEFAULTS[name](value), (name, shown)
        else:
            assert declared.parse(name, value) == default, (name, shown, default)
