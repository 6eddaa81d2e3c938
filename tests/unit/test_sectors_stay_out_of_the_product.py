"""A sector joins with a bundle, no code (issue 17): no product module names the three sectors that prove it.

Product modules: every .py file under gateway/, adapters/ (but its simulators and bundles, which are the
sectors' own side), mappings/, certstore/, ops/ and ferry/, but the demo (gateway/bootstrap/demo.py), which plays the
sector teams too: it starts their simulators and registers their bundles, as they would. Names: the sectors'
names as the gateway knows them and their Chinese names. `unemployment` (a matter's word) is not the sector `employment`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("gateway", "adapters", "mappings", "certstore", "ops", "ferry")
SECTORS_OWN = (ROOT / "adapters" / "simulators", ROOT / "adapters" / "bundles")
PLAYS_THE_SECTORS = ROOT / "gateway" / "bootstrap" / "demo.py"
NAMES = re.compile(r"(?<![A-Za-z])(?:employment|e_licence|social_assistance)(?![A-Za-z])"
                   r"|就业和人才服务|电子证照|社会救助")


def product_modules() -> list[Path]:
    return [path for top in PRODUCT for path in sorted((ROOT / top).rglob("*.py"))
            if not any(path.is_relative_to(own) for own in SECTORS_OWN) and path != PLAYS_THE_SECTORS]


def test_no_product_module_names_the_three_signing_sectors() -> None:
    modules = product_modules()
    assert len(modules) > 100  # the walk found the product
    named = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in modules
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if NAMES.search(line)]
    assert named == []


def test_the_pattern_finds_the_names_and_not_the_matters_words() -> None:
    for line in ('SECTOR = "employment"', "e_licence.serve", "social_assistance:", "电子证照库", "# 社会救助"):
        assert NAMES.search(line), line
    for line in ("def _unemployment(", "unemployment_insurance", "就业失业登记"):
        assert not NAMES.search(line), line
