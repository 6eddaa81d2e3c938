"""Scheduled work under leases: each job runs once per interval across every process sharing the database.

The deadline clock, certificate expiry warnings, the outbox sweep and the hall's notifications are jobs.
Every process (`yiwang serve` with its dispatcher, each `yiwang worker`) runs a scheduler; a job's row in
`job_leases` decides which of them runs it. Taking the lease is one conditional UPDATE — free, and not
started within the interval — so two processes cannot both win it. The lease is short (`YIWANG_JOB_LEASE_MS`,
15 s by default) and renewed every third of it by a thread of the holder's while the job runs: a long run
keeps it, and a holder that dies mid-job stops renewing, so another process takes the job over within one
lease and one interval. (A job hung in a live process keeps renewing: it is that process's to stop.)
Sector polling needs no job: each poll is an outbox message due at its time, taken by one dispatcher or
worker like any other message.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.domain.clock import Clock
from gateway.observability.correlation import correlated
from gateway.persistence.tables import job_leases
from gateway.persistence.uow import UnitsOfWork

log = structlog.get_logger("yiwang.scheduler")
DEFAULT_LEASE = timedelta(seconds=15)  # YIWANG_JOB_LEASE_MS


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: Callable[[], int]  # returns how much it did (for the log)


def process_owner() -> str:
    """Who holds a lease: host, process and a nonce (a restarted process is someone new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    def __init__(self, engine: Engine, clock: Clock, jobs: Sequence[Job], owner: str | None = None,
                 lease: timedelta = DEFAULT_LEASE) -> None:
        self.units, self.clock, self.jobs = UnitsOfWork(engine), clock, list(jobs)
        self.owner = owner or process_owner()
        self.lease = lease  # a dead holder's job is taken over this long after its last renewal
        self.renew_every = lease / 3  # two renewals may fail (a database blip) before the lease runs out
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
            with self._renewing(job), correlated(job=job.name):  # a fresh correlation id per run
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
        with self.units() as uow:
            conn = uow.conn
            result = conn.execute(
                update(job_leases).where(and_(job_leases.c.job == job.name, free, not_yet_run))
                .values(owner=self.owner, lease_until=now + self.lease, last_started_at=now,
                        runs=job_leases.c.runs + 1))
            uow.commit()
        return result.rowcount == 1

    @contextmanager
    def _renewing(self, job: Job) -> Iterator[None]:
        """While the body runs, a thread of its own renews the job's lease every `renew_every`."""
        done = threading.Event()
        renewer = threading.Thread(target=self._renew_until, args=(job, done), name=f"lease-{job.name}",
                                   daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()

    def _renew_until(self, job: Job, done: threading.Event) -> None:
        while not done.wait(self.renew_every.total_seconds()):
            try:
                if not self._renew(job):
                    log.warning("scheduled job lost its lease: another process may run it too", job=job.name)
                    return
            except Exception as exc:  # the database: the next renewal may succeed, within the lease
                log.warning("scheduled job's lease not renewed", job=job.name, error=f"{type(exc).__name__}: {exc}")

    def _renew(self, job: Job) -> bool:
        """Extend our lease by a whole lease from now; False when it is no longer ours."""
        with self.units() as uow:
            conn = uow.conn
            result = conn.execute(
                update(job_leases).where(job_leases.c.job == job.name, job_leases.c.owner == self.owner,
                                         job_leases.c.lease_until.is_not(None))
                .values(lease_until=self.clock.now() + self.lease))
            uow.commit()
        return result.rowcount == 1

    def _release(self, job: Job, error: str | None) -> None:
        with self.units() as uow:
            conn = uow.conn
            conn.execute(update(job_leases).where(job_leases.c.job == job.name, job_leases.c.owner == self.owner)
                         .values(lease_until=None, last_finished_at=self.clock.now(), last_error=error))
            uow.commit()

    def _ensure_row(self, name: str) -> None:
        if name in self._rows:
            return
        with self.units(read_only=True) as uow:
            exists = uow.conn.execute(select(job_leases.c.job).where(job_leases.c.job == name)).first() is not None
        if not exists:
            try:
                with self.units() as uow:
                    conn = uow.conn
                    conn.execute(insert(job_leases).values(job=name, runs=0))
                    uow.commit()
            except IntegrityError:
                pass  # another process made it first
        self._rows.add(name)
