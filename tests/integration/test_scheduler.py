"""Scheduled jobs run under leases: once per interval across every process sharing the database."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import structlog.testing
from sqlalchemy import Engine, select, update

from gateway.domain.clock import FixedClock, SystemClock
from gateway.persistence.tables import job_leases
from gateway.transport.scheduler import Job, Scheduler

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


SHORT_LEASE = timedelta(milliseconds=300)


def test_a_run_longer_than_its_lease_keeps_the_job_while_its_holder_lives(engine: Engine) -> None:
    """The holder renews its lease while the job runs (four leases long here): another process asking all
    the while never runs the job too; once the run ends, the job is free again."""
    clock = SystemClock()
    ran: list[str] = []
    running = threading.Event()

    def long_run() -> int:
        running.set()
        time.sleep(4 * SHORT_LEASE.total_seconds())
        ran.append("holder")
        return 1

    holder = Scheduler(engine, clock, [Job("webhooks", timedelta(milliseconds=10), long_run)], lease=SHORT_LEASE)
    other = Scheduler(engine, clock, [Job("webhooks", timedelta(milliseconds=10), lambda: ran.append("other") or 1)],
                      lease=SHORT_LEASE)
    thread = threading.Thread(target=holder.run_due)
    thread.start()
    assert running.wait(10)
    while thread.is_alive():
        other.run_due()
        time.sleep(0.02)
    time.sleep(0.02)
    other.run_due()
    assert ran[0] == "holder" and set(ran[1:]) == {"other"}  # the other ran it only once the holder's run ended


def test_a_holder_whose_lease_was_taken_over_says_so(engine: Engine) -> None:
    clock = SystemClock()
    taken = threading.Event()

    def run_until_taken() -> int:
        with engine.begin() as conn:  # the lease expired unseen (a stalled process) and another took the job
            conn.execute(update(job_leases).values(owner="another process", lease_until=clock.now() + MINUTE))
        time.sleep(2 * SHORT_LEASE.total_seconds())
        taken.set()
        return 1

    with structlog.testing.capture_logs() as logs:
        Scheduler(engine, clock, [Job("case-notifications", MINUTE, run_until_taken)], lease=SHORT_LEASE).run_due()
    assert taken.is_set()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "scheduled job lost its lease: another process may run it too"]
    with engine.connect() as conn:  # nor does it release what is no longer its own
        assert conn.execute(select(job_leases.c.owner)).scalar_one() == "another process"
