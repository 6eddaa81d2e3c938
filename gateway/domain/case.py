"""The case (办件) and its lifecycle: the one table of allowed transitions.

A case changes only through `Case.apply`, which checks the table, records an event (time,
actor, reason) and updates the state. The state is therefore derivable from the events:
`state_from_events` rebuilds it, and the tests hold the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class CaseState(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"  # 受理
    SUPPLEMENT_REQUIRED = "supplement_required"  # 补齐补正
    IN_PROCESS = "in_process"  # the sector has the case
    APPROVED = "approved"  # 准予
    DENIED = "denied"  # 不予
    CLOSED = "closed"  # 办结


class Trigger(StrEnum):
    SUBMIT = "submit"
    ACCEPT = "accept"
    REQUEST_SUPPLEMENT = "request_supplement"
    START_PROCESSING = "start_processing"
    APPROVE = "approve"
    DENY = "deny"
    CLOSE = "close"


class ActorKind(StrEnum):
    APPLICANT = "applicant"  # or the agent acting for them
    WINDOW = "window"  # the accepting window (the completeness check for online submissions)
    SECTOR = "sector"  # the department's system, through its adapter
    SYSTEM = "system"  # the gateway itself


@dataclass(frozen=True)
class Transition:
    sources: frozenset[CaseState | None]  # None: the case does not exist yet
    target: CaseState
    actors: frozenset[ActorKind]


def _t(sources: Iterable[CaseState | None], target: CaseState, *actors: ActorKind) -> Transition:
    return Transition(frozenset(sources), target, frozenset(actors))


S = CaseState
# The one table. Nothing else in the code base decides whether a case may move.
TRANSITIONS: Mapping[Trigger, Transition] = {
    Trigger.SUBMIT: _t([None], S.SUBMITTED, ActorKind.APPLICANT),
    Trigger.ACCEPT: _t([S.SUBMITTED], S.ACCEPTED, ActorKind.WINDOW),
    Trigger.REQUEST_SUPPLEMENT: _t([S.SUBMITTED], S.SUPPLEMENT_REQUIRED, ActorKind.WINDOW),
    Trigger.START_PROCESSING: _t([S.ACCEPTED], S.IN_PROCESS, ActorKind.SECTOR),
    Trigger.APPROVE: _t([S.IN_PROCESS], S.APPROVED, ActorKind.SECTOR),
    Trigger.DENY: _t([S.IN_PROCESS], S.DENIED, ActorKind.SECTOR),
    Trigger.CLOSE: _t([S.APPROVED, S.DENIED], S.CLOSED, ActorKind.SYSTEM),
}


class ForbiddenTransition(Exception):
    """The table does not allow this trigger from this state, or not for this actor."""

    def __init__(self, case_no: str, state: CaseState | None, trigger: Trigger, actor: str) -> None:
        super().__init__(f"case {case_no}: '{trigger}' by {actor} is not allowed in state {state}")
        self.case_no, self.state, self.trigger, self.actor = case_no, state, trigger, actor


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str  # who exactly: a clerk, a sector, "completeness-check"

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Actor:
        kind, _, ident = text.partition(":")
        return cls(ActorKind(kind), ident)


@dataclass(frozen=True)
class CaseEvent:
    seq: int
    at: datetime  # UTC
    trigger: Trigger
    from_state: CaseState | None
    to_state: CaseState
    actor: Actor
    reason: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Applicant:
    name: str
    id_type: str  # GA/T 2000.156, e.g. 111 resident identity card
    id_number: str
    phone: str | None = None


@dataclass(frozen=True)
class SubmittedMaterial:
    name: str
    file_ref: str | None = None


@dataclass
class Case:
    case_no: str
    matter_code: str
    sector: str
    applicant: Applicant
    materials: tuple[SubmittedMaterial, ...]
    form: Mapping[str, Any]
    state: CaseState | None = None
    events: list[CaseEvent] = field(default_factory=list)
    receipt_no: str | None = None
    promised_by: date | None = None
    missing_materials: tuple[str, ...] = ()
    sector_ref: str | None = None
    opinion: str | None = None
    version: int = 0  # bumped on every stored change: optimistic concurrency
    new_events: list[CaseEvent] = field(default_factory=list)  # not yet stored

    def apply(
        self,
        trigger: Trigger,
        actor: Actor,
        at: datetime,
        reason: str,
        data: Mapping[str, Any] | None = None,
    ) -> CaseEvent:
        """Move the case if the table allows it, recording the event; otherwise raise."""
        rule = TRANSITIONS[trigger]
        if self.state not in rule.sources or actor.kind not in rule.actors:
            raise ForbiddenTransition(self.case_no, self.state, trigger, str(actor))
        event = CaseEvent(len(self.events) + 1, at, trigger, self.state, rule.target, actor, reason, data or {})
        self.events.append(event)
        self.new_events.append(event)
        self.state = rule.target
        return event


def state_from_events(events: Iterable[CaseEvent]) -> CaseState | None:
    """Rebuild the state by replaying the events through the table; a gap or a bad step raises."""
    state: CaseState | None = None
    for event in events:
        rule = TRANSITIONS[event.trigger]
        if state not in rule.sources or event.from_state != state or event.to_state != rule.target:
            raise ValueError(f"event {event.seq} ({event.trigger}) does not follow state {state}")
        state = rule.target
    return state
