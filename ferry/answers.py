"""What the agent sends back: an `answer` for each message it delivered, a `decision` for each status change its
own polling saw (the entry bodies the ferry's format fixes), and the outbox they wait in until a batch carries
them.

An answer says how the sector took the message: `ok` with the canonical result, `refused` with the sector's final
no (code, way forward, missing materials), or `failed` with the failure class, message and whether another try
may succeed. A decision is the canonical status result with the identifiers the near side finds the task by.
Free text (a sector's message, its opinion) is masked: an ID or phone number it quotes never leaves the agent.
Each row is stored in the same transaction as the state change that made it, and keeps its entry id when it
is sent again after a crash: the near side suppresses the duplicate by that id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from adapters import CanonicalResult, DeliveryError, Entry, FailureClass, SectorRefusal, mask_text
from ferry.tables import AgentTables

OK, REFUSED, FAILED = "ok", "refused", "failed"
ANSWER, DECISION = "answer", "decision"
FREE_TEXT = ("opinion", "message", "sector_message")  # what a person at the sector wrote


def answer_ok(message_id: str, key: str | None, operation: str, result: CanonicalResult) -> dict[str, Any]:
    return _answer(message_id, key, operation, OK, _masked(result), None)


def answer_refused(message_id: str, key: str | None, operation: str, refusal: SectorRefusal) -> dict[str, Any]:
    return _answer(message_id, key, operation, REFUSED, None, {
        "failure": str(refusal.failure), "message": mask_text(refusal.sector_message or refusal.message),
        "retryable": False, "code": refusal.code, "way": refusal.way, "missing": list(refusal.missing)})


def answer_failed(message_id: str, key: str | None, operation: str, error: DeliveryError) -> dict[str, Any]:
    return _answer(message_id, key, operation, FAILED, None, {
        "failure": str(error.failure), "message": mask_text(error.message), "retryable": error.retryable,
        "code": error.business_code, "way": None, "missing": []})


def answer_not_delivered(message_id: str, key: str | None, operation: str, why: str,
                         failure: FailureClass = FailureClass.TRANSPORT) -> dict[str, Any]:
    """Nothing reached the sector and trying again as it is will not change that (no bundle installed for it, a
    message the agent cannot read): a failure the near side shows, not a message lost on the way."""
    return _answer(message_id, key, operation, FAILED, None, {
        "failure": str(failure), "message": mask_text(why), "retryable": False, "code": None, "way": None,
        "missing": []})


def _answer(message_id: str, key: str | None, operation: str, outcome: str, result: dict[str, Any] | None,
            error: dict[str, Any] | None) -> dict[str, Any]:
    return {"message": message_id, "key": key, "operation": operation, "outcome": outcome, "result": result,
            "error": error}


def decision(result: CanonicalResult, *, case_no: str | None, task_id: str | None, idempotency_key: str,
             sector_ref: str) -> dict[str, Any]:
    return {**_masked(result), "case_no": case_no, "task_id": task_id, "idempotency_key": idempotency_key,
            "sector_ref": sector_ref}


def _masked(result: CanonicalResult) -> dict[str, Any]:
    """The result with its free text masked; identifiers (a sector reference of digits) stay as they are."""
    return {key: mask_text(value) if key in FREE_TEXT and isinstance(value, str) else value
            for key, value in result.items()}


@dataclass(frozen=True)
class Pending:
    entry: Entry
    operation: str


class Outbox:
    """Answers and decisions made and not yet sent, then the batch that carried them (kept `keep` long, so a
    message delivered again after a crash finds its answer)."""

    def __init__(self, engine: Engine, tables: AgentTables) -> None:
        self.engine = engine
        self.t = tables.outbox

    def add(self, conn: Connection, kind: str, body: Mapping[str, Any], *, key: str | None, operation: str,
            answer_to: str | None, now: datetime) -> str:
        entry_id = uuid.uuid4().hex
        conn.execute(insert(self.t).values(id=entry_id, type=kind, key=key, operation=operation, answer_to=answer_to,
                                           body=json.dumps(body, ensure_ascii=False, sort_keys=True),
                                           created_at=now))
        return entry_id

    def answered(self, message_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(select(self.t.c.id).where(self.t.c.answer_to == message_id)).first() is not None

    def pending(self, limit: int) -> list[Pending]:
        query = select(self.t).where(self.t.c.sent_seq.is_(None)).order_by(self.t.c.created_at, self.t.c.id)
        with self.engine.begin() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [Pending(Entry(id=r["id"], type=r["type"], body=r["body"].encode("utf-8"), key=r["key"]),
                        r["operation"]) for r in rows]

    def sent(self, ids: list[str], seq: int, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(self.t).where(self.t.c.id.in_(ids)).values(sent_seq=seq, sent_at=now))

    def forget_sent_before(self, before: datetime) -> int:
        with self.engine.begin() as conn:
            return conn.execute(delete(self.t).where(self.t.c.sent_at < before)).rowcount

    def counts(self) -> dict[str, int]:
        """Waiting to be sent, by type."""
        query = select(self.t.c.type, func.count()).where(self.t.c.sent_seq.is_(None)).group_by(self.t.c.type)
        with self.engine.begin() as conn:
            return {kind: count for kind, count in conn.execute(query).all()}
