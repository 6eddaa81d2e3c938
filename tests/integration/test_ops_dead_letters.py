"""The operators' dead-letter desk (ops/dead_letters.py), on SQLite and PostgreSQL: filters, keyset paging,
counts, discard, replay one or many (batched, resumable after SIGKILL, safe with two resumers), reasons,
and the pinned mapping version."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.registry import RegisteredAdapter, default_bundles_dir
from adapters.simulators.social_security import SocialSecuritySimulator
from bench.replay import ERROR_CLASSES, MATTERS, SECTORS, bench_personal_data, seed_dead_letters
from gateway.bootstrap.app import Gateway
from gateway.domain.clock import SystemClock
from gateway.persistence import tables as t
from gateway.persistence.uow import UnitsOfWork
from gateway.sectors.bundle_records import BundleStore, pack_folder
from gateway.sectors.live_registry import UnknownVersion
from ops.dead_letters import (
    BadInput,
    DeadLetterDesk,
    DeadLetterFilter,
    DeadLetterNotFound,
    NotReplayable,
    ReasonRequired,
    ReplayRun,
)
from tests.support.cases import outbox_statuses, state, submit
from tests.support.gateways import activate_shipped, drain

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
PERSONAL = bench_personal_data()


def make_desk(engine: Engine, batch: int = 1000) -> DeadLetterDesk:
    return DeadLetterDesk(UnitsOfWork(engine, PERSONAL), SystemClock(), batch=batch)


def seeded(engine: Engine, count: int, now: datetime = NOW, **options: Any) -> list[int]:
    return seed_dead_letters(engine, PERSONAL, count, now, **options)


def outbox_replays(engine: Engine) -> dict[int, int]:
    """How often each outbox row was reopened by a replay (the exactly-once ledger of these tests)."""
    with engine.connect() as conn:
        return dict(conn.execute(select(t.outbox.c.id, t.outbox.c.replays)).all())  # type: ignore[arg-type]


def all_letters(desk: DeadLetterDesk, f: DeadLetterFilter = DeadLetterFilter(status=None)) -> list[Any]:
    return desk.page(f, limit=500).items


# -- reading -------------------------------------------------------------------------------------------
def test_every_filter_narrows_the_list_and_the_counts_add_up(engine: Engine) -> None:
    seeded(engine, 200)
    desk = make_desk(engine)
    every = all_letters(desk)
    assert len(every) == 200 and desk.page(DeadLetterFilter()).total == 200

    def expect(f: DeadLetterFilter, keep: Callable[[Any], bool]) -> None:
        page = desk.page(f, limit=500)
        assert sorted(d.id for d in page.items) == sorted(d.id for d in every if keep(d)), f
        assert page.total == len(page.items)

    expect(DeadLetterFilter(sector=SECTORS[1]), lambda d: d.sector == SECTORS[1])
    expect(DeadLetterFilter(sectors=frozenset(SECTORS[:2])), lambda d: d.sector in SECTORS[:2])
    expect(DeadLetterFilter(sectors=frozenset()), lambda d: False)
    expect(DeadLetterFilter(error_class=ERROR_CLASSES[3]), lambda d: d.error_class == ERROR_CLASSES[3])
    expect(DeadLetterFilter(bundle_version="1.0.0"), lambda d: True)
    expect(DeadLetterFilter(bundle_version="0.9"), lambda d: False)
    expect(DeadLetterFilter(case_no=every[7].case_no), lambda d: d.case_no == every[7].case_no)
    expect(DeadLetterFilter(min_attempts=2, max_attempts=3), lambda d: 2 <= d.attempts <= 3)
    expect(DeadLetterFilter(ids=frozenset({every[0].id, every[5].id})), lambda d: d.id in {every[0].id, every[5].id})
    since, until = NOW - timedelta(days=10), NOW - timedelta(days=5)
    expect(DeadLetterFilter(created_from=since, created_to=until), lambda d: since <= d.created_at < until)
    beijing = timezone(timedelta(hours=8))  # any zone: compared in UTC
    expect(DeadLetterFilter(created_from=since.astimezone(beijing)), lambda d: d.created_at >= since)
    with engine.connect() as conn:
        matter_cases = set(conn.execute(select(t.cases.c.case_no).where(t.cases.c.matter_code == MATTERS[0]))
                           .scalars())
    expect(DeadLetterFilter(matter_code=MATTERS[0]), lambda d: d.case_no in matter_cases)

    counts = desk.counts(DeadLetterFilter())
    assert sum(n for _, _, n in counts) == 200 and len(counts) == len(SECTORS) * len(ERROR_CLASSES)
    assert counts == sorted(counts, key=lambda c: (-c[2], c[0], c[1]))
    assert desk.counts(DeadLetterFilter(sector=SECTORS[0])) == [
        (SECTORS[0], c, n) for s, c, n in counts if s == SECTORS[0]]

    for bad in (DeadLetterFilter(status="lost"), DeadLetterFilter(min_attempts=-1),  # type: ignore[arg-type]
                DeadLetterFilter(created_from=datetime(2026, 11, 1))):
        with pytest.raises(BadInput):
            desk.page(bad)


def test_keyset_pages_cover_every_letter_once_in_order_while_new_ones_arrive(engine: Engine) -> None:
    seeded(engine, 95)
    desk = make_desk(engine)
    for sort in ("-created_at", "created_at", "attempts", "-attempts", "sector", "-sector"):
        seen: list[Any] = []
        cursor = None
        while True:
            page = desk.page(DeadLetterFilter(), sort=sort, limit=20, cursor=cursor)
            assert page.total in (95, 98) and len(page.items) <= 20
            seen += page.items
            if sort == "-created_at" and len(seen) == 20:
                seeded(engine, 3, NOW + timedelta(days=60))  # newer: before the cursor, later pages unmoved
            cursor = page.next_cursor
            if cursor is None:
                break
        key = sort.lstrip("-")
        values = [(getattr(d, key), d.id) for d in seen]
        assert values == sorted(values, reverse=sort.startswith("-")), sort
        assert len({d.id for d in seen}) == len(seen) == (95 if sort == "-created_at" else 98)
    first = desk.page(DeadLetterFilter(), limit=10)
    assert first.next_cursor is not None
    for bad_cursor, sort in (("not a cursor", "-created_at"), (first.next_cursor, "attempts")):
        with pytest.raises(BadInput):
            desk.page(DeadLetterFilter(), sort=sort, cursor=bad_cursor)
    with pytest.raises(BadInput):
        desk.page(DeadLetterFilter(), sort="id")
    with pytest.raises(BadInput):
        desk.page(DeadLetterFilter(), limit=0)


def test_get_is_scoped_and_the_timeline_is_the_cases_events(engine: Engine) -> None:
    [first, *_] = seeded(engine, 4)
    desk = make_desk(engine)
    letter = desk.get(first)
    assert letter.canonical_payload["case"]["applicant"]["id_number"] == "150203198503120039"  # opened
    assert desk.get(first, scope=frozenset({letter.sector})).id == first
    with pytest.raises(DeadLetterNotFound):
        desk.get(first, scope=frozenset({"somebody_else"}))
    with pytest.raises(DeadLetterNotFound):
        desk.get(10_000)
    assert desk.timeline(letter.case_no) == []  # seeded cases have no events; real ones: test_ops_cli


# -- reasons, discard, replay one ----------------------------------------------------------------------
def test_replay_and_discard_need_a_reason_and_bad_input_changes_nothing(engine: Engine) -> None:
    [first, *_] = seeded(engine, 5)
    desk = make_desk(engine)
    for blank in ("", "   ", None):
        with pytest.raises(ReasonRequired):
            desk.replay(first, by="op", reason=blank)  # type: ignore[arg-type]
        with pytest.raises(ReasonRequired):
            desk.discard(DeadLetterFilter(), by="op", reason=blank, case_outcome="void")  # type: ignore[arg-type]
        with pytest.raises(ReasonRequired):
            desk.start_replay(DeadLetterFilter(), by="op", reason=blank)  # type: ignore[arg-type]
    with pytest.raises(BadInput):
        desk.replay(first, by="op", reason="why", mapping="newest")
    assert desk.page(DeadLetterFilter()).total == 5 and desk.runs() == []
    assert set(outbox_replays(engine).values()) == {0}


def test_discarded_letters_never_match_a_replay_and_cannot_be_replayed_one_by_one(engine: Engine) -> None:
    ids = seeded(engine, 20)
    desk = make_desk(engine)
    wanted = DeadLetterFilter(sector=SECTORS[0])
    assert desk.discard(wanted, by="op:ann", reason="sent by hand", case_outcome="void").count == 5
    assert desk.discard(wanted, by="op:ann", reason="again", case_outcome="void").count == 0  # only dead ones
    gone = desk.page(replace(wanted, status="discarded")).items
    assert len(gone) == 5 and {(d.discarded_by, d.discard_reason) for d in gone} == {("op:ann", "sent by hand")}
    assert all(d.discarded_at is not None for d in gone)
    assert desk.plan(DeadLetterFilter()).count == 15
    assert desk.plan(replace(wanted, status="discarded")).count == 0  # a replay filter takes dead ones only
    with pytest.raises(NotReplayable):
        desk.replay(gone[0].id, by="op", reason="try")
    run = desk.continue_replay(desk.start_replay(DeadLetterFilter(status=None), by="op", reason="back").id)
    assert (run.total, run.replayed, run.skipped) == (15, 15, 0)
    assert sorted(v for v in outbox_replays(engine).values()) == [0] * 5 + [1] * 15
    assert len(ids) == 20


def test_replay_one_reopens_its_message_with_the_same_key_and_records_who_when_why(engine: Engine) -> None:
    [first, second, *_] = seeded(engine, 8)
    desk = make_desk(engine)
    letter = desk.replay(first, by="op:bo", reason="sector back", scope=frozenset(SECTORS))
    assert (letter.status, letter.replayed_by, letter.replay_reason, letter.replay_run_id) == \
        ("replayed", "op:bo", "sector back", None)
    stored = desk.get(first)
    assert stored.replayed_at is not None and stored.replay_reason == "sector back"
    with engine.connect() as conn:
        row = conn.execute(select(t.outbox).where(t.outbox.c.id == letter.outbox_id)).mappings().one()
    assert (row["status"], row["replays"], row["bundle_version"], row["idempotency_key"]) == \
        ("pending", 1, None, letter.idempotency_key)
    with pytest.raises(NotReplayable):
        desk.replay(first, by="op", reason="twice")
    with pytest.raises(DeadLetterNotFound):  # outside a sector admin's scope, as if it did not exist
        desk.replay(second, by="op", reason="x", scope=frozenset({"another"}))
    assert desk.get(second).status == "dead"


def test_the_original_mapping_pins_a_registered_version_and_refuses_one_gone(engine: Engine) -> None:
    store = BundleStore(engine, SystemClock())
    activate_shipped(store, "social_security")
    [version] = [v.version for v in store.versions("social_security")]
    pinned = seeded(engine, 4, sectors=("social_security",), bundle_version=version)
    gone = seeded(engine, 2, sectors=("social_security",), bundle_version="0.0.1")
    desk = make_desk(engine)
    desk.replay(pinned[0], by="op", reason="as it was", mapping="original")
    with pytest.raises(NotReplayable, match="未注册"):
        desk.replay(gone[0], by="op", reason="as it was", mapping="original")
    with pytest.raises(NotReplayable):
        desk.start_replay(DeadLetterFilter(), by="op", reason="all as they were", mapping="original")
    assert desk.runs() == [] and desk.get(gone[0]).status == "dead"  # refused before anything changed
    run = desk.start_replay(DeadLetterFilter(bundle_version=version), by="op", reason="as they were",
                            mapping="original")
    desk.continue_replay(run.id)
    desk.replay(gone[1], by="op", reason="with today's mapping")  # active: no pin, no version check
    with engine.connect() as conn:
        pins = dict(conn.execute(select(t.dead_letters.c.id, t.outbox.c.bundle_version)
                                 .join(t.outbox, t.outbox.c.id == t.dead_letters.c.outbox_id)).all())
    assert [pins[i] for i in pinned] == [version] * 4 and pins[gone[1]] is None and pins[gone[0]] is None


# -- replaying many ------------------------------------------------------------------------------------
def test_a_bulk_replay_works_in_batches_reports_progress_and_skips_letters_discarded_meanwhile(
        engine: Engine) -> None:
    seeded(engine, 50)
    desk = make_desk(engine, batch=7)
    plan = desk.plan(DeadLetterFilter(error_class=ERROR_CLASSES[0]))
    assert plan.count == 12 and [d.id for d in plan.sample] == sorted(d.id for d in plan.sample)
    run = desk.start_replay(DeadLetterFilter(), by="op:cy", reason="sectors back", mapping="active")
    assert (run.status, run.total, run.replayed, run.requested_by, run.filter) == \
        ("running", 50, 0, "op:cy", {"status": "dead"})
    assert desk.plan(DeadLetterFilter()).count == 0  # frozen into the run: no second run takes them
    assert desk.discard(DeadLetterFilter(sector=SECTORS[2]), by="op", reason="by hand",
                        case_outcome="back_office").count == 12
    seen: list[ReplayRun] = []
    done = desk.continue_replay(run.id, seen.append)
    assert [r.replayed for r in seen] == [7, 14, 21, 28, 35, 38, 38] and seen[-1] == done
    assert (done.status, done.replayed, done.skipped) == ("done", 38, 12) and done.finished_at is not None
    assert desk.continue_replay(run.id) == done and desk.unfinished_runs() == []
    replayed = desk.page(DeadLetterFilter(status="replayed"), limit=500).items
    assert {(d.replay_run_id, d.replayed_by, d.replay_reason) for d in replayed} == {(run.id, "op:cy", "sectors back")}
    assert sorted(outbox_replays(engine).values()) == [0] * 12 + [1] * 38
    assert desk.runs()[0].id == run.id


def test_two_processes_continuing_one_run_reopen_each_message_once(engine: Engine) -> None:
    seeded(engine, 120)
    run = make_desk(engine).start_replay(DeadLetterFilter(), by="op", reason="back")
    with ThreadPoolExecutor(2) as pool:  # two resumers at once, each with its own desk and connections
        results = list(pool.map(lambda _: make_desk(engine, batch=5).continue_replay(run.id), range(2)))
    assert [r.status for r in results] == ["done", "done"]
    assert set(outbox_replays(engine).values()) == {1}
    assert make_desk(engine).run(run.id).replayed == 120


RESUMER = """
import sys, time
from gateway.domain.clock import SystemClock
from gateway.persistence.engine import make_engine
from bench.replay import bench_personal_data
from gateway.persistence.uow import UnitsOfWork
from ops.dead_letters import DeadLetterDesk

