"""Scheduled jobs run under leases: once per interval across every process sharing the database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import structlog.testing
from sqlalchemy import Engine, select, update

from gateway.domain.clock import FixedClock
from gateway.persistence.tables import job_leases
from gateway.scheduler import Job, Scheduler

MINUTE = timedelta(minutes=1)
NOON = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


def counting(ran: list[str], who: str) -> Job:
    return Job("deadline-clock", MINUTE, lambda: ran.append(who) or 1)


def test_a_job_runs_once_per_interval_whichever_process_asks(engine: Engine) -> None:
    clock = FixedClock(NOON)
    ran: list[str] = []
    schedulers = [Scheduler(engine, clock, [counting(ran, f"process {i}")]) for i in range(4)]
    for scheduler in schedulers:
        scheduler.run_due()
    assert len(ran) == 1
    clock.advance(timedelta(seconds=30))
    for scheduler in schedulers:
        scheduler.run_due()
    assert len(ran) == 1  # not yet due again anywhere
    clock.advance(timedelta(seconds=31))
    for scheduler in reversed(schedulers):
        scheduler.run_due()
    assert len(ran) == 2


def test_processes_racing_for_a_job_run_it_once(engine: Engine) -> None:
    clock = FixedClock(NOON)
    ran: list[str] = []
    schedulers = [Scheduler(engine, clock, [counting(ran, f"thread {i}")]) for i in range(6)]
    start = threading.Barrier(len(schedulers))

    def race(scheduler: Scheduler) -> None:
        start.wait()
        scheduler.run_due()

    threads = [threading.Thread(target=race, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(ran) == 1


def test_a_holder_that_died_is_replaced_after_its_lease(engine: Engine) -> None:
    clock = FixedClock(NOON)
    ran: list[str] = []
    dead, alive = Scheduler(engine, clock, [counting(ran, "dead")]), Scheduler(engine, clock, [counting(ran, "alive")])
    dead.run_due()
    # The dead process took the lease for its next run and never released it (killed mid-job).
    clock.advance(2 * MINUTE)
    with engine.begin() as conn:
        conn.execute(update(job_leases).values(owner=dead.owner, lease_until=clock.now() + timedelta(minutes=5),
                                               last_started_at=clock.now()))
    clock.advance(2 * MINUTE)
    alive.run_due()
    assert ran == ["dead"]  # still held
    clock.advance(4 * MINUTE)
    alive.run_due()
    assert ran == ["dead", "alive"]


def test_a_failing_job_is_recorded_and_does_not_stop_the_others(engine: Engine) -> None:
    clock = FixedClock(NOON)
    ran: list[str] = []

    def broken() -> int:
        raise RuntimeError("sector catalogue unreachable")

    Scheduler(engine, clock, [Job("broken", MINUTE, broken), counting(ran, "next")]).run_due()
    assert ran == ["next"]
    with engine.connect() as conn:
        row = conn.execute(select(job_leases).where(job_leases.c.job == "broken")).mappings().one()
    assert row["last_error"] == "RuntimeError: sector catalogue unreachable" and row["lease_until"] is None


def test_a_job_failing_again_the_same_way_logs_its_traceback_once(engine: Engine) -> None:
    clock = FixedClock(NOON)
    failures = ["broker down", "broker down", "broker down", None, "broker down"]

    def flaky() -> int:
        error = failures.pop(0)
        if error:
            raise ConnectionError(error)
        return 1

    scheduler = Scheduler(engine, clock, [Job("case-notifications", MINUTE, flaky)])
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            scheduler.run_due()
            clock.advance(MINUTE)
    seen = [(entry["event"], "exc_info" in entry) for entry in logs if entry["event"] != "job ran"]
    assert seen == [("scheduled job failed", True), ("scheduled job still failing", False),
                    ("scheduled job still failing", False), ("scheduled job recovered", False),
                    ("scheduled job failed", True)]
