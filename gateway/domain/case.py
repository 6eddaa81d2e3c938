"""The case (办件) and its lifecycle: the one table of allowed transitions.

A case changes only through `Case.apply`, which checks the table, records an event (time, actor,
reason) and updates the state. Some triggers record a fact without moving the state (a department's
task concluding, a deadline warning, an evaluation): their rule's target is `STAYS`. The state is
therefore derivable from the events; `state_from_events` rebuilds it and the tests hold the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Final

from gateway.domain.deadline import Deadline


class CaseState(StrEnum):
    SUBMITTED = "submitted"  # 已提交, awaiting the window's acceptance decision
    ACCEPTED = "accepted"  # 已受理
    SUPPLEMENT_REQUIRED = "supplement_required"  # 待补齐补正
    NOT_ACCEPTED = "not_accepted"  # 不予受理
    IN_PROCESS = "in_process"  # 办理中: the departments have it
    SUSPENDED = "suspended"  # 特别程序: hearing, expert review, extension; the clock stops
    APPROVED = "approved"  # 准予
    DENIED = "denied"  # 不予
    RETURNED = "returned"  # 退件, always with a written reason
    CERTIFICATE_ISSUED = "certificate_issued"  # 统一出证
    DELIVERED = "delivered"  # 统一送达
    CLOSED = "closed"  # 办结
    WITHDRAWN = "withdrawn"  # 撤回


class Trigger(StrEnum):
    SUBMIT = "submit"
    SUPPLEMENT = "supplement"  # the applicant hands in what was missing
    WITHDRAW = "withdraw"
    ACCEPT = "accept"
    NOT_ACCEPT = "not_accept"
    REQUEST_SUPPLEMENT = "request_supplement"
    DEEM_ACCEPTED = "deem_accepted"  # no acceptance decision within 5 working days: accepted by law
    START_PROCESSING = "start_processing"
    SUSPEND = "suspend"
    RESUME = "resume"
    APPROVE = "approve"
    DENY = "deny"
    RETURN = "return"
    ISSUE_CERTIFICATE = "issue_certificate"
    DELIVER = "deliver"
    CLOSE = "close"
    SUPPLEMENT_EXPIRED = "supplement_expired"  # 补正超时驳回
    # facts that leave the state as it is
    TASK_STARTED = "task_started"
    TASK_CONCLUDED = "task_concluded"
    DEADLINE_WARNING = "deadline_warning"  # e-supervision (电子监察): before the deadline
    OVERDUE = "overdue"  # e-supervision: after it
    EVALUATE = "evaluate"  # 好差评


class ActorKind(StrEnum):
    APPLICANT = "applicant"  # the applicant, through the hall or at a window
    AGENT = "agent"  # 代办员 acting for the applicant (village agency points)
    WINDOW = "window"  # the accepting window (or the automatic completeness check)
    DEPARTMENT = "department"  # a department: through its sector system or the back-office API
    CLOCK = "clock"  # time passing: deemed acceptance, warnings, overdue
    ISSUING_WINDOW = "issuing_window"  # 统一出证、统一送达
    SYSTEM = "system"  # the gateway itself


class Completion(StrEnum):
    """办结 result codes in common exchange use, each produced by one way of ending."""

    CERTIFICATE_ISSUED = "出证办结"
    RETURNED = "退回办结"
    VOIDED = "作废办结"
    SUPPLEMENT_TIMEOUT = "补正超时驳回"
    CONCLUDED = "办结"


# The state a case is closed from decides the completion code.
COMPLETION_BY_STATE: Final[Mapping[CaseState, Completion]] = {
    CaseState.DELIVERED: Completion.CERTIFICATE_ISSUED,
    CaseState.RETURNED: Completion.RETURNED,
    CaseState.WITHDRAWN: Completion.VOIDED,
    CaseState.SUPPLEMENT_REQUIRED: Completion.SUPPLEMENT_TIMEOUT,
    CaseState.DENIED: Completion.CONCLUDED,
    CaseState.NOT_ACCEPTED: Completion.CONCLUDED,
}

STAYS: Final = None  # a rule's target when the trigger records a fact and moves nothing


@dataclass(frozen=True)
class Transition:
    sources: frozenset[CaseState | None]  # None: the case does not exist yet
    target: CaseState | None  # STAYS: the state does not change
    actors: frozenset[ActorKind]


def _t(sources: Iterable[CaseState | None], target: CaseState | None, *actors: ActorKind) -> Transition:
    return Transition(frozenset(sources), target, frozenset(actors))


S, K = CaseState, ActorKind
PERSON = (K.APPLICANT, K.AGENT)
OPEN = (S.SUBMITTED, S.SUPPLEMENT_REQUIRED, S.ACCEPTED, S.IN_PROCESS, S.SUSPENDED)
RUNNING_CLOCK = (S.SUBMITTED, S.ACCEPTED, S.IN_PROCESS)

# The one table. Nothing else in the code base decides whether a case may move.
TRANSITIONS: Final[Mapping[Trigger, Transition]] = {
    Trigger.SUBMIT: _t([None], S.SUBMITTED, *PERSON),
    Trigger.SUPPLEMENT: _t([S.SUPPLEMENT_REQUIRED], S.SUBMITTED, *PERSON),
    Trigger.WITHDRAW: _t(OPEN, S.WITHDRAWN, *PERSON),
    Trigger.ACCEPT: _t([S.SUBMITTED], S.ACCEPTED, K.WINDOW),
    Trigger.NOT_ACCEPT: _t([S.SUBMITTED], S.NOT_ACCEPTED, K.WINDOW),
    Trigger.REQUEST_SUPPLEMENT: _t([S.SUBMITTED], S.SUPPLEMENT_REQUIRED, K.WINDOW),
    Trigger.DEEM_ACCEPTED: _t([S.SUBMITTED], S.ACCEPTED, K.CLOCK),
    Trigger.START_PROCESSING: _t([S.ACCEPTED], S.IN_PROCESS, K.DEPARTMENT),
    Trigger.SUSPEND: _t([S.IN_PROCESS], S.SUSPENDED, K.DEPARTMENT),
    Trigger.RESUME: _t([S.SUSPENDED], S.IN_PROCESS, K.DEPARTMENT),
    Trigger.APPROVE: _t([S.IN_PROCESS], S.APPROVED, K.DEPARTMENT),
    Trigger.DENY: _t([S.IN_PROCESS], S.DENIED, K.DEPARTMENT),
    Trigger.RETURN: _t([S.IN_PROCESS], S.RETURNED, K.DEPARTMENT),
    Trigger.ISSUE_CERTIFICATE: _t([S.APPROVED], S.CERTIFICATE_ISSUED, K.ISSUING_WINDOW),
    Trigger.DELIVER: _t([S.CERTIFICATE_ISSUED], S.DELIVERED, K.ISSUING_WINDOW),
    Trigger.CLOSE: _t([S.DELIVERED, S.DENIED, S.RETURNED, S.NOT_ACCEPTED, S.WITHDRAWN], S.CLOSED, K.SYSTEM),
    Trigger.SUPPLEMENT_EXPIRED: _t([S.SUPPLEMENT_REQUIRED], S.CLOSED, K.CLOCK),
    Trigger.TASK_STARTED: _t([S.IN_PROCESS, S.SUSPENDED], STAYS, K.DEPARTMENT),
    Trigger.TASK_CONCLUDED: _t([S.IN_PROCESS], STAYS, K.DEPARTMENT),
    Trigger.DEADLINE_WARNING: _t(RUNNING_CLOCK, STAYS, K.CLOCK),
    Trigger.OVERDUE: _t(RUNNING_CLOCK, STAYS, K.CLOCK),
    Trigger.EVALUATE: _t([S.CLOSED], STAYS, *PERSON),
}


class ForbiddenTransition(Exception):
    """The table does not allow this trigger from this state, or not for this actor."""

    def __init__(self, case_no: str, state: CaseState | None, trigger: Trigger, actor: str) -> None:
        super().__init__(f"办件 {case_no}: '{trigger}' by {actor} is not allowed in state {state}")
        self.case_no, self.state, self.trigger, self.actor = case_no, state, trigger, actor


class CaseRuleViolation(ValueError):
    """The transition is allowed, but not like this (a return without a reason, a second evaluation…)."""


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str  # who exactly: an identity, a sector, a department's credit code, "completeness-check"

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
    to_state: CaseState | None  # None only while a case does not exist, never stored
    actor: Actor
    reason: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Applicant:
    name: str
    id_type: str  # GA/T 2000.156, e.g. 111 resident identity card
    id_number: str
    phone: str | None = None
    address: str | None = None
    legal_representative: str | None = None  # for legal persons


@dataclass(frozen=True)
class Agent:
    """代理人/代办员: acts for the applicant and is recorded as the actor."""

    name: str
    id_number: str
    agency_point: str = ""  # e.g. 哈达社区便民服务站


@dataclass(frozen=True)
class SubmittedMaterial:
    name: str
    file_ref: str | None = None


class TaskState(StrEnum):
    PENDING = "pending"
    IN_PROCESS = "in_process"
    APPROVED = "approved"
    DENIED = "denied"
    RETURNED = "returned"

    @property
    def concluded(self) -> bool:
        return self in (TaskState.APPROVED, TaskState.DENIED, TaskState.RETURNED)


TASK_DECISIONS: Final[Mapping[TaskState, Trigger]] = {
    TaskState.APPROVED: Trigger.APPROVE,
    TaskState.DENIED: Trigger.DENY,
    TaskState.RETURNED: Trigger.RETURN,
}


@dataclass
class Task:
    """One department's part of a case: the only one, or the lead's and each co-department's (并联)."""

    task_id: str  # "1" for the lead, "2", "3"… for co-departments
    department: str
    credit_code: str
    sector: str | None  # None: decided through the back-office API
    lead: bool
    state: TaskState = TaskState.PENDING
    sector_ref: str | None = None
    opinion: str | None = None


