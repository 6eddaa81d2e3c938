"""`yiwang ops` at the command line: filters and paging, counts, bulk replay (dry run, confirmation, the run
with its progress, resume), discard one or many, readable refusals with exit code 2, and the audit record
of every change with its filter, reason and outcome."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from bench.replay import seed_dead_letters
from certstore.keyring import FieldSealer
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import build_ledger, open_database, personal_data
from gateway.bootstrap.cli import app
from gateway.config import Settings
from gateway.domain.clock import SystemClock
from gateway.persistence import tables as t
from gateway.persistence.uow import UnitsOfWork
from ops.api import DeadLetterOut, DeadLetterWhole, ReplayRunOut
from ops.dead_letters import DeadLetterDesk, DeadLetterFilter

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ID_NUMBER = "150203198503120039"  # the seeded applicant's, in every seeded payload


@dataclass
class Operator:
    settings: Settings
    engine: Engine
    desk: DeadLetterDesk

    def ops(self, *args: str, answer: str | None = None) -> Result:
        env = {"YIWANG_DATABASE_URL": self.settings.db_url, "YIWANG_VAR_DIR": str(self.settings.var_dir),
               "COLUMNS": "250", "YIWANG_LOG_LEVEL": "warning"}
        return CliRunner().invoke(app, ["ops", *args], env=env, input=answer)

    def audited(self, action: str) -> list[tuple[str | None, Any]]:
        """(outcome, detail) of the audit records of `action`, oldest first."""
        ledger = build_ledger(self.settings, self.engine,
                              FieldSealer(self.settings.master_keys(), self.settings.field_cipher))
        try:
            return [(r.outcome, ledger.open_body(r)) for r in ledger.records(Filters(AUDIT, action=action))]
        finally:
            ledger.close()

    def statuses(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.dead_letters.c.status)).scalars().all()
        return {s: rows.count(s) for s in sorted(set(rows))}


@pytest.fixture
def operator(tmp_path: Path, sqlite_url: str) -> Operator:
    """60 dead letters: 15 per sector, 12 per error class."""
    settings = Settings(var_dir=tmp_path / "var", database_url=sqlite_url)
    engine = open_database(settings)
    personal = personal_data(settings)
    seed_dead_letters(engine, personal, 60, NOW)
    return Operator(settings, engine, DeadLetterDesk(UnitsOfWork(engine, personal), SystemClock()))


def test_dead_letters_are_listed_by_filter_page_after_page_and_counted(operator: Operator) -> None:
    first = operator.ops("dead-letters", "--sector", "housing_fund", "--limit", "10")
    assert first.exit_code == 0, first.output
    assert "10 of 15" in first.output and "housing_fund" in first.output and "social_security" not in first.output
    cursor = first.output.split("--cursor ", 1)[1].split()[0]
    second = operator.ops("dead-letters", "--sector", "housing_fund", "--limit", "10", "--cursor", cursor)
    assert second.exit_code == 0 and "5 of 15" in second.output and "--cursor" not in second.output
    narrow = operator.ops("dead-letters", "--error-class", "timeout", "--min-attempts", "5", "--since", "2026-10-01",
                          "--until", "2026-11-28T08:00", "--status", "any", "--sort", "attempts")
    assert narrow.exit_code == 0 and "of 12" not in narrow.output and "timeout" in narrow.output
    counts = operator.ops("counts", "--sector", "civil_affairs")
    assert counts.exit_code == 0 and "15 in all" in counts.output and "civil_affairs" in counts.output
    assert operator.audited("ops dead-letters") == [] and operator.audited("ops counts") == []  # reads


@pytest.mark.parametrize("args, says", [
    (("dead-letters", "--sort", "id"), "sort is one of"),
    (("dead-letters", "--status", "lost"), "status 应为以下之一"),
    (("dead-letters", "--cursor", "garbage"), "cursor"),
    (("dead-letters", "--since", "yesterday"), "yesterday"),
    (("counts", "--min-attempts", "-1"), "--min-attempts"),
    (("replay", "1", "--reason", "x", "--mapping", "newest"), "mapping 应为 original"),
    (("replay", "1"), "--reason"),
    (("replay-many", "--sector", "housing_fund", "--yes"), "必须说明原因"),
    (("discard", "1", "--reason", "  ", "--case-outcome", "void"), "必须说明原因"),
    (("discard", "1", "--reason", "obsolete", "--case-outcome", "forget"), "case_outcome 应为以下之一"),
    (("discard", "1", "--reason", "重复\x1b[2J提交", "--case-outcome", "void"), "控制字符"),
    (("replay-many", "--sector", "housing_fund", "--reason", "\u202e恢复", "--yes"), "格式控制"),
])
def test_bad_input_is_refused_readably_with_exit_code_2_and_changes_nothing(
        operator: Operator, args: tuple[str, ...], says: str) -> None:
    result = operator.ops(*args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert operator.statuses() == {"dead": 60} and operator.desk.runs() == []


@pytest.mark.parametrize("args, says", [
    (("replay", "404", "--reason", "back"), "没有编号为 404 的死信"),
    (("dead-letter", "404"), "没有编号为 404 的死信"),
    (("replay-many", "--resume", "99"), "没有编号为 99 的重放批次"),
])
def test_a_dead_letter_or_run_that_does_not_exist_is_exit_code_3(operator: Operator, args: tuple[str, ...],
                                                                 says: str) -> None:
    result = operator.ops(*args)
    assert result.exit_code == 3 and says in result.stderr, result.output
    assert operator.statuses() == {"dead": 60} and operator.desk.runs() == []


def test_replay_many_dry_run_then_confirmation_then_the_run_audited_with_filter_reason_and_counts(
        operator: Operator) -> None:
    dry = operator.ops("replay-many", "--sector", "housing_fund", "--dry-run")
    assert dry.exit_code == 0 and "15 dead letters would be replayed" in dry.output
    declined = operator.ops("replay-many", "--sector", "housing_fund", "--reason", "back", answer="n\n")
    assert declined.exit_code == 1 and "Replay 15 dead letters" in declined.output
    assert operator.statuses() == {"dead": 60} and operator.desk.runs() == []
    ran = operator.ops("replay-many", "--sector", "housing_fund", "--reason", "the fund is back", "--yes")
    assert ran.exit_code == 0, ran.output
    [run] = operator.desk.runs()
    assert f"replay run {run.id} done: 15 replayed, 0 skipped of 15" in ran.output
    assert operator.statuses() == {"dead": 45, "replayed": 15}
    audited = operator.audited("ops replay-many")
    assert [outcome for outcome, _ in audited] == [
        "ok: dry run: 15 would be replayed", "exit 1", f"ok: run {run.id} done: 15 replayed, 0 skipped of 15"]
    detail = audited[-1][1]
    assert (detail["sector"], detail["reason"], detail["mapping"], detail["status"]) == \
        ("housing_fund", "the fund is back", "active", "dead")
    listed = operator.ops("replay-runs")
    assert listed.exit_code == 0 and "the fund is back" in listed.output and "done" in listed.output


def test_replay_many_resumes_a_run_another_process_started(operator: Operator) -> None:
    run = operator.desk.start_replay(DeadLetterFilter(error_class="mapping"), by="api:ann", reason="fixed")
    resumed = operator.ops("replay-many", "--resume", str(run.id))
    assert resumed.exit_code == 0, resumed.output
    assert f"replay run {run.id} done: 12 replayed" in resumed.output
    assert operator.desk.run(run.id).status == "done"
    again = operator.ops("replay-many", "--resume", str(run.id))  # a done run stays done
    assert again.exit_code == 0 and "12 replayed" in again.output


def test_discard_one_and_many_with_a_reason_and_never_twice(operator: Operator) -> None:
    [letter, *_] = operator.desk.page(DeadLetterFilter(sector="public_security")).items
    one = operator.ops("discard", str(letter.id), "--reason", "duplicate of a paper filing", "--case-outcome", "void")
    assert one.exit_code == 0 and f"discarded dead letter {letter.id}" in one.output
    twice = operator.ops("discard", str(letter.id), "--reason", "again", "--case-outcome", "void")
    assert twice.exit_code == 2 and "discarded" in twice.output
    replay = operator.ops("replay", str(letter.id), "--reason", "after all")
    assert replay.exit_code == 2 and "状态为 discarded" in replay.output
    dry = operator.ops("discard-many", "--sector", "public_security", "--dry-run", "--reason", "obsolete",
                       "--case-outcome", "back_office")
    assert dry.exit_code == 0 and "14 dead letters would be discarded" in dry.output
    many = operator.ops("discard-many", "--sector", "public_security", "--reason", "obsolete", "--yes",
                        "--case-outcome", "back_office")
    assert many.exit_code == 0 and "discarded 14 dead letters" in many.output
    assert operator.statuses() == {"dead": 45, "discarded": 15}
    assert [o for o, _ in operator.audited("ops discard")] == [f"ok: discarded {letter.id}, case outcome void",
                                                                "exit 2"]
    [(outcome, detail)] = [a for a in operator.audited("ops discard-many")
                           if a[0] == "ok: discarded 14, kept 0, case outcome back_office"]
    assert detail["reason"] == "obsolete" and detail["sector"] == "public_security"
    plan = operator.ops("replay-many", "--sector", "public_security", "--dry-run", "--status", "any")
    assert "0 dead letters would be replayed" in plan.output  # discarded ones never match a replay


BEIJING = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00$")  # gateway.domain.clock.beijing_text


def lines_of(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_listings_print_json_lines_with_the_apis_fields(operator: Operator) -> None:
    listed = lines_of(operator.ops("dead-letters", "--sector", "housing_fund", "--limit", "10", "--json"))
    assert len(listed) == 10 and {row["sector"] for row in listed} == {"housing_fund"}
    assert set(listed[0]) == set(DeadLetterOut.model_fields)  # GET /v1/ops/dead-letters' items
    assert BEIJING.match(listed[0]["created_at"]) and listed[0]["replayed_at"] is None
    assert "next page: --cursor" in operator.ops("dead-letters", "--limit", "10", "--json").stderr  # stdout: rows
    counted = lines_of(operator.ops("counts", "--json"))
    assert {tuple(row) for row in counted} == {("sector", "error_class", "count")}
    assert sum(row["count"] for row in counted) == 60
    [shown] = lines_of(operator.ops("dead-letter", str(listed[0]["id"]), "--json"))
    assert set(DeadLetterWhole.model_fields) <= set(shown) and shown["masked"] is True
    assert shown["id"] == listed[0]["id"] and BEIJING.match(shown["created_at"])
    assert ID_NUMBER not in json.dumps(shown, ensure_ascii=False)  # personal data masked, as in the table
    run = operator.desk.start_replay(DeadLetterFilter(sector="civil_affairs"), by="cli:ann", reason="back")
    [row] = lines_of(operator.ops("replay-runs", "--json"))
    assert set(row) == set(ReplayRunOut.model_fields) and row["id"] == run.id and BEIJING.match(row["created_at"])


def test_the_filter_takes_the_apis_case_no_and_the_old_case_with_a_warning(operator: Operator) -> None:
    [letter, *_] = operator.desk.page(DeadLetterFilter()).items
    of_the_case = {d.id for d in operator.desk.page(DeadLetterFilter(case_no=letter.case_no)).items}
    assert 0 < len(of_the_case) < 60
    new = lines_of(operator.ops("dead-letters", "--case-no", letter.case_no, "--json"))
    assert {row["id"] for row in new} == of_the_case and {row["case_no"] for row in new} == {letter.case_no}
    old = operator.ops("dead-letters", "--case", letter.case_no, "--json")
    assert {row["id"] for row in lines_of(old)} == of_the_case
    assert "--case is deprecated" in old.stderr and "--case-no" in old.stderr
