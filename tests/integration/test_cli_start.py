"""`yiwang` starts in well under a second: its root imports no web framework, SOAP or XML library, broker or
HTTP client; the common commands load none of them either; `yiwang --help` still lists every command group
with its help, from the root's table; `yiwang --version`; and `make bench`'s `cli` section measures the start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer

from bench import Options
from bench import cli as cli_bench
from bench.run import SECTIONS
from gateway.bootstrap.cli import GROUPS, app, load_group

YIWANG = str(Path(sys.executable).with_name("yiwang"))
HEAVY = ("fastapi", "uvicorn", "zeep", "lxml", "pika", "httpx")
LOADED = f"sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r})"


def test_importing_the_cli_root_loads_none_of_the_heavy_libraries() -> None:
    done = subprocess.run([sys.executable, "-c", f"import gateway.bootstrap.cli, sys; print({LOADED})"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout.replace("'", '"')) == []


def loaded_by(command: tuple[str, ...], var_dir: Path, roots: set[str]) -> list[str]:
    """The modules under `roots` loaded by one command, run as the console script runs it."""
    loaded = var_dir.parent / "loaded.json"
    script = (f"import atexit, json, sys\n"
              f"atexit.register(lambda: open({str(loaded)!r}, 'w').write(json.dumps("
              f"sorted(m for m in sys.modules if m.split('.')[0] in {roots!r}))))\n"
              f"sys.argv = ['yiwang', *{list(command)!r}]\n"
              f"from gateway.bootstrap.cli import main\n"
              f"main()\n")
    env = {**os.environ, "YIWANG_VAR_DIR": str(var_dir)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return list(json.loads(loaded.read_text()))


@pytest.mark.parametrize("command", [("keys", "list"), ("ops", "dead-letters"), ("audit", "verify")])
def test_the_common_commands_load_none_of_the_heavy_libraries(tmp_path: Path, command: tuple[str, ...]) -> None:
    assert loaded_by(command, tmp_path / "var", set(HEAVY)) == []


def test_a_command_on_a_current_database_loads_no_alembic(tmp_path: Path) -> None:
    """Only a database that needs migrating pays for Alembic (and its lock); the first command makes it."""
    assert "alembic" in loaded_by(("keys", "list"), tmp_path / "var", {"alembic"})
    assert loaded_by(("keys", "list"), tmp_path / "var", {"alembic"}) == []


def test_help_lists_every_group_with_its_own_help_and_the_exit_codes() -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([YIWANG, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = {line.strip("│ ").split(" ", 1)[0]: line.strip("│ ").split(" ", 1)[-1].strip()
              for line in done.stdout.splitlines()}
    for name, group in GROUPS.items():
        assert listed.get(name) == group.help
    assert {"serve", "worker", "demo"} <= listed.keys()
    assert "Exit codes:" in done.stdout
    assert "3  not found" in done.stdout and "5  a service is unavailable" in done.stdout


@pytest.mark.parametrize("name", list(GROUPS))
def test_the_roots_table_says_what_each_group_says_of_itself(name: str) -> None:
    group = load_group(name)
    assert (group.name, group.help) == (name, GROUPS[name].help)
    assert group.list_commands(group.make_context(name, [], resilient_parsing=True))  # a group with commands


def test_the_roots_commands_name_every_group_and_build_one_when_it_is_looked_up() -> None:
    """What walks `commands` (typer's "did you mean", the docs' and snapshots' walks of the tree) sees it all."""
    root = typer.main.get_command(app)
    assert list(root.commands) == ["serve", "worker", "demo", *GROUPS] and len(root.commands) == 3 + len(GROUPS)
    assert "keys" in root.commands and root.commands["keys"].name == "keys" and "nosuch" not in root.commands
    assert list(root.commands) == ["serve", "worker", "demo", *GROUPS]  # the order holds once one is loaded


def test_a_groups_own_help_is_its_own() -> None:
    done = subprocess.run([YIWANG, "keys", "--help"], env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Usage: yiwang keys" in done.stdout and "issue" in done.stdout


def test_version_prints_the_installed_version_and_exits_0() -> None:
    done = subprocess.run([YIWANG, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"yiwang {version('yiwang')}\n", "")


def test_the_bench_measures_the_start_beside_help_and_meets_its_target() -> None:
    assert SECTIONS["cli"] == "bench.cli"
    entry = cli_bench.run(Options(quick=True))
    assert set(entry) >= {"version_cpu_s", "help_cpu_s", "target", "met"}
    version_cpu, help_cpu = entry["version_cpu_s"], entry["help_cpu_s"]
    assert isinstance(version_cpu, dict) and isinstance(help_cpu, dict)
    assert version_cpu["runs"] == help_cpu["runs"] == 3
    assert 0 < version_cpu["median"] <= cli_bench.TARGET_VERSION_CPU_S and entry["met"] is True


def test_the_adapters_package_imports_a_name_only_when_it_is_used() -> None:
    """`from adapters import FailureClass` (the case service's) does not load the adapter kinds."""
    code = f"from adapters import FailureClass, Operation; import sys; print({LOADED})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout.replace("'", '"')) == []


def test_every_public_name_of_adapters_is_the_object_its_module_defines() -> None:
    import importlib

    import adapters

    assert sorted(adapters.__all__) == sorted(adapters._MODULE_OF)
    for name in adapters.__all__:
        module = importlib.import_module(f"adapters.{adapters._MODULE_OF[name]}")
        assert getattr(adapters, name) is getattr(module, name)
    assert set(adapters.__all__) <= set(dir(adapters))
    with pytest.raises(AttributeError):
        adapters.no_such_name  # noqa: B018 - the access is the test
