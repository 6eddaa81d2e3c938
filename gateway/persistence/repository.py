"""Repositories: the only code that turns rows into domain objects and back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from gateway.domain.case import (
    Actor,
    Applicant,
    Case,
    CaseEvent,
    CaseState,
    SubmittedMaterial,
    Trigger,
)
from gateway.domain.clock import as_utc
from gateway.persistence import tables as t


class StaleCase(Exception):
    """Someone else changed the case since it was read (optimistic concurrency)."""


class CaseRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, case: Case, now: datetime) -> None:
        case.version = 1
        self._conn.execute(insert(t.cases).values(**_case_row(case), created_at=now, updated_at=now))
        self._store_new_events(case)

    def get(self, case_no: str) -> Case | None:
        row = self._conn.execute(select(t.cases).where(t.cases.c.case_no == case_no)).mappings().first()
        if row is None:
            return None
        return _case_from_row(row, self.events(case_no))

    def events(self, case_no: str) -> list[CaseEvent]:
        query = select(t.case_events).where(t.case_events.c.case_no == case_no).order_by(t.case_events.c.seq)
        return [_event_from_row(r) for r in self._conn.execute(query).mappings()]

    def save(self, case: Case, now: datetime) -> None:
        """Store the case's changes; fail if it changed underneath us."""
        result = self._conn.execute(
            update(t.cases)
            .where(t.cases.c.case_no == case.case_no, t.cases.c.version == case.version)
            .values({**_case_row(case), "version": case.version + 1, "updated_at": now})
        )
        if result.rowcount != 1:
            raise StaleCase(case.case_no)
        case.version += 1
        self._store_new_events(case)

    def next_sequence(self, scope: str) -> int:
        """Next number in a daily sequence: a read-then-write, safe only inside a write transaction."""
        current = self._conn.execute(
            select(t.case_counters.c.last_seq).where(t.case_counters.c.scope == scope)
        ).scalar_one_or_none()
        if current is None:
            self._conn.execute(insert(t.case_counters).values(scope=scope, last_seq=1))
            return 1
        self._conn.execute(update(t.case_counters).where(t.case_counters.c.scope == scope).values(last_seq=current + 1))
        return current + 1

    def _store_new_events(self, case: Case) -> None:
        if case.new_events:
            self._conn.execute(insert(t.case_events), [_event_row(case.case_no, e) for e in case.new_events])
            case.new_events.clear()


def _case_row(case: Case) -> dict[str, Any]:
    return {
        "case_no": case.case_no,
        "matter_code": case.matter_code,
        "sector": case.sector,
        "state": case.state,
        "applicant": vars(case.applicant).copy(),
        "materials": [vars(m).copy() for m in case.materials],
        "form": dict(case.form),
        "receipt_no": case.receipt_no,
        "promised_by": case.promised_by,
        "missing_materials": list(case.missing_materials),
        "sector_ref": case.sector_ref,
        "opinion": case.opinion,
        "version": case.version,
    }


def _case_from_row(row: Mapping[str, Any], events: list[CaseEvent]) -> Case:
    return Case(
        case_no=row["case_no"],
        matter_code=row["matter_code"],
        sector=row["sector"],
        applicant=Applicant(**row["applicant"]),
        materials=tuple(SubmittedMaterial(**m) for m in row["materials"]),
        form=row["form"],
        state=CaseState(row["state"]),
        events=events,
        receipt_no=row["receipt_no"],
        promised_by=row["promised_by"],
        missing_materials=tuple(row["missing_materials"]),
        sector_ref=row["sector_ref"],
        opinion=row["opinion"],
        version=row["version"],
    )


def _event_row(case_no: str, e: CaseEvent) -> dict[str, Any]:
    return {
        "case_no": case_no,
        "seq": e.seq,
        "at": e.at,
        "trigger": e.trigger,
        "from_state": e.from_state,
        "to_state": e.to_state,
        "actor": str(e.actor),
        "reason": e.reason,
        "data": dict(e.data),
    }


def _event_from_row(r: Mapping[str, Any]) -> CaseEvent:
    return CaseEvent(
        seq=r["seq"],
        at=as_utc(r["at"]),
        trigger=Trigger(r["trigger"]),
        from_state=CaseState(r["from_state"]) if r["from_state"] else None,
        to_state=CaseState(r["to_state"]),
        actor=Actor.parse(r["actor"]),
        reason=r["reason"],
        data=r["data"],
    )


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    case_no: str
    sector: str
    operation: str
    idempotency_key: str
    status: str
    deliveries: int
    available_at: datetime


