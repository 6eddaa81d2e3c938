"""Scheduled work under leases: each job runs once per interval across every process sharing the database.

The deadline clock, certificate expiry warnings, the outbox sweep and the hall's notifications are jobs.
Every process (`yiwang serve` with its dispatcher, each `yiwang worker`) runs a scheduler; a job's row in
`job_leases` decides which of them runs it. Taking the lease is one conditional UPDATE — free, and not
started within the interval — so two processes cannot both win it. A process that dies mid-job holds the
lease until it expires, then another takes the job over. Sector polling needs no job: each poll is an
outbox message due at its time, taken by one dispatcher or worker like any other message.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.correlation import correlated
from gateway.domain.clock import Clock
from gateway.persistence.tables import job_leases

log = structlog.get_logger("yiwang.scheduler")


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: Callable[[], int]  # returns how much it did (for the log)
    lease: timedelta = timedelta(minutes=5)  # longer than one run may take; a dead holder is replaced after it


def process_owner() -> str:
    """Who holds a lease: host, process and a nonce (a restarted process is someone new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    def __init__(self, engine: Engine, clock: Clock, jobs: Sequence[Job], owner: str | None = None) -> None:
        self.engine, self.clock, self.jobs = engine, clock, list(jobs)
        self.owner = owner or process_owner()
        self._next_try: dict[str, datetime] = {}  # when this process next asks for each job's lease
        self._rows: set[str] = set()  # jobs whose lease row exists
        self._failing: dict[str, str] = {}  # job -> the error its last run in this process failed with

    def run_due(self) -> int:
        """Run every job due now whose lease this process wins; returns how many ran."""
        ran = 0
        for job in self.jobs:
            now = self.clock.now()
            if now < self._next_try.get(job.name, now):
                continue
            self._next_try[job.name] = now + job.every
            if self._acquire(job, now):
                self._run(job)
                ran += 1
        return ran

    def _run(self, job: Job) -> None:
        error = None
        try:
            with correlated(job=job.name):  # a fresh correlation id per run, carried by what the run writes
                done = job.run()
            if done:
                log.debug("job ran", job=job.name, done=done)
        except Exception as exc:  # a failing job never stops the others; the next interval tries again
            error = f"{type(exc).__name__}: {exc}"[:2000]
            self._log_failure(job, error)
        if error is None and self._failing.pop(job.name, None) is not None:
            log.info("scheduled job recovered", job=job.name)
        self._release(job, error)

    def _log_failure(self, job: Job, error: str) -> None:
        """The traceback once; while the job keeps failing the same way (a broker down for an hour), one
        line per run without it, so the log stays readable."""
        if self._failing.get(job.name) == error:
            log.warning("scheduled job still failing", job=job.name, error=error)
        else:
            log.exception("scheduled job failed", job=job.name)
        self._failing[job.name] = error

    def _acquire(self, job: Job, now: datetime) -> bool:
        self._ensure_row(job.name)
        free = or_(job_leases.c.lease_until.is_(None), job_leases.c.lease_until < now)
        not_yet_run = or_(job_leases.c.last_started_at.is_(None), job_leases.c.last_started_at <= now - job.every)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(job_leases).where(and_(job_leases.c.job == job.name, free, not_yet_run))
                .values(owner=self.owner, lease_until=now + job.lease, last_started_at=now,
                        runs=job_leases.c.runs + 1))
        return result.rowcount == 1

    def _release(self, job: Job, error: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(job_leases).where(job_leases.c.job == job.name, job_leases.c.owner == self.owner)
                         .values(lease_until=None, last_finished_at=self.clock.now(), last_error=error))

    def _ensure_row(self, name: str) -> None:
        if name in self._rows:
            return
        with self.engine.connect() as conn:
            exists = conn.execute(select(job_leases.c.job).where(job_leases.c.job == name)).first() is not None
        if not exists:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(job_leases).values(job=name, runs=0))
            except IntegrityError:
                pass  # another process made it first
        self._rows.add(name)
