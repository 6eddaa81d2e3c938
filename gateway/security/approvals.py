"""The four-eyes rule: a guarded action waits for a second identity's approval.

With `YIWANG_FOUR_EYES=1`, activating a bundle version and publishing a catalogue version do not happen
when asked: the request becomes a pending approval. Another identity that may do the same action
approves it — and only then does the action run, recorded as done by both — or rejects it. The
requester may withdraw (reject) their own request but never approve it.

An approval is claimed (pending → approved) before its action runs, so two approvers racing cannot
run it twice; if the action then fails (the version was retired meanwhile, …) the approval becomes
`failed` with the reason, and the requester asks again.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Engine, RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.domain.clock import Clock, as_utc, beijing_text
from gateway.domain.roles import Identity, Role, acts_for_sector
from gateway.persistence.access_tables import APPROVED, FAILED, PENDING, REJECTED, approvals
from gateway.persistence.uow import UnitsOfWork

T = TypeVar("T")
STATUSES = (PENDING, APPROVED, REJECTED, FAILED)


class Action(StrEnum):
    ACTIVATE_BUNDLE = "activate_bundle"
    PUBLISH_MATTER = "publish_matter"


class UnknownApproval(LookupError):
    def __init__(self, approval_id: str) -> None:
        super().__init__(f"没有审批 {approval_id}")


class OwnRequest(PermissionError):
    """The requester tried to approve their own request: that is one pair of eyes, not two."""


class NotADecider(PermissionError):
    """The identity may not do the action itself, so it may not approve or reject it either."""


class AlreadyDecided(Exception):
    """The approval is no longer pending."""


class FourEyesRequired(PermissionError):
    """A guarded action asked for where no second identity can approve it: the local CLI."""


def cli_refusal(what: str, route: str) -> FourEyesRequired:
    # A local command runs as whoever holds the shell and the database: one person, no identity to
    # approve against. So with four-eyes on the CLI refuses and points at the API.
    return FourEyesRequired(
        f"four-eyes is on (YIWANG_FOUR_EYES=1): {what} needs a second identity's approval, which a local "
        f"command cannot give; request it over the API ({route}) and have another identity approve it "
        "(POST /v1/approvals/{id}/approve)")


@dataclass(frozen=True)
class Approval:
    id: str
    action: Action
    subject: str
    params: dict[str, Any]
    sector: str | None
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None

    @property
    def actor(self) -> str:
        """How the action's own record names who did it: both identities."""
        return f"identity:{self.requested_by} approved by identity:{self.decided_by}"

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "action": str(self.action), "subject": self.subject, "params": self.params,
                "sector": self.sector, "status": self.status, "requested_by": self.requested_by,
                "requested_at": beijing_text(self.requested_at), "decided_by": self.decided_by,
                "decided_at": beijing_text(self.decided_at) if self.decided_at else None, "note": self.note}


def may_decide(identity: Identity, action: Action, sector: str | None) -> bool:
    """Exactly who may do the action directly: bundles as in `api_adapters`, guides as in `api_catalogue`."""
    if action is Action.PUBLISH_MATTER:
        return identity.has(Role.CATALOGUE_ADMIN)
    return sector is not None and acts_for_sector(identity, sector)


