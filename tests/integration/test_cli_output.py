"""What `yiwang`'s listings print (gateway/cli/output.py): `--json` on every listing and show, with the API's
field names and Beijing times; tables that never cut an identifier; plain whole lines when piped; the API's
option names (old spellings deprecated); progress bars on stderr only for a terminal.

JSON of the ops, certs, catalogue and audit groups is also read in their own test files (test_ops_cli,
test_cli_certs, test_catalogue, test_ledger); here the whole `yiwang` root on one gateway's database.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner, Result

from gateway.bootstrap.app import Gateway
from gateway.bootstrap.cli import app
from gateway.cli import output
from gateway.cli.output import Column
from gateway.config import DEFAULT_CATALOGUE
from gateway.http.routers.identities import identity_view

BEIJING = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00$")  # gateway.domain.clock.beijing_text
# A window's name as long as they come, and the long-named matters of the shipped catalogue.
WINDOW = "包头市昆都仑区政务服务中心社会保障综合受理窗口第三号（养老保险关系转移接续与失业保险金申领）"
# What a command's name says it does: list or show something. Each such command takes --json.
SHOWING = frozenset({"show", "tail", "counts", "preview", "check", "verify", "dead-letters", "dead-letter",
                     "replay-runs"})

Yiwang = Callable[..., Result]


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


@pytest.fixture
def yiwang(gateway: Gateway) -> Yiwang:
    """`yiwang ARGS…` on the gateway's database, its stdout piped (as CliRunner's is)."""
    env = {"YIWANG_DATABASE_URL": gateway.settings.db_url, "YIWANG_VAR_DIR": str(gateway.settings.var_dir),
           "YIWANG_LOG_LEVEL": "warning"}
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args], env=env)


def json_lines(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_keys_list_json_carries_the_apis_fields_and_beijing_times(yiwang: Yiwang, gateway: Gateway) -> None:
    issued = yiwang("keys", "issue", "--name", WINDOW, "--role", "window")
    assert issued.exit_code == 0, issued.output
    [row] = json_lines(yiwang("keys", "list", "--json"))
    [stored] = gateway.keys.list()
    expected = identity_view(stored)
    assert row.keys() == expected.keys()
    assert {k: v for k, v in row.items() if not k.endswith("_at")} == \
        {k: v for k, v in expected.items() if not k.endswith("_at")}
    assert BEIJING.match(row["created_at"]) and row["revoked_at"] is None and row["name"] == WINDOW


def test_piped_listings_keep_long_chinese_names_and_ids_whole_on_one_line(yiwang: Yiwang) -> None:
    for n in (1, 2):
        assert yiwang("keys", "issue", "--name", f"{WINDOW}{n}", "--role", "window").exit_code == 0
    listed = yiwang("keys", "list")
    assert listed.exit_code == 0, listed.output
    title, header, *lines = listed.stdout.splitlines()
    assert title == "API keys" and header.split()[:2] == ["id", "name"] and len(lines) == 2
    assert "…" not in listed.stdout and listed.stderr == ""
    for row in json_lines(yiwang("keys", "list", "--json")):
        [line] = [line for line in lines if line.startswith(row["id"] + " ")]  # the id whole, where it begins
        assert row["name"] in line and row["key_prefix"] in line
    matters = json_lines(yiwang("catalogue", "list", "--json"))
    table = yiwang("catalogue", "list").stdout.splitlines()
    for matter in matters:  # the longest names of the catalogue among them
        assert any(matter["implementation_code"] in line and matter["name"] in line for line in table)


def test_adapters_list_and_preview_json(yiwang: Yiwang, gateway: Gateway) -> None:
    [version] = gateway.bundles.versions("social_security")
    [row] = json_lines(yiwang("adapters", "list", "social_security", "--json"))
    assert row.keys() == version.public().keys() and row["version"] == version.version
    assert BEIJING.match(row["registered_at"]) and BEIJING.match(row["activated_at"])
    [rendered] = json_lines(yiwang("adapters", "preview", "social_security", "social_insurance_contributions",
                                   "--param", "id_number=150203198503120039", "--json"))
    assert (rendered["sector"], rendered["version"], rendered["operation"]) == \
        ("social_security", version.version, "social_insurance_contributions")
    refused = yiwang("adapters", "preview", "social_security", "submit_case")  # no case to render
    assert refused.exit_code == 2 and "idempotency_key is missing" in refused.stderr, refused.output


def test_audit_list_tail_and_verify_json_and_the_retention_command(yiwang: Yiwang) -> None:
    assert yiwang("keys", "issue", "--name", "审计员", "--role", "auditor").exit_code == 0
    [issue] = [r for r in json_lines(yiwang("audit", "list", "--json")) if r["action"] == "keys issue"]
    assert {"id", "chain", "seq", "at", "actor", "action", "subject", "outcome", "has_body"} <= issue.keys()
    assert BEIJING.match(issue["at"])
    tail = json_lines(yiwang("audit", "tail", "--limit", "1", "--json"))
    assert len(tail) == 1
    [report] = json_lines(yiwang("audit", "verify", "--json"))
    assert report["intact"] is True and report["problems"] == [] and report["records"] >= 1
    purged = yiwang("audit", "retention", "--quiet")
    assert purged.exit_code == 0 and "retention: 0 rows purged" in purged.stdout, purged.output
    assert [r["outcome"] for r in json_lines(yiwang("audit", "list", "--action", "audit retention", "--json"))] \
        == ["ok: purged 0"]  # it changes things: audited


def test_audit_tail_takes_limit_and_the_old_count_with_a_warning(yiwang: Yiwang) -> None:
    for n in range(3):
        assert yiwang("keys", "issue", "--name", f"窗口{n}", "--role", "window").exit_code == 0
    assert len(json_lines(yiwang("audit", "tail", "--limit", "2", "--json"))) == 2
    old = yiwang("audit", "tail", "--count", "1", "--json")
    assert len(json_lines(old)) == 1 and "--count is deprecated" in old.stderr and "--limit" in old.stderr
    assert "--count" not in yiwang("audit", "tail", "--help").stdout  # hidden


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the tree under `command` (typer's own click objects: a group has `commands`)."""
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


