"""The case (办件) and its lifecycle: the one table of allowed transitions.

A case changes only through `Case.apply`, which checks the table, records an event (time, actor,
reason) and updates the state. Some triggers record a fact without moving the state (a department's
task concluding, a deadline warning, an evaluation): their rule's target is `STAYS`. The state is
therefore derivable from the events; `state_from_events` rebuilds it and the tests hold the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from gateway.domain.deadline import Deadline
from gateway.domain.provenance import Provenance, TrustLevel
from gateway.domain.results import Certificate as Certificate  # re-exported: where callers always found it
from gateway.domain.results import CertificateDraft, SectorResult


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
    VOIDED = "voided"  # 作废: an accepted case no sector will take, set aside by an operator


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
    # after acceptance, when a sector will not take the case (the ways forward, see WAYS_FORWARD)
    SEND_BACK = "send_back"  # 退回补正: back to the window as a supplement request; the clock stops
    CONTINUE = "continue"  # the supplement of a case sent back is complete: processing goes on, clock resumes
    VOID = "void"  # 作废
    # facts that leave the state as it is
    TASK_STARTED = "task_started"
    TASK_CONCLUDED = "task_concluded"
    DEADLINE_WARNING = "deadline_warning"  # e-supervision (电子监察): before the deadline
    OVERDUE = "overdue"  # e-supervision: after it
    EVALUATE = "evaluate"  # 好差评
    CORRECT = "correct"  # 更正: the window corrects named fields of an accepted case; sent again to sectors
    HAND_TO_BACK_OFFICE = "hand_to_back_office"  # a task leaves its sector system for the department's back office
    TASK_CANCELLED = "task_cancelled"  # an open task ends with its case (withdrawn, voided…) or on its own
    SECTOR_TOLD = "sector_told"  # a sector confirmed it cancelled its part (after the case ended)
    CERTIFICATE_FETCHED = "certificate_fetched"  # a sector's certificate, fetched, waits at unified issuing (待出证)


class ActorKind(StrEnum):
    APPLICANT = "applicant"  # the applicant, through the hall or at a window
    AGENT = "agent"  # 代办员 acting for the applicant (village agency points)
    WINDOW = "window"  # the accepting window (or the automatic completeness check)
    DEPARTMENT = "department"  # a department: through its sector system or the back-office API
    CLOCK = "clock"  # time passing: deemed acceptance, warnings, overdue
    ISSUING_WINDOW = "issuing_window"  # 统一出证、统一送达
    SYSTEM = "system"  # the gateway itself
    OPERATOR = "operator"  # an operator settling what could not be delivered (the dead-letter desk)


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
    CaseState.VOIDED: Completion.VOIDED,
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
AT_DEPARTMENTS = (S.ACCEPTED, S.IN_PROCESS, S.SUSPENDED)  # accepted and not yet decided: tasks are out
# Who may settle a task its sector will not take: the department (its system refusing, later issues) or an
# operator discarding the dead letter.
SETTLERS = (K.DEPARTMENT, K.OPERATOR)
ENDED_STATES = (S.CLOSED, S.WITHDRAWN, S.VOIDED, S.DENIED, S.RETURNED, S.NOT_ACCEPTED)
# Cases someone still has to work on: an overdue flag on a finished case is history, not work (the overview, the
# operators' case lists and /metrics count overdue cases among these).
OPEN_CASES = frozenset({S.SUBMITTED, S.ACCEPTED, S.SUPPLEMENT_REQUIRED, S.IN_PROCESS, S.SUSPENDED})

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
    Trigger.RETURN: _t([S.ACCEPTED, S.IN_PROCESS], S.RETURNED, *SETTLERS),  # from accepted: returned before any start
    # The gateway issues too: an electronic certificate a sector issued, where the matter says so.
    Trigger.ISSUE_CERTIFICATE: _t([S.APPROVED], S.CERTIFICATE_ISSUED, K.ISSUING_WINDOW, K.SYSTEM),
    Trigger.DELIVER: _t([S.CERTIFICATE_ISSUED], S.DELIVERED, K.ISSUING_WINDOW),
    Trigger.CLOSE: _t([S.DELIVERED, S.DENIED, S.RETURNED, S.NOT_ACCEPTED, S.WITHDRAWN, S.VOIDED], S.CLOSED,
                      K.SYSTEM),
    Trigger.SUPPLEMENT_EXPIRED: _t([S.SUPPLEMENT_REQUIRED], S.CLOSED, K.CLOCK),
    # The ways forward of an accepted case whose sector will not take a task (WAYS_FORWARD below).
    Trigger.SEND_BACK: _t([S.ACCEPTED, S.IN_PROCESS], S.SUPPLEMENT_REQUIRED, *SETTLERS),
    Trigger.CONTINUE: _t([S.SUBMITTED], S.IN_PROCESS, K.WINDOW),
    Trigger.HAND_TO_BACK_OFFICE: _t(AT_DEPARTMENTS, STAYS, *SETTLERS),
    Trigger.VOID: _t([*AT_DEPARTMENTS, S.SUPPLEMENT_REQUIRED], S.VOIDED, K.OPERATOR),
    Trigger.CORRECT: _t(AT_DEPARTMENTS, STAYS, K.WINDOW),
    # A task's facts. A task may start or conclude while its case waits for a supplement after a send-back
    # (another department of a parallel case goes on working); the case decides once it is back in process.
    Trigger.TASK_STARTED: _t([S.IN_PROCESS, S.SUSPENDED, S.SUPPLEMENT_REQUIRED], STAYS, K.DEPARTMENT),
    Trigger.TASK_CONCLUDED: _t([S.ACCEPTED, S.IN_PROCESS, S.SUPPLEMENT_REQUIRED], STAYS, *SETTLERS),
    Trigger.TASK_CANCELLED: _t([*AT_DEPARTMENTS, S.WITHDRAWN, S.VOIDED, S.SUPPLEMENT_REQUIRED, S.CLOSED], STAYS,
                               K.OPERATOR, K.CLOCK, *PERSON),
    Trigger.SECTOR_TOLD: _t([*AT_DEPARTMENTS, *ENDED_STATES, S.SUPPLEMENT_REQUIRED], STAYS, K.DEPARTMENT),
    # A certificate arrives while the case is decided (or its other departments still work): it is prefilled.
    Trigger.CERTIFICATE_FETCHED: _t([*AT_DEPARTMENTS, S.SUPPLEMENT_REQUIRED, S.APPROVED], STAYS, K.DEPARTMENT),
    Trigger.DEADLINE_WARNING: _t(RUNNING_CLOCK, STAYS, K.CLOCK),
    Trigger.OVERDUE: _t(RUNNING_CLOCK, STAYS, K.CLOCK),
    Trigger.EVALUATE: _t([S.CLOSED], STAYS, *PERSON),
}


class WayForward(StrEnum):
    """What becomes of an accepted case when a sector will not take one of its tasks: its refusal, or a message
    that cannot be delivered (a dead letter an operator discards). Sector answers and the operators' console
    use exactly these; `WAYS_FORWARD` says what each does."""

    SUPPLEMENT = "supplement"  # 退回补正: back to the window as a supplement request
    RETURN = "return"  # 退件: returned to the applicant with a reason
    BACK_OFFICE = "back_office"  # 转后台办理: the department's clerk decides through the back-office API
    VOID = "void"  # 作废


@dataclass(frozen=True)
class Way:
    """One way forward: the transition it makes (its actors and sources are the table's), its reach (the one
    task, or the whole case), and what it does to the deadline clock."""

    trigger: Trigger
    reach: str  # "task" | "case"
    clock: str  # "stops" | "runs" | "ends"
    meaning: str


WAYS_FORWARD: Final[Mapping[WayForward, Way]] = {
    # The case waits at the window for the listed materials; the clock stands until the applicant answers, then
    # `continue` takes it back to the departments and the task goes to its sector again (a new round).
    WayForward.SUPPLEMENT: Way(Trigger.SEND_BACK, "case", "stops", "退回窗口补正，补正期间暂停计时"),
    # The task concludes as returned with the reason; once every task has ended the case follows its lead
    # department, so a single-task case is returned (退回办结) at once.
    WayForward.RETURN: Way(Trigger.TASK_CONCLUDED, "task", "runs", "退回申请人并说明理由"),
    # The task leaves its sector system for good; the clock keeps running; a sector that had it is told.
    WayForward.BACK_OFFICE: Way(Trigger.HAND_TO_BACK_OFFICE, "task", "runs", "转部门后台人工办理"),
    # The lead's (or only) task voids the case (作废办结) and cancels every open task; a co-department's task
    # is cancelled alone and the case goes on. Sectors that had a cancelled task are told.
    WayForward.VOID: Way(Trigger.VOID, "case", "ends", "作废"),
}
# What an operator may choose when discarding a dead letter (a supplement needs a list of materials the
# letter cannot give).
DISCARD_OUTCOMES: Final = (WayForward.BACK_OFFICE, WayForward.RETURN, WayForward.VOID)


class ForbiddenTransition(Exception):
    """The table does not allow this trigger from this state, or not for this actor."""

    def __init__(self, case_no: str, state: CaseState | None, trigger: Trigger, actor: str) -> None:
        super().__init__(f"办件 {case_no} 处于 {state or '未提交'} 状态，{actor} 不能执行 {trigger}")
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
    """One material of an application: an upload (`file_ref`), a paper named only, or a licence cited from the
    electronic licence library (`licence_number`; its `provenance` once the library has confirmed it)."""

    name: str
    file_ref: str | None = None
    licence_number: str | None = None
    provenance: Provenance | None = None

    @property
    def trust(self) -> TrustLevel:
        """authoritative only when the library confirmed the cited licence (gateway/domain/provenance.py)."""
        return TrustLevel.DECLARED if self.provenance is None else TrustLevel.AUTHORITATIVE

    def as_data(self) -> dict[str, Any]:
        """As stored and recorded in events: plain JSON-able data (the citation's keys only when cited)."""
        data: dict[str, Any] = {"name": self.name, "file_ref": self.file_ref}
        if self.licence_number is not None:
            data["licence_number"] = self.licence_number
            data["provenance"] = None if self.provenance is None else self.provenance.as_data()
        return data

    def described(self) -> dict[str, Any]:
        """What the case view and the sectors are told of it: name, file, trust level and provenance."""
        return {"name": self.name, "file_ref": self.file_ref, "trust": str(self.trust),
                "provenance": None if self.provenance is None else self.provenance.as_data()}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SubmittedMaterial:
        provenance = data.get("provenance")
        return cls(data["name"], data.get("file_ref"), data.get("licence_number"),
                   None if provenance is None else Provenance(**provenance))


class TaskState(StrEnum):
    PENDING = "pending"
    IN_PROCESS = "in_process"
    APPROVED = "approved"
    DENIED = "denied"
    RETURNED = "returned"
    CANCELLED = "cancelled"  # ended without a decision: its case was withdrawn or voided, or the task voided

    @property
    def concluded(self) -> bool:
        """Decided by its department."""
        return self in (TaskState.APPROVED, TaskState.DENIED, TaskState.RETURNED)

    @property
    def ended(self) -> bool:
        """Nothing more will happen to it: decided, or cancelled."""
        return self.concluded or self is TaskState.CANCELLED


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
    # Each correction (更正) or resubmission starts a new round: the sector is sent the case again under a key
    # of its own (`case:task:operation:r<round>`), and answers to an earlier round change nothing.
    round: int = 0
    # For a cancelled task: None, its sector never had it (or the back office did); False, telling the sector
    # is under way; True, the sector confirmed the cancellation.
    sector_told: bool | None = None
    # What the sector's decision said besides the decision: its own time, a certificate issued, a result document.
    result: SectorResult | None = None


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
    # 待出证: the certificate a sector issued, fetched (`fetch_certificate`) and prefilled for unified issuing.
    certificate_draft: CertificateDraft | None = None
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
        self.require(trigger, actor)
        rule = TRANSITIONS[trigger]
        target = self.state if rule.target is STAYS else rule.target
        event = CaseEvent(len(self.events) + 1, at, trigger, self.state, target, actor, reason, data or {})
        self.events.append(event)
        self.new_events.append(event)
        self.state = target
        return event

    def require(self, trigger: Trigger, actor: Actor) -> None:
        """ForbiddenTransition unless the table allows `trigger` by `actor` in the case's state."""
        rule = TRANSITIONS[trigger]
        if self.state not in rule.sources or actor.kind not in rule.actors:
            raise ForbiddenTransition(self.case_no, self.state, trigger, str(actor))

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
        """Every task has ended, at least one with a decision (a case whose tasks were all cancelled has none)."""
        return any(t.state.concluded for t in self.tasks) and all(t.state.ended for t in self.tasks)

    @property
    def open_tasks(self) -> list[Task]:
        return [t for t in self.tasks if not t.state.ended]


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
