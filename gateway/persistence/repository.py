"""Repositories: the only code that turns rows into domain objects and back."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, and_, delete, func, insert, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from gateway.domain.case import (
    Actor,
    Agent,
    Applicant,
    Case,
    CaseEvent,
    CaseState,
    Certificate,
    Completion,
    Delivery,
    Evaluation,
    SubmittedMaterial,
    Task,
    TaskState,
    Trigger,
)
from gateway.domain.causes import cause_key
from gateway.domain.clock import as_utc
from gateway.domain.deadline import Deadline, DeadlineKind
from gateway.domain.lifecycle import announced_as
from gateway.domain.matter import TimeUnit
from gateway.domain.results import CertificateDraft, SectorResult
from gateway.observability.correlation import current_correlation_id
from gateway.persistence import tables as t
from gateway.persistence.keyset import Key, Keyset
from gateway.persistence.personal_data import SEALED_COLUMNS, PersonalData

SEALED_CASE_COLUMNS = SEALED_COLUMNS["cases"][1]  # written sealed, read opened (see personal_data.py)
APPLICANT_CASES = Keyset("my-cases", (datetime, str), descending=True)  # "my cases": newest first
CASE_LINES = Keyset("cases", (datetime, str), descending=True)  # the operators' case lists: newest first


def numbers_taken_apart(dialect: str) -> bool:
    """Whether case numbers come from `take_number_apart` (PostgreSQL) or `next_sequence` (SQLite)."""
    return dialect == "postgresql"


def idempotency_key(case_no: str, task_id: str, operation: str, round: int = 0) -> str:
    """Stable across retries and replays: case number + task + operation (invariant 2). A task's later round (a
    correction or resubmission sent again) has a key of its own, `…:r<round>`, so the sector sees a new request."""
    key = f"{case_no}:{task_id}:{operation}"
    return key if round == 0 else f"{key}:r{round}"


EVENT_TASK = "e"  # an outbox row of a case event carries, as its task, `e<event seq>` (no task: the case's event)
Subscribers = Callable[[str], Sequence[str]]  # a case event -> the active sectors subscribed to it


def event_key(case_no: str, seq: int, sector: str) -> str:
    """A case event's delivery to one subscribed sector: stable across retries and replays (invariant 2)."""
    return f"{case_no}:event:{seq}:{sector}"


class StaleCase(Exception):
    """Someone else changed the case since it was read (optimistic concurrency)."""

    def __init__(self, case_no: str) -> None:
        super().__init__(f"办件 {case_no} 在读取后已被修改，请重新读取后再操作")


@dataclass(frozen=True)
class CaseLine:
    """A case as a list shows it: no personal data."""
    case_no: str
    matter_code: str
    state: str
    created_at: datetime  # UTC
    deadline_due: date | None
    overdue: bool  # flagged by e-supervision (`deadline.overdue`)

    @property
    def key(self) -> Key:
        return (self.created_at, self.case_no)


def sent_to(sectors: frozenset[str]) -> ColumnElement[bool]:
    """A condition on `cases`: the case has a message (an outbox row) to one of `sectors` — what a sector
    administrator's scope admits."""
    o = t.outbox.c
    return select(o.id).where(o.case_no == t.cases.c.case_no, o.sector.in_(sorted(sectors))).exists()


def with_message(kind: str, now: datetime) -> ColumnElement[bool]:
    """A condition on `cases`: the case has an outbox message that is `pending` or `queued` (its status), `leased`
    (being delivered under a live lease) or `due` (open and due by `now`) — what the overview's outbox figures
    count, case by case."""
    o = t.outbox.c
    which = {"leased": [o.status.in_(OutboxRepository.OPEN), o.lease_until > now],
             "due": [o.status.in_(OutboxRepository.OPEN), o.available_at <= now]}.get(kind, [o.status == kind])
    return select(o.id).where(o.case_no == t.cases.c.case_no, *which).exists()


def flagged_overdue() -> ColumnElement[bool]:
    """A condition on `cases`: e-supervision has flagged its deadline overdue."""
    flag: ColumnElement[bool] = t.cases.c.deadline["overdue"].as_boolean()
    return flag == true()