LISTINGS = [(" ".join(path), command) for path, command in _commands(get_command(app))
            if path[-1] in SHOWING or path[-1].endswith("list")]


def test_the_walk_finds_every_listing() -> None:
    assert {name for name, _ in LISTINGS} >= {
        "ops dead-letters", "ops counts", "ops dead-letter", "ops replay-runs", "keys list", "catalogue list",
        "certs list", "certs show", "certs secret-list", "certs check", "audit list", "audit tail", "audit verify",
        "adapters list", "adapters preview"}


@pytest.mark.parametrize("name, command", LISTINGS, ids=[name for name, _ in LISTINGS])
def test_every_command_that_lists_or_shows_takes_json(name: str, command: Any) -> None:
    assert any("--json" in parameter.opts for parameter in command.params), f"`yiwang {name}` has no --json"


# --- the output module itself ------------------------------------------------------------------------------

ROWS = [{"case_no": "BTZW-SB-20261207-000000123456789", "name": WINDOW, "sha256": "ab" * 32},
        {"case_no": "BTZW-SB-20261207-2", "name": "失业保险金申领", "sha256": "cd" * 32}]
COLUMNS = (Column("case_no", "case", identifier=True), Column("name"), Column("sha256", identifier=True))


def shown_at(width: int, monkeypatch: pytest.MonkeyPatch) -> str:
    screen = io.StringIO()
    monkeypatch.setattr(output, "stdout", lambda: Console(file=screen, force_terminal=True, width=width,
                                                          color_system=None, highlight=False))
    output.print_rows(ROWS, COLUMNS, as_json=False, title="cases")
    return screen.getvalue()