class Approvals:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._units = UnitsOfWork(engine)  # one unit of work per change or read, committed explicitly
        self._clock = clock

    def request(self, action: Action, params: Mapping[str, Any], subject: str, requester: str,
                sector: str | None = None) -> Approval:
        """A pending approval for the action; asking again while one is pending returns that one."""
        row = {"id": "ap_" + secrets.token_hex(6), "action": str(action), "subject": subject,
               "params": dict(params), "sector": sector, "status": PENDING, "requested_by": requester,
               "requested_at": self._clock.now()}
        try:
            with self._units() as uow:
                conn = uow.conn
                conn.execute(insert(approvals).values(**row))
                uow.commit()
        except IntegrityError:  # uq_approvals_one_pending: someone asked first
            return self._pending_for(action, subject)
        return _approval(row)

    def get(self, approval_id: str) -> Approval:
        rows = self._read(select(approvals).where(approvals.c.id == approval_id))
        if not rows:
            raise UnknownApproval(approval_id)
        return _approval(rows[0])

    def list(self, status: str | None = PENDING) -> builtins.list[Approval]:
        query = select(approvals).order_by(approvals.c.requested_at)
        if status is not None:
            query = query.where(approvals.c.status == status)
        return [_approval(r) for r in self._read(query)]

    def approve(self, approval_id: str, approver: Identity, run: Callable[[Approval], T]) -> tuple[Approval, T]:
        """Claim the approval for `approver`, then run its action; a failing action marks it failed."""
        approval = self._decide(approval_id, approver, APPROVED, None)
        try:
            result = run(approval)
        except Exception as exc:
            self._note_failure(approval.id, str(exc))
            raise
        return approval, result

    def reject(self, approval_id: str, decider: Identity, reason: str) -> Approval:
        return self._decide(approval_id, decider, REJECTED, reason or None)

    # --- internals ---------------------------------------------------------------------------------

    def _decide(self, approval_id: str, decider: Identity, status: str, note: str | None) -> Approval:
        # BEGIN IMMEDIATE (a writing unit of work) on SQLite, a conditional update on PostgreSQL: one decides.
        with self._units() as uow:
            conn = uow.conn
            row = conn.execute(select(approvals).where(approvals.c.id == approval_id)).mappings().first()
            if row is None:
                raise UnknownApproval(approval_id)
            pending = _approval(row)
            if pending.status != PENDING:
                raise AlreadyDecided(f"审批 {approval_id} 的状态为 {pending.status}，不再等待审批")
            if not may_decide(decider, pending.action, pending.sector):
                raise NotADecider(f"你无权执行 {pending.action}（{pending.subject}），因此也不能审批它")
            if status == APPROVED and decider.id == pending.requested_by:
                raise OwnRequest(f"审批 {approval_id} 是你本人提出的：须由另一身份批准")
            decided = {"status": status, "decided_by": decider.id, "decided_at": self._clock.now(), "note": note}
            done = conn.execute(update(approvals)
                                .where(approvals.c.id == approval_id, approvals.c.status == PENDING)
                                .values(**decided))
            if done.rowcount != 1:
                raise AlreadyDecided(f"审批 {approval_id} 刚被他人处理")
            uow.commit()
        return _approval({**row, **decided})

    def _note_failure(self, approval_id: str, reason: str) -> None:
        with self._units() as uow:
            conn = uow.conn
            conn.execute(update(approvals).where(approvals.c.id == approval_id)
                         .values(status=FAILED, note=reason[:500]))
            uow.commit()

    def _pending_for(self, action: Action, subject: str) -> Approval:
        rows = self._read(select(approvals).where(approvals.c.action == str(action),
                                                  approvals.c.subject == subject, approvals.c.status == PENDING))
        if not rows:  # decided in the instant between our insert and this read: ask the caller to retry
            raise AlreadyDecided(f"{subject} 的待审批申请刚被处理，请重新提交")
        return _approval(rows[0])

    def _read(self, query: Any) -> builtins.list[RowMapping]:
        with self._units(read_only=True) as uow:
            return builtins.list(uow.conn.execute(query).mappings())


def _approval(row: Mapping[str, Any] | RowMapping) -> Approval:  # a row, or one as written
    decided_at = row.get("decided_at")
    return Approval(id=row["id"], action=Action(row["action"]), subject=row["subject"], params=dict(row["params"]),
                    sector=row["sector"], status=row["status"], requested_by=row["requested_by"],
                    requested_at=as_utc(row["requested_at"]), decided_by=row.get("decided_by"),
                    decided_at=as_utc(decided_at) if decided_at is not None else None, note=row.get("note"))