class OutboxRepository:
    PENDING, DONE, DEAD = "pending", "done", "dead"

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, case_no: str, sector: str, operation: str, idempotency_key: str, available_at: datetime) -> None:
        self._conn.execute(
            insert(t.outbox).values(
                case_no=case_no,
                sector=sector,
                operation=operation,
                idempotency_key=idempotency_key,
                status=self.PENDING,
                deliveries=0,
                available_at=available_at,
                created_at=available_at,
            )
        )

    def claim_due(self, owner: str, now: datetime, lease_until: datetime, limit: int) -> list[OutboxMessage]:
        """Lease up to `limit` due messages to `owner`; an expired lease (a dead dispatcher) is taken over."""
        due = and_(
            t.outbox.c.status == self.PENDING,
            t.outbox.c.available_at <= now,
            or_(t.outbox.c.lease_until.is_(None), t.outbox.c.lease_until < now),
        )
        ids = list(
            self._conn.execute(
                select(t.outbox.c.id).where(due).order_by(t.outbox.c.available_at, t.outbox.c.id).limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if not ids:
            return []
        self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id.in_(ids))
            .values(lease_owner=owner, lease_until=lease_until, deliveries=t.outbox.c.deliveries + 1)
        )
        return [m for m in (self.get(i) for i in ids) if m is not None]

    def get(self, message_id: int) -> OutboxMessage | None:
        row = self._conn.execute(select(t.outbox).where(t.outbox.c.id == message_id)).mappings().first()
        return None if row is None else _outbox_from_row(row)

    def holds_lease(self, message_id: int, owner: str) -> bool:
        """Still ours and still pending? If not, another dispatcher took over: store nothing."""
        row = self._conn.execute(
            select(t.outbox.c.status, t.outbox.c.lease_owner).where(t.outbox.c.id == message_id)
        ).first()
        return row is not None and row.status == self.PENDING and row.lease_owner == owner

    def complete(self, message_id: int, now: datetime) -> None:
        self._finish(message_id, self.DONE, now)

    def mark_dead(self, message_id: int, now: datetime) -> None:
        self._finish(message_id, self.DEAD, now)

    def reschedule(self, message_id: int, available_at: datetime) -> None:
        self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == message_id)
            .values(available_at=available_at, lease_owner=None, lease_until=None)
        )

    def count(self, status: str) -> int:
        return len(self._conn.execute(select(t.outbox.c.id).where(t.outbox.c.status == status)).all())

    def _finish(self, message_id: int, status: str, now: datetime) -> None:
        self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == message_id)
            .values(status=status, done_at=now, lease_owner=None, lease_until=None)
        )


def _outbox_from_row(row: Mapping[str, Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"],
        case_no=row["case_no"],
        sector=row["sector"],
        operation=row["operation"],
        idempotency_key=row["idempotency_key"],
        status=row["status"],
        deliveries=row["deliveries"],
        available_at=as_utc(row["available_at"]),
    )


@dataclass(frozen=True)
class DeadLetter:
    id: int
    outbox_id: int
    case_no: str
    sector: str
    operation: str
    idempotency_key: str
    error_class: str
    error_message: str
    attempts: int
    rendered_request: Any
    status: str
    created_at: datetime


class DeadLetterRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, message: OutboxMessage, error_class: str, error_message: str, attempts: int,
            rendered_request: Any, now: datetime) -> None:
        self._conn.execute(
            insert(t.dead_letters).values(
                outbox_id=message.id,
                case_no=message.case_no,
                sector=message.sector,
                operation=message.operation,
                idempotency_key=message.idempotency_key,
                error_class=error_class,
                error_message=error_message,
                attempts=attempts,
                rendered_request=rendered_request,
                status="dead",
                created_at=now,
            )
        )

    def list(self, case_no: str | None = None, limit: int = 100) -> Sequence[DeadLetter]:
        query = select(t.dead_letters).order_by(t.dead_letters.c.id.desc()).limit(limit)
        if case_no is not None:
            query = query.where(t.dead_letters.c.case_no == case_no)
        return [
            DeadLetter(**{**row, "created_at": as_utc(row["created_at"])})
            for row in self._conn.execute(query).mappings()
        ]


@dataclass(frozen=True)
class StoredResponse:
    request_hash: str
    case_no: str
    status_code: int
    response: Mapping[str, Any]


class IdempotencyRepository:
    """Remembers the first answer to each Idempotency-Key, in the same transaction as the case."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, key: str) -> StoredResponse | None:
        row = self._conn.execute(select(t.idempotency_keys).where(t.idempotency_keys.c.key == key)).mappings().first()
        if row is None:
            return None
        return StoredResponse(row["request_hash"], row["case_no"], row["status_code"], row["response"])

    def add(self, key: str, stored: StoredResponse, now: datetime) -> None:
        self._conn.execute(
            insert(t.idempotency_keys).values(
                key=key,
                request_hash=stored.request_hash,
                case_no=stored.case_no,
                status_code=stored.status_code,
                response=dict(stored.response),
                created_at=now,
            )
        )