class CaseRepository:
    def __init__(self, conn: Connection, personal: PersonalData, subscribers: Subscribers | None = None) -> None:
        self._conn = conn
        self._personal = personal
        self._subscribers = subscribers  # None: no sector subscribes to case events

    def add(self, case: Case, now: datetime) -> None:
        case.version = 1
        self._conn.execute(insert(t.cases).values(**self._case_row(case), created_at=now, updated_at=now))
        self._store_tasks(case)
        self._store_new_events(case)

    def get(self, case_no: str, *, for_update: bool = False) -> Case | None:
        """`for_update`: the case row stays locked until the transaction ends, so what is read is what `save`
        replaces — a second writer waits for the first and reads its result instead of meeting StaleCase.
        On PostgreSQL a row lock (FOR NO KEY UPDATE: rows referring to the case may still be added); SQLite's
        writing transactions hold the database's write lock from BEGIN IMMEDIATE anyway. Lock order: a case
        before its outbox rows."""
        query = select(t.cases).where(t.cases.c.case_no == case_no)
        row = self._conn.execute(query.with_for_update(key_share=True) if for_update else query).mappings().first()
        if row is None:
            return None
        tasks = self._conn.execute(
            select(t.case_tasks).where(t.case_tasks.c.case_no == case_no).order_by(t.case_tasks.c.task_id)
        ).mappings()
        opened = {**row, **{c: self._personal.open(row[c], f"cases.{c}") for c in SEALED_CASE_COLUMNS}}
        return _case_from_row(opened, self.events(case_no), [self._task_from_row(r) for r in tasks])

    def events(self, case_no: str) -> list[CaseEvent]:
        query = select(t.case_events).where(t.case_events.c.case_no == case_no).order_by(t.case_events.c.seq)
        return [self._event_from_row(r) for r in self._conn.execute(query).mappings()]

    def save(self, case: Case, now: datetime) -> None:
        """Store the case's changes; fail if it changed underneath us (optimistic concurrency)."""
        result = self._conn.execute(
            update(t.cases)
            .where(t.cases.c.case_no == case.case_no, t.cases.c.version == case.version)
            .values({**self._case_row(case), "version": case.version + 1, "updated_at": now})
        )
        if result.rowcount != 1:
            raise StaleCase(case.case_no)
        case.version += 1
        self._store_tasks(case)
        self._store_new_events(case)

    def for_applicant(self, id_number: str, after: Key | None = None, limit: int = 100) -> list[tuple[Key, str]]:
        """"My cases": (sort key, case number) of one applicant's cases, newest first (APPLICANT_CASES: by
        creation, then case number), after the key `after`, found by the blind index."""
        c = t.cases.c
        keys = (c.created_at, c.case_no)
        seek = APPLICANT_CASES.after(keys, after)
        query = (select(*keys).where(c.applicant_index == self._personal.index(id_number))
                 .where(*([] if seek is None else [seek])).order_by(*APPLICANT_CASES.order_by(keys)).limit(limit))
        return [((as_utc(at), case_no), case_no) for at, case_no in self._conn.execute(query)]

    def count_for_applicant(self, id_number: str) -> int:
        """How many cases one applicant has (cheap: the blind index)."""
        query = select(func.count()).select_from(t.cases).where(
            t.cases.c.applicant_index == self._personal.index(id_number))
        return int(self._conn.execute(query).scalar_one())

    def lines(self, where: Sequence[ColumnElement[bool]], after: Key | None, limit: int) -> list[CaseLine]:
        """The cases matching `where` (conditions on `cases`), newest first (CASE_LINES), after the key `after`."""
        c = t.cases.c
        keys = (c.created_at, c.case_no)
        seek = CASE_LINES.after(keys, after)
        query = (select(c.case_no, c.matter_code, c.state, c.created_at, c.deadline_due,
                        c.deadline["overdue"].as_boolean().label("overdue"))
                 .where(*where, *([] if seek is None else [seek])).order_by(*CASE_LINES.order_by(keys)).limit(limit))
        return [CaseLine(r.case_no, r.matter_code, r.state, as_utc(r.created_at), r.deadline_due, bool(r.overdue))
                for r in self._conn.execute(query)]

    def task_for_sector_ref(self, sector: str, sector_ref: str) -> tuple[str, str] | None:
        """(case number, task id) of the task this sector knows by `sector_ref`: at most one, whatever the
        bundle version (a unique index on case_tasks(sector, sector_ref))."""
        query = select(t.case_tasks.c.case_no, t.case_tasks.c.task_id).where(t.case_tasks.c.sector == sector,
                                                                              t.case_tasks.c.sector_ref == sector_ref)
        row = self._conn.execute(query).first()
        return None if row is None else (row.case_no, row.task_id)

    def due_for_clock(self, today: date, horizon: date, limit: int = 500) -> list[str]:
        """Cases whose running deadline falls before `horizon`, or that wait for a supplement."""
        query = select(t.cases.c.case_no).where(
            or_(
                and_(t.cases.c.deadline_due <= horizon,
                     t.cases.c.state.in_(["submitted", "accepted", "in_process"])),
                t.cases.c.state == "supplement_required",
            )
        ).order_by(t.cases.c.deadline_due).limit(limit)
        return list(self._conn.execute(query).scalars())

    def next_sequence(self, scope: str) -> int:
        """Next number in a daily sequence: a read-then-write, safe only inside a write transaction.
        On SQLite (one writer at a time anyway) this keeps a day's numbers gapless; PostgreSQL takes its
        numbers with `take_number_apart` instead."""
        current: int | None = self._conn.execute(  # the row lock makes concurrent submissions on PostgreSQL wait
            select(t.case_counters.c.last_seq).where(t.case_counters.c.scope == scope).with_for_update()
        ).scalar_one_or_none()
        if current is None:
            self._conn.execute(insert(t.case_counters).values(scope=scope, last_seq=1))
            return 1
        self._conn.execute(update(t.case_counters).where(t.case_counters.c.scope == scope).values(last_seq=current + 1))
        return current + 1

    def take_number_apart(self, scope: str) -> int:
        """Next number in a daily sequence in one statement (PostgreSQL), in a unit of work of its own.

        Why apart: inside the submission's transaction the counter row stays locked until that transaction
        commits, so on PostgreSQL every submission of one matter queued behind the whole of the one before
        (the bench's e2e submit latency). Here the row is locked for one statement. The price: a submission
        that fails after taking its number leaves a gap in the day's numbers, which are unique and increasing,
        not gapless (docs/hall.md, case numbers). The caller takes the number before opening the submission's unit
        of work, so it never holds one pooled connection while waiting for another."""
        counter = t.case_counters
        statement = (pg_insert(counter).values(scope=scope, last_seq=1)
                     .on_conflict_do_update(index_elements=[counter.c.scope],
                                            set_={"last_seq": counter.c.last_seq + 1})
                     .returning(counter.c.last_seq))
        return int(self._conn.execute(statement).scalar_one())

    def _store_tasks(self, case: Case) -> None:
        self._conn.execute(delete(t.case_tasks).where(t.case_tasks.c.case_no == case.case_no))
        if case.tasks:
            self._conn.execute(insert(t.case_tasks), [self._task_row(case.case_no, task) for task in case.tasks])

    def _store_new_events(self, case: Case) -> None:
        if case.new_events:
            self._conn.execute(insert(t.case_events), [self._event_row(case.case_no, e) for e in case.new_events])
            # What the hall is told (webhooks, the AMQP topic) commits with the event or not at all.
            self._conn.execute(insert(t.case_notifications), [_notification_row(case, e) for e in case.new_events])
            self._announce(case)
            case.new_events.clear()

    def _announce(self, case: Case) -> None:
        """Each subscribed sector's delivery of the new events it subscribes to commits with them or not at all."""
        if self._subscribers is None:
            return
        outbox = OutboxRepository(self._conn)
        for event in case.new_events:
            name = announced_as(event)
            if name is None:
                continue
            for sector in self._subscribers(name):
                outbox.add_event(case.case_no, sector, name, event.seq, event.at)

    def _case_row(self, case: Case) -> dict[str, Any]:
        row = self._plain_case_row(case)
        return {**row, **{c: self._personal.seal(row[c], f"cases.{c}") for c in SEALED_CASE_COLUMNS}}

    def _task_row(self, case_no: str, task: Task) -> dict[str, Any]:
        row = {"case_no": case_no, **_plain(task), "result": task.result.as_data() if task.result else None}
        return {**row, "opinion": self._personal.seal(row["opinion"], "case_tasks.opinion")}

    def _task_from_row(self, r: RowMapping) -> Task:
        return Task(r["task_id"], r["department"], r["credit_code"], r["sector"], r["lead"], TaskState(r["state"]),
                    r["sector_ref"], self._personal.open(r["opinion"], "case_tasks.opinion"), r["round"],
                    r["sector_told"], SectorResult.from_data(r["result"]) if r["result"] else None)

    def _event_row(self, case_no: str, e: CaseEvent) -> dict[str, Any]:
        return {
            "case_no": case_no,
            "seq": e.seq,
            "at": e.at,
            "trigger": e.trigger,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "actor": str(e.actor),
            "reason": self._personal.seal(e.reason, "case_events.reason"),
            "data": self._personal.seal(dict(e.data), "case_events.data"),
        }

    def _event_from_row(self, r: RowMapping) -> CaseEvent:
        return CaseEvent(
            seq=r["seq"],
            at=as_utc(r["at"]),
            trigger=Trigger(r["trigger"]),
            from_state=CaseState(r["from_state"]) if r["from_state"] else None,
            to_state=CaseState(r["to_state"]),
            actor=Actor.parse(r["actor"]),
            reason=self._personal.open(r["reason"], "case_events.reason"),
            data=self._personal.open(r["data"], "case_events.data"),
        )

    def _plain_case_row(self, case: Case) -> dict[str, Any]:
        return {
            "case_no": case.case_no,
            "matter_code": case.matter_code,
            "matter_version": case.matter_version,
            "state": case.state,
            "channel": case.channel,
            "region_code": case.region_code,
            "applicant": _plain(case.applicant),
            "applicant_index": self._personal.index(case.applicant.id_number),
            "agent": _plain(case.agent),
            "green_channel": list(case.green_channel),
            "materials": [m.as_data() for m in case.materials],
            "form": dict(case.form),
            "receipt_no": case.receipt_no,
            "deadline": _plain(case.deadline),
            "deadline_due": case.deadline.due if case.deadline else None,
            "missing_materials": list(case.missing_materials),
            "supplement_rounds": case.supplement_rounds,
            "opinion": case.opinion,
            "certificate": _plain(case.certificate),
            "certificate_draft": case.certificate_draft.as_data() if case.certificate_draft else None,
            "delivery": _plain(case.delivery),
            "evaluation": _plain(case.evaluation),
            "completion": case.completion,
            "version": case.version,
        }