def test_a_terminal_table_folds_names_but_never_cuts_an_identifier(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = shown_at(140, monkeypatch)
    assert "┃ case" in shown  # a table
    for row in ROWS:
        assert row["case_no"] in shown and row["sha256"] in shown  # each on one line, whole
    assert "…" not in shown and "失业保险金申领" in shown
    assert "".join(re.findall(r"[\u4e00-\u9fff（）]+", shown)).count(WINDOW) == 1  # folded, every character kept


def test_a_terminal_too_narrow_for_the_identifiers_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = shown_at(100, monkeypatch)
    assert "┃" not in shown and len(shown.splitlines()) == 2 + len(ROWS)  # the title, the header, the rows
    for row in ROWS:
        assert any(row["case_no"] in line and row["name"] in line and row["sha256"] in line
                   for line in shown.splitlines())


def test_plain_columns_line_up_by_display_width() -> None:
    header, first, second = output.plain_lines(ROWS, COLUMNS)
    # Each column starts at the same display column: CJK characters count two.
    from rich.cells import cell_len
    sha_at = [cell_len(line[:line.index(sha)]) for line, sha in ((first, "ab" * 32), (second, "cd" * 32))]
    assert sha_at[0] == sha_at[1] == cell_len(header[:header.index("sha256")])


def test_json_spells_times_in_beijing_time_and_keeps_chinese_readable() -> None:
    from datetime import UTC, datetime
    text = output.json_text({"at": datetime(2026, 12, 7, 12, 10, tzinfo=UTC), "name": "失业", "ids": {2, 1}})
    assert json.loads(text) == {"at": "2026-12-07T20:10:00.000+08:00", "name": "失业", "ids": [1, 2]}
    assert "失业" in text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty, quiet, drawn", [(True, False, True), (True, True, False), (False, False, False)])
def test_progress_is_drawn_on_stderr_only_for_a_terminal_and_not_when_quiet(
        monkeypatch: pytest.MonkeyPatch, tty: bool, quiet: bool, drawn: bool) -> None:
    stderr = Terminal() if tty else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.delenv("TERM", raising=False)
    with output.progress("importing matters", None, quiet=quiet) as advance:
        advance(3, 7)
        advance(7)
    assert ("7/7" in stderr.getvalue()) is drawn


def test_a_renamed_option_warns_on_stderr_and_the_new_one_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    assert output.deprecated("new", None, new="--case-no", old="--case") == "new"
    assert capsys.readouterr().err == ""
    assert output.deprecated(None, "old", new="--case-no", old="--case") == "old"
    assert "--case is deprecated" in capsys.readouterr().err


def test_the_help_names_json_and_the_apis_options(yiwang: Yiwang, tmp_path: Path) -> None:
    helped = yiwang("ops", "dead-letters", "--help").stdout
    assert "--case-no" in helped and "--json" in helped and "--case " not in helped


LONG_LISTING = """
import typer
from gateway.cli import output
from gateway.cli.output import Column
app = typer.Typer()
@app.command()
def listing() -> None:
    output.print_rows([{"id": n, "name": "失业保险金申领"} for n in range(200_000)], (Column("id"), Column("name")),
                      as_json=True)
app()
"""


def test_a_reader_that_stops_early_ends_a_listing_quietly() -> None:
    """`yiwang … --json | head -1`: no BrokenPipeError traceback, exit 0."""
    listing = subprocess.Popen([sys.executable, "-c", LONG_LISTING], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert listing.stdout is not None and listing.stderr is not None
    assert json.loads(listing.stdout.readline()) == {"id": 0, "name": "失业保险金申领"}
    listing.stdout.close()  # as `head -1` does
    assert listing.wait(timeout=60) == 0
    assert "Traceback" not in listing.stderr.read()


YIWANG = str(Path(sys.executable).with_name("yiwang"))


def on_a_terminal_stderr(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run `yiwang ARGS…` with stdout piped and stderr a terminal (a pseudo-terminal); what stderr showed."""
    master, slave = os.openpty()
    env = {**os.environ, "YIWANG_VAR_DIR": str(tmp_path / "var"), "YIWANG_LOG_LEVEL": "warning",
           "YIWANG_DATABASE_URL": f"sqlite:///{tmp_path / 'yiwang.db'}", "TERM": "xterm", "COLUMNS": "100"}
    try:
        done = subprocess.run([YIWANG, *args], stdout=subprocess.PIPE, stderr=slave, env=env, text=True, timeout=120)
    finally:
        os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end is closed: everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return done, shown.decode(errors="replace")


def test_a_long_command_draws_its_progress_on_a_terminal_stderr_only(tmp_path: Path) -> None:
    done, shown = on_a_terminal_stderr(tmp_path, "catalogue", "import", str(DEFAULT_CATALOGUE))
    assert done.returncode == 0 and "imported 19 matters" in done.stdout, done.stdout + shown
    assert "importing matters" in shown and "19/19" in shown
    assert "importing matters" not in done.stdout  # piped stdout stays clean
    quiet, shown = on_a_terminal_stderr(tmp_path, "catalogue", "import", str(DEFAULT_CATALOGUE), "--quiet")
    assert quiet.returncode == 0 and "importing matters" not in shown