@dataclass(frozen=True)
class Certificate:
    name: str
    number: str
    issuer: str
    valid_until: date | None = None


@dataclass(frozen=True)
class Delivery:
    method: str  # pickup | express
    tracking_no: str | None = None
    received_by: str | None = None


@dataclass(frozen=True)
class Evaluation:
    level: str  # by meaning: very_satisfied … very_dissatisfied
    channel: str
    text: str = ""


@dataclass
class Case:
    case_no: str
    matter_code: str
    matter_version: int
    applicant: Applicant
    materials: tuple[SubmittedMaterial, ...]
    form: Mapping[str, Any]
    channel: str = "online_pc"
    region_code: str = "150200"
    agent: Agent | None = None
    green_channel: tuple[str, ...] = ()  # why the case has priority: aged_60_plus, disabled, pregnant, …
    state: CaseState | None = None
    events: list[CaseEvent] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    receipt_no: str | None = None
    deadline: Deadline | None = None  # the clock that is running: acceptance, then completion
    missing_materials: tuple[str, ...] = ()
    supplement_rounds: int = 0
    opinion: str | None = None
    certificate: Certificate | None = None
    delivery: Delivery | None = None
    evaluation: Evaluation | None = None
    completion: Completion | None = None
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
        """Move the case (or record a fact) if the table allows it, recording the event; otherwise raise."""
        rule = TRANSITIONS[trigger]
        if self.state not in rule.sources or actor.kind not in rule.actors:
            raise ForbiddenTransition(self.case_no, self.state, trigger, str(actor))
        target = self.state if rule.target is STAYS else rule.target
        event = CaseEvent(len(self.events) + 1, at, trigger, self.state, target, actor, reason, data or {})
        self.events.append(event)
        self.new_events.append(event)
        self.state = target
        return event

    def task(self, task_id: str) -> Task:
        for task in self.tasks:
            if task.task_id == task_id:
                return task
        raise CaseRuleViolation(f"办件 {self.case_no} 没有任务 {task_id}")

    @property
    def lead_task(self) -> Task:
        return next(t for t in self.tasks if t.lead)

    @property
    def all_tasks_concluded(self) -> bool:
        return bool(self.tasks) and all(t.state.concluded for t in self.tasks)


def state_from_events(events: Iterable[CaseEvent]) -> CaseState | None:
    """Rebuild the state by replaying the events through the table; a gap or a bad step raises."""
    state: CaseState | None = None
    for event in events:
        rule = TRANSITIONS[event.trigger]
        target = state if rule.target is STAYS else rule.target
        if state not in rule.sources or event.from_state != state or event.to_state != target:
            raise ValueError(f"event {event.seq} ({event.trigger}) does not follow state {state}")
        state = target
    return state