def _notification_row(case: Case, e: CaseEvent) -> dict[str, Any]:
    """Identifiers and states only: no reason, no data, nothing personal leaves in a notification."""
    return {"case_no": case.case_no, "seq": e.seq, "trigger": e.trigger, "from_state": e.from_state,
            "to_state": e.to_state, "matter_code": case.matter_code, "at": e.at, "status": "pending"}


def _plain(value: Any) -> Any:
    """A dataclass as JSON-able data: dates as ISO text, enums as their values."""
    if value is None:
        return None
    out: dict[str, Any] = {}
    for f in fields(value):
        item = getattr(value, f.name)
        out[f.name] = item.isoformat() if isinstance(item, date) else (str(item) if isinstance(item, Enum) else item)
    return out


def _case_from_row(row: Mapping[str, Any], events: list[CaseEvent], tasks: list[Task]) -> Case:
    return Case(
        case_no=row["case_no"],
        matter_code=row["matter_code"],
        matter_version=row["matter_version"],
        applicant=Applicant(**row["applicant"]),
        materials=tuple(SubmittedMaterial.from_data(m) for m in row["materials"]),
        form=row["form"],
        channel=row["channel"],
        region_code=row["region_code"],
        agent=Agent(**row["agent"]) if row["agent"] else None,
        green_channel=tuple(row["green_channel"]),
        state=CaseState(row["state"]),
        events=events,
        tasks=tasks,
        receipt_no=row["receipt_no"],
        deadline=_deadline(row["deadline"]),
        missing_materials=tuple(row["missing_materials"]),
        supplement_rounds=row["supplement_rounds"],
        opinion=row["opinion"],
        certificate=_certificate(row["certificate"]),
        certificate_draft=CertificateDraft.from_data(row["certificate_draft"]) if row["certificate_draft"] else None,
        delivery=Delivery(**row["delivery"]) if row["delivery"] else None,
        evaluation=Evaluation(**row["evaluation"]) if row["evaluation"] else None,
        completion=Completion(row["completion"]) if row["completion"] else None,
        version=row["version"],
    )


