"""Each import contract in pyproject.toml fails when broken: a copy of the tree gets one forbidden import (or one
module placed in no layer) and `lint-imports` must name that contract BROKEN. A contract that cannot fail would
let the layers rot unnoticed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "adapters", "mappings", "certstore", "ops", "ferry")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# contract name (as in pyproject.toml) → (module file to change, the line that breaks it)
BREAKS: dict[str, tuple[str, str]] = {
    "mappings and certstore import nothing of ours": ("mappings/engine.py", "import gateway.config"),
    "adapters may import mappings and certstore only": ("adapters/__init__.py", "import gateway.config"),
    "the far-side agent never imports the gateway or ops (it runs on the 前置机, behind the gap)": (
        "ferry/config.py", "import gateway.config"),
    "the far-side agent uses adapters, certstore and mappings through their public API (their __init__)": (
        "ferry/bundles.py", "import adapters.registry"),
    "the gateway reaches the far-side agent only from its composition root and `yiwang ferry`; ops never": (
        "ops/readiness.py", "import ferry"),
    "adapter kinds never import one another (what they share is adapters.kinds.common)": (
        "adapters/kinds/rest/adapter.py", "import adapters.kinds.soap.adapter"),
    "gateway and ops use adapters, certstore and mappings through their public API (their __init__)": (
        "gateway/sectors/delivery.py", "import adapters.registry"),
    "only the composition root (gateway.bootstrap) reaches ops": ("gateway/cases/service.py", "import ops.dead_letters"),
    "gateway in layers, top to bottom: each imports only the layers below it (a module placed nowhere fails)": (
        "gateway/cases/service.py", "import gateway.http.errors"),
    "nothing outside the gateway imports its composition root": ("ops/readiness.py", "import gateway.bootstrap.app"),
    "routers never import each other": ("gateway/http/routers/cases.py", "import gateway.http.routers.audit"),
    "CLI groups never import each other (what they share is gateway.cli.common and gateway.cli.output)": (
        "gateway/cli/keys.py", "import gateway.cli.audit"),
    "the application core (sectors ... domain) has no web framework, CLI library or broker client": (
        "gateway/catalogue/matters.py", "import fastapi"),
    "the domain core is plain Python: no I/O libraries": ("gateway/domain/case.py", "import sqlalchemy"),
}


def _contract_names() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]]


def _copy_tree(to: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", to / "pyproject.toml")
    return to


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy, not the installed tree, is what grimp reads
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120)


def test_every_contract_has_a_way_to_break_it() -> None:
    assert sorted(_contract_names()) == sorted(BREAKS), "a contract was added or renamed: add its break here"


def test_the_untouched_copy_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("contract", sorted(BREAKS))
def test_a_forbidden_import_breaks_its_contract(contract: str, tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    module, line = BREAKS[contract]
    with (tree / module).open("a", encoding="utf-8") as source:
        source.write(f"\n{line}  # the forbidden import this test adds\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in " ".join(result.stdout.split()), result.stdout


def test_a_module_placed_in_no_layer_breaks_the_layers_contract(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "gateway" / "stray.py").write_text('"""A module nobody placed in a layer."""\n', encoding="utf-8")
    result = _lint(tree)
    assert result.returncode != 0
    assert "stray" in result.stdout, result.stdout