def told(run):
    print(run.replayed, flush=True)
    time.sleep(0.05)  # slow enough to be killed half-way

desk = DeadLetterDesk(UnitsOfWork(make_engine(sys.argv[1]), bench_personal_data()), SystemClock(), batch=4)
desk.continue_replay(int(sys.argv[2]), told)
"""


def test_a_bulk_replay_killed_with_sigkill_resumes_and_sends_each_message_once(
        engine: Engine, db_url: str) -> None:
    seeded(engine, 160)
    desk = make_desk(engine)
    run = desk.start_replay(DeadLetterFilter(), by="op", reason="back")
    worker = subprocess.Popen([sys.executable, "-c", RESUMER, db_url, str(run.id)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert worker.stdout is not None
    for _ in range(5):  # five batches done, then killed wherever it is
        line = worker.stdout.readline()
        assert line, worker.stderr.read() if worker.stderr else "the resumer died"
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    half = desk.run(run.id)
    assert half.status == "running" and 20 <= half.replayed < 160
    assert set(outbox_replays(engine).values()) == {0, 1}
    done = desk.continue_replay(run.id)
    assert (done.status, done.replayed, done.skipped) == ("done", 160, 0)
    assert set(outbox_replays(engine).values()) == {1}  # every message reopened exactly once


def test_resume_unfinished_carries_every_running_run_forward_a_few_batches_at_a_time(engine: Engine) -> None:
    seeded(engine, 30)
    desk = make_desk(engine, batch=4)
    first = desk.start_replay(DeadLetterFilter(sector=SECTORS[0]), by="api:ann", reason="back")
    second = desk.start_replay(DeadLetterFilter(), by="api:bo", reason="back too")
    assert (first.total, second.total) == (8, 22)
    assert desk.resume_unfinished(max_batches=2) == 16
    assert {r.id for r in desk.unfinished_runs()} == {first.id, second.id}
    while desk.unfinished_runs():
        desk.resume_unfinished(max_batches=2)
    assert set(outbox_replays(engine).values()) == {1}


# -- in the gateway --------------------------------------------------------------------------------------
def test_the_replay_runs_job_finishes_a_run_whose_starter_died(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(clock_interval_ms=1)
    assert "replay-runs" in [job.name for job in gateway.scheduler.jobs]
    seed_dead_letters(gateway.engine, gateway.service.personal, 12, NOW)
    desk = DeadLetterDesk(gateway.service.units, SystemClock(), batch=5)
    run = desk.start_replay(DeadLetterFilter(), by="api:ann", reason="back")  # …and the API process dies
    for _ in range(50):
        gateway.scheduler.run_due()
        if desk.run(run.id).status == "done":
            break
        threading.Event().wait(0.01)
    assert desk.run(run.id).replayed == 12


class RecordingRegistry:
    """The gateway's registry, noting which versions the dispatcher asked for."""

    def __init__(self, registry: Any) -> None:
        self.registry, self.asked = registry, []

    def get(self, sector: str) -> RegisteredAdapter:
        self.asked.append((sector, None))
        return self.registry.get(sector)  # type: ignore[no-any-return]

    def get_version(self, sector: str, version: str) -> RegisteredAdapter:
        self.asked.append((sector, version))
        return self.registry.get_version(sector, version)  # type: ignore[no-any-return]


