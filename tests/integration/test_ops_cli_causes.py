"""`yiwang ops` for the console's dead-letter work (issue 20): search options, `causes`, `export` (audited, to a
file or stdout) and `cancel-replay`; bad input exits 2 and changes nothing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from bench.replay import seed_dead_letters
from gateway.bootstrap.app import open_database, personal_data
from gateway.config import Settings
from gateway.domain.clock import SystemClock
from gateway.persistence.uow import UnitsOfWork
from ops.dead_letters import DeadLetterDesk, DeadLetterFilter
from tests.integration.test_ops_cli import ID_NUMBER, NOW, Operator, lines_of


@pytest.fixture
def clerk(tmp_path: Path, sqlite_url: str) -> Operator:
    """As test_ops_cli's operator: 60 dead letters, 15 per sector, 12 per error class."""
    settings = Settings(var_dir=tmp_path / "var", database_url=sqlite_url)
    engine, personal = open_database(settings), personal_data(settings)
    seed_dead_letters(engine, personal, 60, NOW)
    return Operator(settings, engine, DeadLetterDesk(UnitsOfWork(engine, personal), SystemClock()))


def test_causes_are_listed_largest_first_and_a_cause_filters_every_command(clerk: Operator) -> None:
    causes = lines_of(clerk.ops("causes", "--json"))
    assert sum(c["count"] for c in causes) == 60 and len(causes) == 20  # 4 sectors x 5 error classes
    assert [c["count"] for c in causes] == sorted((c["count"] for c in causes), reverse=True)
    top = causes[0]["cause"]
    listed = lines_of(clerk.ops("dead-letters", "--cause", top, "--json"))
    assert len(listed) == causes[0]["count"] and {row["cause"] for row in listed} == {top}
    assert len(lines_of(clerk.ops("dead-letters", "--text", "DID NOT TAKE", "--limit", "500", "--json"))) == 60
    dry = clerk.ops("replay-many", "--cause", top, "--dry-run")
    assert dry.exit_code == 0 and f"{causes[0]['count']} dead letters would be replayed" in dry.output
    table = clerk.ops("causes", "--sector", "tax")
    assert table.exit_code == 0 and "0 causes" in table.output


def test_the_export_writes_a_masked_csv_and_is_audited(clerk: Operator, tmp_path: Path) -> None:
    target = tmp_path / "letters.csv"
    wrote = clerk.ops("export", "--sector", "housing_fund", "--output", str(target))
    assert wrote.exit_code == 0, wrote.output
    raw = target.read_bytes()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == 15 and {r["sector"] for r in rows} == {"housing_fund"} and ID_NUMBER not in raw.decode()
    [(outcome, detail)] = clerk.audited("ops export")
    assert outcome == "ok: exported 15 dead letters" and detail["sector"] == "housing_fund"
    printed = clerk.ops("export", "--error-class", "timeout")
    assert printed.exit_code == 0 and len(printed.stdout.strip().splitlines()) == 13  # header + 12
    refused = clerk.ops("export", "--text", " ")
    assert refused.exit_code == 2 and "text" in refused.output


def test_a_run_is_cancelled_with_a_reason_and_its_rest_released(clerk: Operator) -> None:
    run = clerk.desk.start_replay(DeadLetterFilter(sector="civil_affairs"), by="cli:ann", reason="back")
    assert clerk.ops("cancel-replay", str(run.id), "--reason", " ").exit_code == 2
    assert clerk.desk.run(run.id).status == "running"  # refused: nothing changed
    cancelled = clerk.ops("cancel-replay", str(run.id), "--reason", "sector down again")
    assert cancelled.exit_code == 0, cancelled.output
    assert f"replay run {run.id} cancelled: 0 replayed, 15 released of 15" in cancelled.output
    [refused, (outcome, detail)] = clerk.audited("ops cancel-replay")
    assert refused[0] == "exit 2"
    assert outcome == f"ok: run {run.id} cancelled: 0 replayed, 15 released of 15"
    assert detail["reason"] == "sector down again"
    again = clerk.ops("cancel-replay", str(run.id), "--reason", "again")
    assert again.exit_code == 2 and "不能取消" in again.output
    assert clerk.ops("cancel-replay", "999999", "--reason", "stop").exit_code == 3
