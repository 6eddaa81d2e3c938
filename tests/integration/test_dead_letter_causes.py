"""The dead-letter desk for the console (issue 20), on SQLite and PostgreSQL: search by correlation id, cause and
a part of it; causes; causes of letters written before causes existed (the migration, the fill job); the CSV
text; cancelling a bulk replay run, also while a batch races the cancel.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, select, update

from bench.replay import bench_personal_data, seed_dead_letters
from gateway.domain.clock import SystemClock
from gateway.persistence import tables as t
from gateway.persistence.engine import make_engine
from gateway.persistence.migrate import upgrade
from gateway.persistence.repository import Failure
from gateway.persistence.uow import UnitsOfWork
from ops.causes import cause_of
from ops.dead_letters import BadInput, DeadLetterDesk, DeadLetterFilter, NotCancellable, ReasonRequired
from ops.letter_actions import BOM, EXPORT_COLUMNS, csv_lines
from tests.support.services import empty_database

NOW = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)
PERSONAL = bench_personal_data()
ID_NUMBER = "150203198503120039"


def make_desk(engine: Engine, batch: int = 1000) -> DeadLetterDesk:
    return DeadLetterDesk(UnitsOfWork(engine, PERSONAL), SystemClock(), batch=batch)


def letter(engine: Engine, message: str, *, sector: str = "social_security", error_class: str = "transport",
           case_no: str = "CASE-1", at: datetime = NOW) -> int:
    """A dead letter as the gateway writes it (through the repository: its cause with it)."""
    about = {"case_no": case_no, "sector": sector, "operation": "submit_case", "idempotency_key": f"{case_no}:1:s"}
    with UnitsOfWork(engine, PERSONAL)() as work:
        letter_id = work.dead_letters.add(None, Failure(error_class, message, 1), at, about=about)
        work.commit()
    return letter_id


def ids(desk: DeadLetterDesk, f: DeadLetterFilter) -> set[int]:
    return {d.id for d in desk.page(f, limit=500).items}


# -- search ----------------------------------------------------------------------------------------------
def test_letters_are_found_by_correlation_id_cause_and_a_part_of_the_cause(engine: Engine) -> None:
    desk = make_desk(engine)
    a = letter(engine, "connect to 10.0.3.7:8443 timed out after 30001 ms", case_no="C1")
    b = letter(engine, "connect to 10.9.9.9:443 timed out after 5 ms", case_no="C2")
    c = letter(engine, "HTTP 503 from 社保 gateway: 100%_full", error_class="sector_fault")
    d = letter(engine, "HTTP 503 from 社保 gateway: 100 full", error_class="sector_fault")
    assert desk.get(a).cause == desk.get(b).cause == "social_security/transport: connect to <addr> timed out after " \
                                                     "<n> ms"
    assert ids(desk, DeadLetterFilter(cause=desk.get(a).cause)) == {a, b}
    assert ids(desk, DeadLetterFilter(text="TIMED OUT")) == {a, b}  # any case
    assert ids(desk, DeadLetterFilter(text="社保")) == {c, d}
    assert ids(desk, DeadLetterFilter(text="%_full")) == {c}  # % and _ are the letters themselves
    assert ids(desk, DeadLetterFilter(text="%")) == {c}
    assert ids(desk, DeadLetterFilter(text="30001")) == set()  # numbers are not in a cause: filter by case_no
    with pytest.raises(BadInput):
        desk.page(DeadLetterFilter(text="   "))

    seeded = seed_dead_letters(engine, PERSONAL, 6, NOW)
    with engine.begin() as conn:  # the request that wrote two of the seeded messages
        outbox_ids = conn.execute(select(t.dead_letters.c.outbox_id).where(t.dead_letters.c.id.in_(seeded[:2])))
        conn.execute(update(t.outbox).where(t.outbox.c.id.in_(list(outbox_ids.scalars())))
                     .values(correlation_id="req-7f3a"))
    assert ids(desk, DeadLetterFilter(correlation_id="req-7f3a")) == set(seeded[:2])
    assert ids(desk, DeadLetterFilter(correlation_id="req-none")) == set()
    assert desk.plan(DeadLetterFilter(correlation_id="req-7f3a")).count == 2  # and the bulk actions take it


def test_causes_group_the_letters_largest_first(engine: Engine) -> None:
    desk = make_desk(engine)
    for n in range(3):
        letter(engine, f"connect to 10.0.3.{n}:8443 timed out", at=NOW + timedelta(minutes=n))
    letter(engine, f"证件号 {ID_NUMBER} 校验失败", error_class="validation", sector="civil_affairs")
    letter(engine, "HTTP 503", error_class="sector_fault")
    causes = desk.causes(DeadLetterFilter())
    assert [(c.count, c.sector, c.error_class) for c in causes] == [
        (3, "social_security", "transport"), (1, "civil_affairs", "validation"), (1, "social_security", "sector_fault")]
    top = causes[0]
    assert top.cause == cause_of("transport", "social_security", "connect to 10.0.3.9:8443 timed out")
    assert (top.first_at, top.last_at) == (NOW, NOW + timedelta(minutes=2))
    assert desk.get(top.sample_id).cause == top.cause
    assert ID_NUMBER not in causes[1].cause  # causes rest plain: no ID number in them
    assert desk.causes(DeadLetterFilter(sector="civil_affairs")) == [causes[1]]


def test_a_cause_names_its_group_for_a_bulk_replay(engine: Engine) -> None:
    seed_dead_letters(engine, PERSONAL, 40, NOW)
    desk = make_desk(engine)
    causes = desk.causes(DeadLetterFilter())
    assert sorted((c.sector, c.error_class, c.count) for c in causes) == sorted(desk.counts(DeadLetterFilter()))
    top = causes[0]
    run = desk.start_replay(DeadLetterFilter(cause=top.cause), by="op", reason="sector back")
    assert run.total == top.count and desk.continue_replay(run.id).replayed == top.count
    assert top.cause not in {c.cause for c in desk.causes(DeadLetterFilter())}
    assert sum(c.count for c in desk.causes(DeadLetterFilter())) == 40 - top.count


def test_letters_sealed_before_causes_existed_get_theirs_from_the_fill_job(engine: Engine) -> None:
    desk = make_desk(engine)
    first = letter(engine, "timed out after 3 s")
    letter(engine, "timed out after 4 s")
    with engine.begin() as conn:
        conn.execute(update(t.dead_letters).values(cause=None))
    assert [(c.cause, c.count) for c in desk.causes(DeadLetterFilter())] == [("", 2)]  # not known yet
    assert desk.fill_causes(batch=1) == 1
    assert desk.fill_causes() == 1
    assert desk.fill_causes() == 0
    assert [(c.cause, c.count) for c in desk.causes(DeadLetterFilter())] == [
        ("social_security/transport: timed out after <n> s", 2)]
    assert desk.get(first).cause is not None


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with empty_database(request, tmp_path, "causes") as url:
        yield url


def test_the_migration_fills_the_causes_it_can_read_in_batches(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0019")
        dead_letters_0019 = sa.Table("dead_letters", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(t.cases).values(
                case_no="OLD-1", matter_code="M" * 31, matter_version=1, state="accepted", channel="pc",
                region_code="150200", applicant={}, applicant_index="x", green_channel={}, materials=[], form={},
                missing_materials=[], supplement_rounds=0, version=1, created_at=NOW, updated_at=NOW))
            plain = [{"case_no": "OLD-1", "sector": "tax", "operation": "submit_case", "idempotency_key": f"k{n}",
                      "error_class": "timeout", "error_message": f"no answer in {n} ms", "attempts": 1,
                      "status": "dead", "created_at": NOW} for n in range(1, 1203)]  # more than one batch
            sealed = {**plain[0], "error_message": PERSONAL.seal("no answer", "dead_letters.error_message")}
            conn.execute(sa.insert(dead_letters_0019), [*plain, sealed])
        upgrade(engine)
        with engine.connect() as conn:
            causes = list(conn.execute(select(t.dead_letters.c.cause).order_by(t.dead_letters.c.id)).scalars())
        assert causes == ["tax/timeout: no answer in <n> ms"] * 1202 + [None]  # sealed: the fill job's
    finally:
        engine.dispose()


# -- CSV ---------------------------------------------------------------------------------------------------
def test_the_csv_is_masked_formula_safe_beijing_timed_with_a_bom(engine: Engine) -> None:
    desk = make_desk(engine)
    letter(engine, f"=HYPERLINK(\"http://x\") 证件号 {ID_NUMBER}", at=NOW)
    letter(engine, "-1 attempts left, 中文", at=NOW + timedelta(hours=1))
    text = "".join(csv_lines(desk.letters(DeadLetterFilter(), batch=1)))
    assert text.startswith(BOM)
    rows = list(csv.DictReader(io.StringIO(text[len(BOM):])))
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == 2
    assert rows[0]["error_message"].startswith("'=HYPERLINK") and ID_NUMBER not in text
    assert rows[1]["error_message"] == "'-1 attempts left, 中文"
    assert rows[0]["created_at"] == "2026-12-08 10:00:00"  # Beijing time
    assert rows[1]["cause"] == "social_security/transport: -<n> attempts left, 中文"


# -- cancelling a run ------------------------------------------------------------------------------------------
def test_a_cancelled_run_keeps_what_it_replayed_and_releases_the_rest_replayable_again(engine: Engine) -> None:
    seed_dead_letters(engine, PERSONAL, 30, NOW)
    desk = make_desk(engine, batch=4)
    run = desk.start_replay(DeadLetterFilter(), by="op", reason="back")
    with pytest.raises(ReasonRequired):
        desk.cancel_replay(run.id, by="op", reason=" ")
    assert desk.continue_replay(run.id, max_batches=2).replayed == 8
    cancelled, released = desk.cancel_replay(run.id, by="op:cy", reason="sector down again")
    assert (cancelled.status, cancelled.replayed, released, cancelled.skipped) == ("cancelled", 8, 22, 22)
    assert (cancelled.cancelled_by, cancelled.cancel_reason) == ("op:cy", "sector down again")
    assert cancelled.finished_at is not None
    assert desk.continue_replay(run.id) == cancelled  # a cancelled run does nothing more
    assert desk.resume_unfinished() == 0 and desk.unfinished_runs() == []
    with pytest.raises(NotCancellable):
        desk.cancel_replay(run.id, by="op", reason="again")
    assert desk.plan(DeadLetterFilter()).count == 22  # released: dead, in no run
    again = desk.continue_replay(desk.start_replay(DeadLetterFilter(), by="op", reason="now").id)
    assert (again.status, again.replayed) == ("done", 22)
    with engine.connect() as conn:
        assert set(conn.execute(select(t.outbox.c.replays)).scalars()) == {1}  # each message reopened once
    with pytest.raises(NotCancellable):
        desk.cancel_replay(again.id, by="op", reason="too late")


def test_a_batch_racing_the_cancel_replays_each_letter_once_or_releases_it(engine: Engine) -> None:
    for _ in range(3):
        seed_dead_letters(engine, PERSONAL, 60, NOW)
        desk = make_desk(engine, batch=3)
        run = desk.start_replay(DeadLetterFilter(), by="op", reason="back")
        outcome = _race(engine, run.id)
        final = desk.run(run.id)
        with engine.connect() as conn:
            letters = conn.execute(select(t.dead_letters.c.status, t.dead_letters.c.replay_run_id, t.outbox.c.replays)
                                   .join(t.outbox, t.outbox.c.id == t.dead_letters.c.outbox_id)
                                   .where(t.dead_letters.c.status.in_(["dead", "replayed"]))).all()
        replayed = [row for row in letters if row.status == "replayed" and row.replay_run_id == run.id]
        released = [row for row in letters if row.status == "dead" and row.replay_run_id is None]
        assert final.status == "cancelled"
        assert final.replayed == len(replayed) and outcome["released"] == len(released)
        assert len(replayed) + len(released) == final.total == 60
        assert all(row.replays == 1 for row in replayed) and all(row.replays == 0 for row in released)
        make_desk(engine).continue_replay(make_desk(engine).start_replay(
            DeadLetterFilter(), by="op", reason="clear").id)  # the next round starts from none dead


def _race(engine: Engine, run_id: int) -> dict[str, Any]:
    """A continue and a cancel of one run, let go at one instant, each with its own desk and connections."""
    go = threading.Barrier(2)
    outcome: dict[str, Any] = {}

    def carry_on() -> None:
        go.wait()
        outcome["run"] = make_desk(engine, batch=3).continue_replay(run_id)

    def cancel() -> None:
        go.wait()
        outcome["released"] = make_desk(engine).cancel_replay(run_id, by="op", reason="stop")[1]

    threads = [threading.Thread(target=carry_on), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcome


def test_a_letter_of_a_bundle_version_as_long_as_a_bundles_is_kept_and_found(engine: Engine) -> None:
    """A bundle's version may be 64 characters; its dead letter keeps it whole (it used to fail on PostgreSQL)."""
    version = "2026.12.0-" + "rehearsed" * 6
    assert len(version) == 64
    about = {"case_no": "CASE-64", "sector": "social_security", "operation": "submit_case",
             "idempotency_key": "CASE-64:1:s"}
    with UnitsOfWork(engine, PERSONAL)() as work:
        letter_id = work.dead_letters.add(None, Failure("transport", "refused", 1, bundle_version=version), NOW,
                                          about=about)
        work.commit()
    assert ids(make_desk(engine), DeadLetterFilter(bundle_version=version)) == {letter_id}