def _deadline(data: Mapping[str, Any] | None) -> Deadline | None:
    if not data:
        return None
    return Deadline(DeadlineKind(data["kind"]), date.fromisoformat(data["due"]), TimeUnit(data["unit"]),
                    date.fromisoformat(data["paused_on"]) if data["paused_on"] else None,
                    data["warned"], data["overdue"])


def _certificate(data: Mapping[str, Any] | None) -> Certificate | None:
    if not data:
        return None
    valid_until = date.fromisoformat(data["valid_until"]) if data.get("valid_until") else None
    return Certificate(data["name"], data["number"], data["issuer"], valid_until)


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    case_no: str
    sector: str
    operation: str
    task_id: str
    idempotency_key: str
    priority: int
    status: str
    deliveries: int
    available_at: datetime
    bundle_version: str | None = None  # pinned by a replay with the original mapping; None: the active version
    correlation_id: str | None = None  # of the request or job that wrote it (gateway/observability/correlation.py)
    round: int = 0  # the task's round it belongs to (a correction or resubmission starts a new one)
    circuit_wait_since: datetime | None = None  # when it first met its sector's open circuit (None: never)
    bad_answers: int = 0  # a status poll's answers in a row that could not be read

    @property
    def event_seq(self) -> int | None:
        """The case event this row delivers to a subscribed sector (`add_event`); None: a task's message."""
        return int(self.task_id[len(EVENT_TASK):]) if self.task_id.startswith(EVENT_TASK) else None


RELAY_PREFIX = "relay:"  # lease owners that publish to the broker rather than deliver


