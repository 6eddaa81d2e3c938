"""The agent's own polling: every submission its sector accepted is asked about until it is decided.

The near side never sends `query_status` across the gap; the agent asks its sector itself, every polling interval
(the configuration's `poll_interval_ms`, else the installed bundle's), and a status it has not seen before
becomes a `decision` for the near side — in the same transaction as the poll's new state, so a crash neither
loses one nor makes it twice. A final status (approved, denied, returned) ends the polling, as does a
cancellation the agent delivered. Only identifiers are kept: case number, task id, idempotency key, the sector's
reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update

from ferry.tables import AgentTables, utc

FINAL = ("approved", "denied", "returned")


@dataclass(frozen=True)
class Poll:
    message_id: str
    sector: str
    case_no: str | None
    task_id: str | None
    idempotency_key: str
    sector_ref: str
    last_status: str | None
    polls: int

    def query(self) -> dict[str, Any]:
        """The canonical query_status message: the identifiers a status mapping reads."""
        return {"idempotency_key": self.idempotency_key, "sector_ref": self.sector_ref,
                "task": {"id": self.task_id}, "case": {"case_no": self.case_no}}


def identifiers(message: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(case number, task id) of a canonical message."""
    case, task = message.get("case"), message.get("task")
    return (case.get("case_no") if isinstance(case, dict) else None,
            task.get("id") if isinstance(task, dict) else None)


class Polls:
    def __init__(self, engine: Engine, tables: AgentTables) -> None:
        self.engine = engine
        self.t = tables.polls

    def register(self, conn: Any, message_id: str, sector: str, message: Mapping[str, Any], key: str,
                 sector_ref: str, first_at: datetime, now: datetime) -> None:
        case_no, task_id = identifiers(message)
        conn.execute(insert(self.t).values(message_id=message_id, sector=sector, case_no=case_no, task_id=task_id,
                                           idempotency_key=key, sector_ref=sector_ref, polls=0, next_at=first_at,
                                           done=False, created_at=now))

    def end_for_task(self, conn: Any, sector: str, message: Mapping[str, Any]) -> None:
        """A cancellation the sector took: nothing more to ask about that task."""
        case_no, task_id = identifiers(message)
        conn.execute(update(self.t).where(and_(self.t.c.sector == sector, self.t.c.case_no == case_no,
                                               self.t.c.task_id == task_id)).values(done=True))

    def due(self, now: datetime, limit: int = 100) -> list[Poll]:
        query = (select(self.t).where(self.t.c.done.is_(False), self.t.c.next_at <= now)
                 .order_by(self.t.c.next_at).limit(limit))
        with self.engine.begin() as conn:
            rows = conn.execute(query).mappings().all()
        return [Poll(r["message_id"], r["sector"], r["case_no"], r["task_id"], r["idempotency_key"],
                     r["sector_ref"], r["last_status"], r["polls"]) for r in rows]

    def answered(self, conn: Any, poll: Poll, status: str, next_at: datetime) -> None:
        conn.execute(update(self.t).where(self.t.c.message_id == poll.message_id).values(
            last_status=status, polls=poll.polls + 1, last_error=None, next_at=next_at, done=status in FINAL))

    def failed(self, poll: Poll, error: str, next_at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(self.t).where(self.t.c.message_id == poll.message_id).values(
                polls=poll.polls + 1, last_error=error, next_at=next_at))

    def listed(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        query = select(self.t).order_by(self.t.c.created_at)
        if open_only:
            query = query.where(self.t.c.done.is_(False))
        with self.engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        return [{**row, "next_at": utc(row["next_at"]), "created_at": utc(row["created_at"])} for row in rows]


def interval(configured_ms: int | None, bundle_ms: int | None) -> timedelta | None:
    """How often to ask: the configuration's override, else the bundle's; None: the bundle does not poll."""
    chosen = configured_ms or bundle_ms
    return None if chosen is None else timedelta(milliseconds=chosen)