def test_a_replay_with_the_original_mapping_is_delivered_with_that_version(
        make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator, tmp_path: Path) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": simulator.url})
    sector = "social_security"
    original = gateway.registry.get(sector).version
    simulator.set_fault("fail")
    case_no = submit(gateway)
    drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")])
    newer = register_copy(gateway.bundles, sector, "2099.1.1", tmp_path)
    gateway.bundles.activate(sector, newer, "test", force=True)
    gateway.registry.refresh()
    assert gateway.registry.get(sector).version == newer
    assert gateway.registry.get_version(sector, original).version == original  # built though not active
    with pytest.raises(UnknownVersion):
        gateway.registry.get_version(sector, "0.0.1")
    simulator.set_fault(None)
    desk = DeadLetterDesk(gateway.service.units, SystemClock())
    [letter] = desk.page(DeadLetterFilter()).items
    desk.replay(letter.id, by="op", reason="as it was sent", mapping="original")
    recording = RecordingRegistry(gateway.registry)
    gateway.dispatcher.registry = recording
    drain(gateway, lambda: state(gateway, case_no) == "approved")
    assert recording.asked[0] == (sector, original)  # the replayed submission, on its version
    assert (sector, None) in recording.asked  # the status query that followed: the active one
    assert simulator.counters["cases_created"] == 1


def register_copy(store: BundleStore, sector: str, version: str, tmp_path: Path) -> str:
    """The shipped bundle again under another version number (a sector team's next release)."""
    folder = tmp_path / f"{sector}-{version}"
    shutil.copytree(default_bundles_dir() / sector, folder)
    descriptor = folder / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    old = next(line for line in text.splitlines() if line.startswith("version:"))
    descriptor.write_text(text.replace(old, f"version: \"{version}\""), encoding="utf-8")
    store.register(pack_folder(folder), "test")
    return version