class OutboxRepository:
    """pending → (queued, with a broker) → done | dead. A message is only ever *leased*, never locked across
    a sector call: `lease_owner` says who may record its outcome (`holds_lease`)."""

    PENDING, QUEUED, DONE, DEAD = "pending", "queued", "done", "dead"
    SUPERSEDED = "superseded"  # its task started a new round (or ended) before it was settled: never sent again
    OPEN = (PENDING, QUEUED)  # not yet settled

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, case_no: str, sector: str, operation: str, task_id: str, available_at: datetime,
            priority: int = 0, round: int = 0) -> None:
        """Queue one message; its idempotency key (case + task + operation + round) stays the same for ever."""
        self._conn.execute(
            insert(t.outbox).values(
                case_no=case_no,
                sector=sector,
                operation=operation,
                task_id=task_id,
                round=round,
                idempotency_key=idempotency_key(case_no, task_id, operation, round),
                priority=priority,
                status=self.PENDING,
                deliveries=0,
                available_at=available_at,
                created_at=available_at,
                correlation_id=current_correlation_id(),  # the work that caused it, followed to the sector
            )
        )

    def add_event(self, case_no: str, sector: str, event: str, seq: int, available_at: datetime) -> None:
        """Queue the delivery of a case event (`operation` is the event's name) to one sector subscribed to it."""
        self._conn.execute(
            insert(t.outbox).values(
                case_no=case_no, sector=sector, operation=event, task_id=f"{EVENT_TASK}{seq}", round=0,
                idempotency_key=event_key(case_no, seq, sector), priority=0, status=self.PENDING, deliveries=0,
                available_at=available_at, created_at=available_at, correlation_id=current_correlation_id(),
            )
        )

    def claim_due(self, owner: str, now: datetime, lease_until: datetime, limit: int,
                  delivering: bool = True) -> list[OutboxMessage]:
        """Lease up to `limit` due messages to `owner`; an expired lease (a dead dispatcher) is taken over.
        `delivering`: the owner will call the sector (counted in `deliveries`), not just publish them."""
        due = and_(
            t.outbox.c.status == self.PENDING,
            t.outbox.c.available_at <= now,
            or_(t.outbox.c.lease_until.is_(None), t.outbox.c.lease_until < now),
        )
        ids = list(
            self._conn.execute(
                select(t.outbox.c.id).where(due)
                .order_by(t.outbox.c.priority.desc(), t.outbox.c.available_at, t.outbox.c.id).limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if not ids:
            return []
        self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id.in_(ids))
            .values(lease_owner=owner, lease_until=lease_until,
                    deliveries=t.outbox.c.deliveries + (1 if delivering else 0))
        )
        rows = self._conn.execute(select(t.outbox).where(t.outbox.c.id.in_(ids))).mappings()
        by_id = {row["id"]: _outbox_from_row(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]  # in claim order: green channel first

    def mark_queued(self, ids: Sequence[int], owner: str, now: datetime) -> int:
        """The broker confirmed these: they leave the outbox's due list (a worker will take them)."""
        if not ids:
            return 0
        result = self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id.in_(ids), t.outbox.c.status == self.PENDING, t.outbox.c.lease_owner == owner)
            .values(status=self.QUEUED, published_at=now, lease_owner=None, lease_until=None)
        )
        return result.rowcount

    def take(self, message_id: int, owner: str, now: datetime, lease_until: datetime) -> OutboxMessage | None:
        """A worker took this message from the broker: it is the one that delivers it now. None when it is
        settled already or back to pending (a redelivered copy of a message whose outcome is stored) — or
        while another worker's lease on it is live (`held_by_another`): a copy the broker redelivered after
        that worker's connection dropped, or one the outbox sweep published again, never makes a second call
        to the sector while the first may still be running. A lapsed lease (its worker died) is taken over."""
        o = t.outbox.c
        published = or_(o.status == self.QUEUED,  # or confirmed, and the relay not yet done marking it
                        and_(o.status == self.PENDING, o.lease_owner.startswith(RELAY_PREFIX)))
        free = or_(o.lease_owner.is_(None), o.lease_owner == owner, o.lease_owner.startswith(RELAY_PREFIX),
                   o.lease_until.is_(None), o.lease_until < now)
        result = self._conn.execute(
            update(t.outbox)
            .where(o.id == message_id, published, free)
            .values(status=self.QUEUED, lease_owner=owner, lease_until=lease_until,
                    deliveries=t.outbox.c.deliveries + 1,
                    # taken before the relay marked it: it came through the broker all the same
                    published_at=func.coalesce(t.outbox.c.published_at, now))
        )
        return self.get(message_id) if result.rowcount == 1 else None

    def held_by_another(self, message_id: int, owner: str, now: datetime) -> datetime | None:
        """Until when another worker's live lease holds this unsettled message (None: it does not)."""
        o = t.outbox.c
        row = self._conn.execute(select(o.status, o.lease_owner, o.lease_until).where(o.id == message_id)).first()
        if row is None or row.status not in self.OPEN or row.lease_owner in (None, owner) or row.lease_until is None \
                or row.lease_owner.startswith(RELAY_PREFIX):
            return None
        until = as_utc(row.lease_until)
        return until if until > now else None

    def release(self, ids: Sequence[int], owner: str) -> None:
        """The relay lost its connection before these were confirmed: due again at once, not after the lease."""
        if ids:
            self._conn.execute(update(t.outbox).where(t.outbox.c.id.in_(ids), t.outbox.c.status == self.PENDING,
                                                      t.outbox.c.lease_owner == owner)
                               .values(lease_owner=None, lease_until=None))

    def requeue_stale(self, published_before: datetime, now: datetime) -> int:
        """Queued long ago, never taken or never settled (a broker that lost it): due again, published again.
        A copy still in the broker is harmless: whoever takes the second finds it settled."""
        result = self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.status == self.QUEUED, t.outbox.c.published_at < published_before,
                   or_(t.outbox.c.lease_until.is_(None), t.outbox.c.lease_until < now))
            .values(status=self.PENDING, available_at=now, lease_owner=None, lease_until=None)
        )
        return result.rowcount

    def reopen(self, message_ids: Sequence[int], now: datetime, pin: str | None = None) -> int:
        """Dead messages replayed: due now, with the same idempotency key as every earlier attempt, delivered
        with bundle version `pin` (None: the sector's active one). Only dead rows reopen, so a row reopens
        once per death however many replays race for it. Returns how many reopened."""
        if not message_ids:
            return 0
        result = self._conn.execute(
            update(t.outbox).where(t.outbox.c.id.in_(message_ids), t.outbox.c.status == self.DEAD)
            .values(status=self.PENDING, available_at=now, done_at=None, lease_owner=None, lease_until=None,
                    bundle_version=pin, replays=t.outbox.c.replays + 1, circuit_wait_since=None,
                    bad_answers=0)
        )
        return result.rowcount

    def get(self, message_id: int) -> OutboxMessage | None:
        row = self._conn.execute(select(t.outbox).where(t.outbox.c.id == message_id)).mappings().first()
        return None if row is None else _outbox_from_row(row)

    def supersede(self, case_no: str, task_id: str, below_round: int, now: datetime) -> int:
        """The task's unsettled messages of rounds before `below_round` are never sent: a dispatcher or worker
        holding one finds it settled (`holds_lease`) and stores nothing. Returns how many."""
        o = t.outbox.c
        result = self._conn.execute(
            update(t.outbox).where(o.case_no == case_no, o.task_id == task_id, o.round < below_round,
                                   o.status.in_(self.OPEN))
            .values(status=self.SUPERSEDED, done_at=now, lease_owner=None, lease_until=None))
        return result.rowcount

    def holds_lease(self, message_id: int, owner: str) -> bool:
        """Still ours and still pending? If not, another dispatcher took over: store nothing."""
        row = self._conn.execute(  # locked: two recorders of one message take turns, the second sees it settled
            select(t.outbox.c.status, t.outbox.c.lease_owner).where(t.outbox.c.id == message_id).with_for_update()
        ).first()
        return row is not None and row.status in self.OPEN and row.lease_owner == owner

    def complete(self, message_id: int, now: datetime) -> None:
        self._finish(message_id, self.DONE, now)

    def mark_dead(self, message_id: int, now: datetime) -> None:
        self._finish(message_id, self.DEAD, now)

    def reschedule(self, message_id: int, available_at: datetime) -> None:
        self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == message_id)
            .values(status=self.PENDING, available_at=available_at, lease_owner=None, lease_until=None,
                    circuit_wait_since=None, bad_answers=0)  # answered: a later open circuit is a new wait
        )

    def bad_answer(self, message_id: int, available_at: datetime) -> None:
        """A status answer that could not be read: counted (`bad_answers`, one more in a row) and asked again at
        `available_at`."""
        self._due_again(message_id, available_at, circuit_wait_since=None, bad_answers=t.outbox.c.bad_answers + 1)

    def wait_for_circuit(self, message_id: int, available_at: datetime, now: datetime, *, spent: bool) -> None:
        """Due again at `available_at` (when the sector's breaker may close), without counting this take as a
        delivery unless `spent` (a call reached the sector first); the wait counts from the first such refusal."""
        self._due_again(message_id, available_at, deliveries=t.outbox.c.deliveries - (0 if spent else 1),
                        circuit_wait_since=func.coalesce(t.outbox.c.circuit_wait_since, now))

    def wait_for_answer(self, message_id: int, available_at: datetime) -> None:
        """Due again at `available_at`, this take not counted as a delivery: its answer is on its way across a
        gap. Unlike a circuit's wait, nothing bounds it here (the ferry's own `answer_within_ms` does)."""
        self._due_again(message_id, available_at, deliveries=t.outbox.c.deliveries - 1)

    def _due_again(self, message_id: int, available_at: datetime, **more: Any) -> None:
        """Back to pending, due at `available_at`, its lease released; `more` says what else the wait changes."""
        self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == message_id)
            .values(status=self.PENDING, available_at=available_at, lease_owner=None, lease_until=None, **more)
        )

    def due_now(self, idempotency_key: str, now: datetime) -> int:
        """The pending messages with this idempotency key, due at `now` if they were due later; how many."""
        result = self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.idempotency_key == idempotency_key, t.outbox.c.status == self.PENDING,
                   t.outbox.c.available_at > now)
            .values(available_at=now)
        )
        return int(result.rowcount or 0)

    def _finish(self, message_id: int, status: str, now: datetime) -> None:
        self._conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == message_id)
            .values(status=status, done_at=now, lease_owner=None, lease_until=None)
        )


