"""Retention: how long message bodies, notifications and log records are kept, then purged (or archived
first). The scheduled job `retention` runs `Retention.run` every `YIWANG_RETENTION_INTERVAL_MS`.

Older than `YIWANG_RETENTION_DAYS` (default 180):
- dead letters no longer dead (replayed or discarded) lose their bodies — the canonical payload, the
  rendered request, the sector's last answer and the call history — set to NULL; the row, its identifiers
  and its outcome (error class and message, attempts) stay. Outbox rows hold identifiers only: nothing
  of theirs is purged.
- delivered webhook deliveries and published case notifications are deleted;
- the message log's records are removed under signed retention markers (`Ledger.purge`): `verify()`
  still finds every chain intact. Audit records stay unless `YIWANG_AUDIT_RETENTION_DAYS` is set.

Each batch (`batch` rows) is one transaction, so a large purge never holds locks for long and an
interruption leaves whole batches done and the rest untouched. With `YIWANG_RETENTION_ARCHIVE_DIR`, a
batch is appended to that day's JSON-lines file and fsynced before its purge commits: nothing is purged
that is not archived (after an interruption a batch may be archived twice). Sealed bodies stay sealed in
the archive, so it holds no clear personal data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Connection, Engine, Table, and_, delete, null, or_, select, update

from gateway.audit.ledger import AUDIT, MESSAGE, Archive, Ledger
from gateway.domain.clock import Clock, as_utc
from gateway.persistence.notification_tables import DELIVERED, webhook_deliveries
from gateway.persistence.repository import DeadLetterRepository
from gateway.persistence.tables import case_notifications, dead_letters
from gateway.persistence.uow import UnitsOfWork

log = structlog.get_logger("yiwang.retention")
# What a dead letter carries of the message itself (sealed); its identifiers and outcome are kept.
DEAD_LETTER_BODIES = ("canonical_payload", "rendered_request", "last_response", "history")
# No longer dead: nobody replays them again.
SETTLED_LETTERS = (DeadLetterRepository.REPLAYED, DeadLetterRepository.DISCARDED)
PUBLISHED = "published"  # a case notification fanned out to the hall
BatchDone = Callable[[int], None]  # told how many rows a batch just purged


def _ignored(rows: int) -> None:
    """No one is watching this run's progress."""


@dataclass(frozen=True)
class RetentionPolicy:
    days: int = 180
    audit_days: int = 0  # 0: audit records are kept for ever
    archive_dir: Path | None = None  # None: purge without archiving
    batch: int = 1000  # rows per transaction


class JsonLinesArchive:
    """Appends purged rows to `<dir>/retention-<UTC date>.jsonl`, one `{"table", "archived_at", "row"}`
    object per line, and fsyncs before returning: the purge that follows may commit."""

    def __init__(self, directory: Path, clock: Clock) -> None:
        self.directory, self.clock = directory, clock

    def path(self, day: date) -> Path:
        return self.directory / f"retention-{day.isoformat()}.jsonl"

    def __call__(self, table: str, rows: list[dict[str, Any]]) -> None:
        now = as_utc(self.clock.now())
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(now.date())
        new = not path.exists()
        lines = "".join(json.dumps({"table": table, "archived_at": now.isoformat(), "row": row},
                                   ensure_ascii=False, default=_text) + "\n" for row in rows)
        with path.open("a", encoding="utf-8") as archive:
            archive.write(lines)
            archive.flush()
            os.fsync(archive.fileno())
        if new:  # the file's name must survive a crash too
            _fsync_directory(self.directory)


class Retention:
    def __init__(self, engine: Engine, ledger: Ledger, clock: Clock, policy: RetentionPolicy,
                 archive: Archive | None = None) -> None:
        self.units, self.ledger, self.clock, self.policy = UnitsOfWork(engine), ledger, clock, policy
        # `archive` replaces the policy's directory (tests hand in one that fails on purpose).
        self.archive = archive or (JsonLinesArchive(policy.archive_dir, clock) if policy.archive_dir else None)

    def run(self, progress: Callable[[int], None] | None = None) -> int:
        """Purge everything the policy says is due; returns how many rows were purged or deleted.
        `progress` is told how many so far, after each batch (`yiwang audit retention` draws it)."""
        now = self.clock.now()
        before = now - timedelta(days=self.policy.days)
        tally = _Tally(progress)
        done = self.purge_dead_letter_bodies(before, tally) + self.delete_sent_notifications(before, tally)
        done += self.ledger.purge(MESSAGE, before, self.archive, self.policy.batch, tally)
        if self.policy.audit_days:
            done += self.ledger.purge(AUDIT, now - timedelta(days=self.policy.audit_days), self.archive,
                                      self.policy.batch, tally)
        if done:
            log.info("retention purge", purged=done, before=before.isoformat())
        return done

    def purge_dead_letter_bodies(self, before: datetime, batch_done: BatchDone = _ignored) -> int:
        d = dead_letters.c
        due = and_(d.status.in_(SETTLED_LETTERS), d.created_at < as_utc(before),
                   or_(*[d[c].is_not(None) for c in DEAD_LETTER_BODIES]))  # purged ones hold SQL NULL

        def purge(conn: Connection, ids: list[int]) -> None:
            conn.execute(update(dead_letters).where(d.id.in_(ids)).values({c: null() for c in DEAD_LETTER_BODIES}))

        kept = ("id", "outbox_id", "case_no", "sector", "operation", "idempotency_key", "status", "created_at")
        return self._in_batches(dead_letters, due, [d[c] for c in (*kept, *DEAD_LETTER_BODIES)], purge, batch_done)

    def delete_sent_notifications(self, before: datetime, batch_done: BatchDone = _ignored) -> int:
        w, n = webhook_deliveries.c, case_notifications.c
        return (self._deleting(webhook_deliveries, and_(w.status == DELIVERED, w.delivered_at < as_utc(before)),
                               batch_done)
                + self._deleting(case_notifications, and_(n.status == PUBLISHED, n.published_at < as_utc(before)),
                                 batch_done))

    def _deleting(self, table: Table, due: ColumnElement[bool], batch_done: BatchDone) -> int:
        def purge(conn: Connection, ids: list[int]) -> None:
            conn.execute(delete(table).where(table.c.id.in_(ids)))

        return self._in_batches(table, due, list(table.c), purge, batch_done)

    def _in_batches(self, table: Table, due: ColumnElement[bool], columns: Sequence[ColumnElement[Any]],
                    purge: Callable[[Connection, list[int]], None], batch_done: BatchDone) -> int:
        """Oldest first, `batch` rows per transaction: read them, archive them, purge them, commit."""
        total = 0
        while True:
            with self.units() as uow:
                conn = uow.conn
                rows = conn.execute(select(*columns).where(due).order_by(table.c.id).limit(self.policy.batch))
                batch = [dict(row) for row in rows.mappings()]
                if not batch:
                    return total
                if self.archive is not None:
                    self.archive(table.name, batch)
                purge(conn, [row["id"] for row in batch])
                uow.commit()
            total += len(batch)
            batch_done(len(batch))


class _Tally:
    """Rows done by the batches of one run, told to its `progress` as they add up."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.done, self.progress = 0, progress

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.progress is not None:
            self.progress(self.done)


def _text(value: Any) -> str:
    """What JSON cannot hold as is (instants) as text."""
    return as_utc(value).isoformat() if isinstance(value, datetime) else str(value)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
