"""The gateway's outward interface does not change by accident: the OpenAPI document, the `--help` text of
every command, the settings table (docs/configuration.md) and the bundle schema are compared with snapshots
under tests/data/interface/. A deliberate change rewrites them: `YIWANG_UPDATE_SNAPSHOTS=1 pytest <this file>`,
and the diff is reviewed with the change."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from gateway.bootstrap.app import build_gateway, create_app
from gateway.bootstrap.cli import app as cli_app
from gateway.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "tests" / "data" / "interface"
UPDATE = os.environ.get("YIWANG_UPDATE_SNAPSHOTS") == "1"
HELP_ENV = {"COLUMNS": "120", "TERMINAL_WIDTH": "120", "NO_COLOR": "1", "TERM": "dumb"}


def _compare(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}: write it with YIWANG_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its snapshot {path}"


def test_the_openapi_document_is_as_snapshotted() -> None:
    with tempfile.TemporaryDirectory() as var:
        gateway = build_gateway(Settings(var_dir=Path(var), database_url=f"sqlite:///{var}/yiwang.db",
                                         dispatch_in_process=False))
        try:
            document = create_app(gateway).openapi()
        finally:
            gateway.close()
    _compare("openapi.json", json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def _command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


def test_the_help_of_every_command_is_as_snapshotted() -> None:
    runner = CliRunner()
    pages = []
    for path in _command_paths(get_command(cli_app)):
        result = runner.invoke(cli_app, [*path, "--help"], env=HELP_ENV, terminal_width=120, prog_name="yiwang")
        assert result.exit_code == 0, (path, result.output)
        pages.append(f"$ yiwang {' '.join(path)} --help\n{result.output}")
    _compare("help.txt", "\n".join(pages))


def test_the_settings_table_is_as_snapshotted() -> None:
    rows = [line for line in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `YIWANG_")]
    assert len(rows) > 40
    _compare("settings-table.md", "\n".join(rows) + "\n")


def test_the_bundle_schema_is_as_snapshotted() -> None:
    schema = json.loads((ROOT / "adapters" / "bundle.schema.json").read_text(encoding="utf-8"))
    _compare("bundle.schema.json", json.dumps(schema, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


@pytest.fixture(autouse=True)
def _snapshots_dir() -> None:
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