def _outbox_from_row(row: RowMapping) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"],
        case_no=row["case_no"],
        sector=row["sector"],
        operation=row["operation"],
        task_id=row["task_id"],
        idempotency_key=row["idempotency_key"],
        priority=row["priority"],
        status=row["status"],
        deliveries=row["deliveries"],
        available_at=as_utc(row["available_at"]),
        bundle_version=row["bundle_version"],
        correlation_id=row["correlation_id"],
        round=row["round"],
        circuit_wait_since=None if row["circuit_wait_since"] is None else as_utc(row["circuit_wait_since"]),
        bad_answers=row["bad_answers"],
    )


@dataclass(frozen=True)
class Failure:
    """Everything an operator needs to understand a dead message and replay it."""

    error_class: str
    error_message: str
    attempts: int = 0  # calls made in the last delivery
    rendered_request: Any = None  # what was (or would have been) sent, as JSON
    canonical_payload: Any = None  # the canonical message it was rendered from
    last_response: Any = None  # the sector's last raw answer: status, headers, body
    history: Sequence[Mapping[str, Any]] = ()  # every call: at, failure, message, elapsed_ms
    bundle_version: str | None = None


@dataclass(frozen=True)
class DeadLetter(Failure):
    id: int = 0
    outbox_id: int | None = None  # None: the broker dead-lettered a message naming no outbox row we know
    case_no: str = ""
    sector: str = ""
    operation: str = ""
    idempotency_key: str = ""
    deliveries: int = 0  # times the message was taken (across workers, restarts and replays)
    status: str = "dead"  # dead | replayed | discarded
    created_at: datetime | None = None
    replayed_at: datetime | None = None
    replayed_by: str | None = None
    replay_reason: str | None = None
    replay_run_id: int | None = None  # the bulk replay it belongs to; None: replayed one by one (or not yet)
    discarded_at: datetime | None = None
    discarded_by: str | None = None
    discard_reason: str | None = None
    case_outcome: str | None = None  # what the discard did to the case (case.DISCARD_OUTCOMES)
    superseded_at: datetime | None = None
    cause: str | None = None  # sector/error_class: the error text normalised (gateway/domain/causes.py)


_SEALED_DEAD_LETTER = SEALED_COLUMNS["dead_letters"][1]
_DEAD_LETTER_TIMES = ("created_at", "replayed_at", "discarded_at", "superseded_at")
Where = Sequence[ColumnElement[bool]]  # conditions on `dead_letters` (the operators' filter, as SQL)


