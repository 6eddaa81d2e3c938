"""What the operators' console needs of `/v1/ops` (issue 20), on SQLite and PostgreSQL: search by correlation id,
cause and text; causes, paged; the CSV export (masked, BOM, formula-safe, bounded, audited); cancelling a bulk
replay run (who may, what becomes of its letters, 409 once it has ended).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from bench.replay import seed_dead_letters
from gateway.bootstrap.app import Gateway
from gateway.persistence import tables as t
from ops import letter_actions
from ops.dead_letters import DeadLetterFilter
from tests.api.test_ops_api import ID_NUMBER, OPS, Ops, ids_of, make_ops, spread
from tests.support.hostile import assert_problem

NOW = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)


@pytest.fixture
def ops(make_gateway: Callable[..., Gateway]) -> Ops:
    return make_ops(make_gateway())


def test_letters_are_searched_by_correlation_id_cause_and_text(ops: Ops) -> None:
    assert "dead-letter-causes" in [job.name for job in ops.gateway.scheduler.jobs]  # fills causes sealed before
    letters = spread(ops.gateway)  # "<class> for <ID number>"
    timeouts = {x.id for x in letters if x.error_class == "timeout"}
    listed = lambda **params: set(ids_of(ops.operator.get(f"{OPS}/dead-letters", params=params)))  # noqa: E731
    assert listed(text="TIMEOUT FOR") == timeouts
    assert listed(text="%") == set()  # a wildcard is a letter like any other
    assert listed(cause="social_security/timeout: timeout for <id_number>") == {letters[0].id}
    assert ID_NUMBER not in ops.operator.get(f"{OPS}/dead-letters/{letters[0].id}").json()["cause"]
    seeded = seed_dead_letters(ops.gateway.engine, ops.gateway.service.personal, 4, NOW)
    with ops.gateway.engine.begin() as conn:
        outbox_id = conn.execute(select(t.dead_letters.c.outbox_id).where(t.dead_letters.c.id == seeded[1])).scalar()
        conn.execute(update(t.outbox).where(t.outbox.c.id == outbox_id).values(correlation_id="req-42"))
    assert listed(correlation_id="req-42") == {seeded[1]}
    dry = ops.operator.post(f"{OPS}/replays", json={"filter": {"correlation_id": "req-42"}, "dry_run": True})
    assert dry.json()["count"] == 1
    assert_problem(ops.operator.get(f"{OPS}/dead-letters", params={"text": "x" * 201}), 422, "invalid-request")


def test_causes_are_paged_largest_first_and_scoped(ops: Ops) -> None:
    letters = spread(ops.gateway)
    first = ops.operator.get(f"{OPS}/dead-letters/causes", params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["total"] == len(letters) and len(page["items"]) == 2 and page["next_cursor"]
    rest = ops.operator.get(f"{OPS}/dead-letters/causes", params={"limit": 10, "cursor": page["next_cursor"]}).json()
    causes = page["items"] + rest["items"]
    assert rest["next_cursor"] is None and len(causes) == len(letters)
    assert {c["sample_id"] for c in causes} == {x.id for x in letters}
    assert causes[0]["first_at"].endswith("+08:00")
    own = ops.own_admin.get(f"{OPS}/dead-letters/causes").json()["items"]
    assert {c["sector"] for c in own} == {"social_security"} and len(own) == 3
    assert ops.other_admin.get(f"{OPS}/dead-letters/causes", params={"sector": "social_security"}).status_code == 403


def test_the_export_is_masked_excel_ready_formula_safe_and_audited(ops: Ops) -> None:
    letters = spread(ops.gateway)
    answer = ops.own_admin.get(f"{OPS}/dead-letters/export.csv", params={"status": "any"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith("\ufeff".encode())
    text = answer.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(int(r["id"]) for r in rows) == sorted(x.id for x in letters if x.sector == "social_security")
    assert ID_NUMBER not in text  # masked for every role
    [(actor, _, outcome, detail)] = ops.audit("ops export dead letters")
    assert (actor, outcome) == (f"identity:{ops.ids['own']}", "3 exported")
    assert detail["filter"]["sectors"] == ["social_security"]


def test_an_export_too_large_is_refused_and_not_audited(ops: Ops, monkeypatch: pytest.MonkeyPatch) -> None:
    spread(ops.gateway)
    monkeypatch.setattr(letter_actions, "MAX_EXPORT", 5)  # 6 letters: one too many
    refused = ops.operator.get(f"{OPS}/dead-letters/export.csv")
    assert_problem(refused, 422, "invalid-filter")
    assert "缩小筛选范围" in refused.text and ops.audit("ops export dead letters") == []
    assert ops.operator.get(f"{OPS}/dead-letters/export.csv", params={"sector": "housing_fund"}).status_code == 200


def test_a_run_is_cancelled_by_its_starter_its_rest_released(ops: Ops) -> None:
    seed_dead_letters(ops.gateway.engine, ops.gateway.service.personal, 12, NOW, sectors=("social_security",))
    desk = ops.gateway.dead_letters
    mine = desk.start_replay(DeadLetterFilter(sectors=frozenset({"social_security"})),
                             by=f"identity:{ops.ids['own']}", reason="back")
    desk.batch = 5
    desk.continue_replay(mine.id, max_batches=1)
    path = f"{OPS}/replays/{mine.id}/cancel"
    assert_problem(ops.own_admin.post(path, json={"reason": " "}), 422, "reason-required")
    assert ops.other_admin.post(path, json={"reason": "not mine"}).status_code == 404  # another sector's run
    cancelled = ops.own_admin.post(path, json={"reason": "sector down again"})
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["status"], body["replayed"], body["released"], body["skipped"]) == ("cancelled", 5, 7, 7)
    assert (body["cancelled_by"], body["cancel_reason"]) == (f"identity:{ops.ids['own']}", "sector down again")
    assert_problem(ops.own_admin.post(path, json={"reason": "again"}), 409, "not-cancellable")
    [(actor, subject, outcome, detail)] = ops.audit("ops cancel replay")
    assert (actor, subject) == (f"identity:{ops.ids['own']}", f"replay_run:{mine.id}")
    assert outcome == f"run {mine.id} cancelled: 5 replayed, 7 released of 12"
    assert detail["reason"] == "sector down again"
    assert ops.operator.post(f"{OPS}/replays", json={"filter": {}, "dry_run": True}).json()["count"] == 7

    operators = desk.start_replay(DeadLetterFilter(sector="social_security"), by="identity:someone", reason="again")
    refused = ops.own_admin.post(f"{OPS}/replays/{operators.id}/cancel", json={"reason": "not mine"})
    assert_problem(refused, 403, "forbidden")  # a sector administrator cancels only their own runs
    assert ops.operator.post(f"{OPS}/replays/{operators.id}/cancel", json={"reason": "stop"}).status_code == 200
    assert ops.operator.post(f"{OPS}/replays/999999/cancel", json={"reason": "stop"}).status_code == 404