@dataclass(frozen=True)
class ReplayedLetter:
    """What a replay needs to reopen a letter's message: its outbox row and the version it died with."""
    outbox_id: int
    bundle_version: str | None


class DeadLetterRepository:
    """dead → replayed | discarded. Every change is a conditional UPDATE on `status = dead`: of two
    operators (or processes) acting on one letter at once, exactly one changes it."""

    DEAD, REPLAYED, DISCARDED = "dead", "replayed", "discarded"
    SUPERSEDED = "superseded"  # its task was sent again in a new round (a correction) or ended: nothing to do

    def __init__(self, conn: Connection, personal: PersonalData) -> None:
        self._conn = conn
        self._personal = personal

    def add(self, message: OutboxMessage | None, failure: Failure, now: datetime, *,
            about: Mapping[str, Any] | None = None) -> int:
        """Keep a failure; `about` names case, sector, operation and key when there is no outbox row."""
        if message is not None:
            about = {"outbox_id": message.id, "case_no": message.case_no, "sector": message.sector,
                     "operation": message.operation, "idempotency_key": message.idempotency_key,
                     "deliveries": message.deliveries}
        names = dict(about or {})
        plain = {f.name: getattr(failure, f.name) for f in fields(Failure)}
        plain["history"] = [dict(h) for h in failure.history]
        sealed = {c: self._personal.seal(plain[c], f"dead_letters.{c}") for c in _SEALED_DEAD_LETTER}
        cause = cause_key(failure.error_class, str(names.get("sector", "")), failure.error_message)
        row = {"outbox_id": None, "deliveries": 0, **names, **plain, **sealed, "status": self.DEAD, "created_at": now,
               "cause": cause}
        key = self._conn.execute(insert(t.dead_letters).values(**row)).inserted_primary_key
        assert key is not None  # an INSERT of one row always has its key
        return int(key[0])

    def get(self, dead_letter_id: int) -> DeadLetter | None:
        row = self._conn.execute(select(t.dead_letters).where(t.dead_letters.c.id == dead_letter_id)).mappings().first()
        return None if row is None else self._from_row(row)

    def list(self, case_no: str | None = None, limit: int = 100) -> Sequence[DeadLetter]:
        query = select(t.dead_letters).order_by(t.dead_letters.c.id.desc()).limit(limit)
        if case_no is not None:
            query = query.where(t.dead_letters.c.case_no == case_no)
        return [self._from_row(row) for row in self._conn.execute(query).mappings()]

    def mark_replayed(self, dead_letter_id: int, by: str, now: datetime, reason: str | None = None) -> bool:
        result = self._conn.execute(
            update(t.dead_letters).where(t.dead_letters.c.id == dead_letter_id, t.dead_letters.c.status == self.DEAD)
            .values(status=self.REPLAYED, replayed_at=now, replayed_by=by, replay_reason=reason))
        return result.rowcount == 1

    # -- the operators' queries (conditions built by `ops.dead_letters`) ------------------------------
    def page(self, where: Where, order_by: Sequence[ColumnElement[Any]], limit: int) -> builtins.list[DeadLetter]:
        query = select(t.dead_letters).where(*where).order_by(*order_by).limit(limit)
        return [self._from_row(row) for row in self._conn.execute(query).mappings()]

    def count(self, where: Where) -> int:
        return int(self._conn.execute(select(func.count()).select_from(t.dead_letters).where(*where)).scalar_one())

    def counts(self, where: Where) -> builtins.list[tuple[str, str, int]]:
        """(sector, error class, how many), the largest first."""
        d = t.dead_letters.c
        n = func.count().label("n")
        query = select(d.sector, d.error_class, n).where(*where).group_by(d.sector, d.error_class)
        rows = self._conn.execute(query.order_by(n.desc(), d.sector, d.error_class)).all()
        return [(r.sector, r.error_class, int(r.n)) for r in rows]

    def versions(self, where: Where) -> set[tuple[str, str | None]]:
        """The distinct (sector, bundle version) the matching letters died with."""
        d = t.dead_letters.c
        return {(r.sector, r.bundle_version)
                for r in self._conn.execute(select(d.sector, d.bundle_version).where(*where).distinct())}

    def join_run(self, where: Where, run_id: int) -> int:
        """Freeze a bulk replay's letters: the matching ones still dead carry its id from now on."""
        result = self._conn.execute(
            update(t.dead_letters).where(*where, t.dead_letters.c.status == self.DEAD).values(replay_run_id=run_id))
        return result.rowcount

    def replay_batch(self, run_id: int, by: str, reason: str, now: datetime,
                     limit: int) -> builtins.list[ReplayedLetter]:
        """Mark up to `limit` of the run's letters still dead as replayed; returns exactly the ones this call
        changed. Letters another process marked meanwhile are not returned (status is re-checked)."""
        d = t.dead_letters.c
        # Chosen and locked first, in a statement of its own: as a subquery of the UPDATE, PostgreSQL may run
        # it again per row, and with SKIP LOCKED each run finds other rows (a batch beyond its limit).
        batch = list(self._conn.execute(
            select(d.id).where(d.replay_run_id == run_id, d.status == self.DEAD).order_by(d.id).limit(limit)
            .with_for_update(skip_locked=True)).scalars())  # PostgreSQL: two resumers take different batches
        if not batch:
            return []
        result = self._conn.execute(
            update(t.dead_letters).where(d.id.in_(batch), d.status == self.DEAD, d.replay_run_id == run_id)
            .values(status=self.REPLAYED, replayed_at=now, replayed_by=by, replay_reason=reason)
            .returning(d.outbox_id, d.bundle_version))
        return [ReplayedLetter(r.outbox_id, r.bundle_version) for r in result]

    def leave_run(self, run_id: int) -> int:
        """Release a cancelled run's letters still dead: in no run, replayable again. Waits (PostgreSQL) for a
        batch holding some of them and then skips those it replayed (status is re-checked)."""
        d = t.dead_letters.c
        result = self._conn.execute(update(t.dead_letters).where(d.replay_run_id == run_id, d.status == self.DEAD)
                                    .values(replay_run_id=None))
        return result.rowcount

    def causes(self, where: Where) -> builtins.list[tuple[str, str, str, int, datetime, datetime, int]]:
        """(error class, sector, cause, how many, first, last, its oldest letter's id) per cause, the largest first
        (ties: the older group first).
        Letters without a cause yet (sealed, written before causes existed) group under ''."""
        d = t.dead_letters.c
        n, cause = func.count().label("n"), func.coalesce(d.cause, "").label("cause")
        query = (select(d.error_class, d.sector, cause, n, func.min(d.created_at), func.max(d.created_at),
                        func.min(d.id)).where(*where).group_by(d.error_class, d.sector, cause)
                 .order_by(n.desc(), func.min(d.id)))
        return [(r[0], r[1], r[2], int(r[3]), as_utc(r[4]), as_utc(r[5]), int(r[6]))
                for r in self._conn.execute(query)]

    def set_cause(self, dead_letter_id: int, cause: str) -> None:
        self._conn.execute(update(t.dead_letters).where(t.dead_letters.c.id == dead_letter_id).values(cause=cause))

    def still_dead_in_run(self, run_id: int) -> bool:
        d = t.dead_letters.c
        found = self._conn.execute(select(d.id).where(d.replay_run_id == run_id, d.status == self.DEAD).limit(1))
        return found.first() is not None

    def discard(self, where: Where, by: str, reason: str, now: datetime, case_outcome: str | None = None) -> int:
        """Set aside for good the matching letters still dead: no replay filter matches them any more."""
        result = self._conn.execute(
            update(t.dead_letters).where(*where, t.dead_letters.c.status == self.DEAD)
            .values(status=self.DISCARDED, discarded_at=now, discarded_by=by, discard_reason=reason,
                    case_outcome=case_outcome))
        return result.rowcount

    def still_dead(self, where: Where) -> builtins.list[tuple[int, str, int | None]]:
        """(id, case number, outbox id) of the matching letters still dead, oldest first."""
        d = t.dead_letters.c
        rows = self._conn.execute(select(d.id, d.case_no, d.outbox_id).where(*where, d.status == self.DEAD)
                                  .order_by(d.id))
        return [(r.id, r.case_no, r.outbox_id) for r in rows]

    def supersede(self, case_no: str, task_id: str, below_round: int, now: datetime) -> int:
        """The task's dead letters left by messages of rounds before `below_round`: nothing to replay any more."""
        d, o = t.dead_letters.c, t.outbox.c
        earlier = select(o.id).where(o.case_no == case_no, o.task_id == task_id, o.round < below_round)
        result = self._conn.execute(
            update(t.dead_letters).where(d.case_no == case_no, d.status == self.DEAD, d.outbox_id.in_(earlier))
            .values(status=self.SUPERSEDED, superseded_at=now))
        return result.rowcount

    def _from_row(self, row: RowMapping) -> DeadLetter:
        opened = {c: self._personal.open(row[c], f"dead_letters.{c}") for c in _SEALED_DEAD_LETTER}
        times = {c: as_utc(row[c]) if row[c] else None for c in _DEAD_LETTER_TIMES}
        return DeadLetter(**{**row, **opened, **times, "history": tuple(opened["history"] or ())})


@dataclass(frozen=True)
class StoredResponse:
    request_hash: str
    case_no: str
    status_code: int
    response: Mapping[str, Any]


class IdempotencyRepository:
    """Remembers the first answer to each Idempotency-Key of each identity, in the same transaction as the case.
    A key is looked up only among its owner's: another identity's use of it is neither found nor revealed."""

    def __init__(self, conn: Connection, personal: PersonalData) -> None:
        self._conn = conn
        self._personal = personal

    def get(self, owner: str, key: str) -> StoredResponse | None:
        keys = t.idempotency_keys
        row = self._conn.execute(select(keys).where(keys.c.owner == owner, keys.c.key == key)).mappings().first()
        if row is None:
            return None
        return StoredResponse(row["request_hash"], row["case_no"], row["status_code"],
                              self._personal.open(row["response"], "idempotency_keys.response"))

    def add(self, owner: str, key: str, stored: StoredResponse, now: datetime) -> None:
        self._conn.execute(
            insert(t.idempotency_keys).values(
                owner=owner,
                key=key,
                request_hash=stored.request_hash,
                case_no=stored.case_no,
                status_code=stored.status_code,
                response=self._personal.seal(dict(stored.response), "idempotency_keys.response"),
                created_at=now,
            )
        )
