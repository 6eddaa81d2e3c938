"""What happens to a case, step by step, as the window, departments, issuing window and clock act.

Each function changes a `Case` only through `Case.apply` (the one transition table) and returns
nothing the caller must remember to do, except where it says: `accept` tells the service which tasks
now need delivering to sector systems. Plain Python: no I/O, time and calendar passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from gateway.domain.calendar import WorkingCalendar
from gateway.domain.case import (
    COMPLETION_BY_STATE,
    TASK_DECISIONS,
    WAYS_FORWARD,
    Actor,
    ActorKind,
    Case,
    CaseEvent,
    CaseRuleViolation,
    CaseState,
    Certificate,
    Delivery,
    Evaluation,
    SubmittedMaterial,
    Task,
    TaskState,
    Trigger,
    WayForward,
)
from gateway.domain.clock import shanghai_date
from gateway.domain.codes import birth_date
from gateway.domain.deadline import ACCEPTANCE_LIMIT, Deadline, DeadlineKind
from gateway.domain.matter import Matter
from gateway.domain.results import CertificateDraft, ResultProblem, SectorResult

COMPLETENESS_CHECK = Actor(ActorKind.WINDOW, "completeness-check")
GATEWAY = Actor(ActorKind.SYSTEM, "gateway")
CLOCK = Actor(ActorKind.CLOCK, "deadline-clock")
GREEN_CHANNEL_CLAIMS = frozenset({"disabled", "pregnant", "high_level_talent"})  # aged_60_plus is computed
EVALUATION_LEVELS = ("very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied")


def submit(case: Case, matter: Matter, actor: Actor, now: datetime, calendar: WorkingCalendar) -> None:
    """The application arrives: the acceptance clock starts (5 working days, by law)."""
    case.apply(Trigger.SUBMIT, actor, now, "提交申请", {"channel": case.channel, "region_code": case.region_code,
                                                      "matter_version": matter.version})
    case.deadline = Deadline.start(DeadlineKind.ACCEPTANCE, shanghai_date(now), ACCEPTANCE_LIMIT, calendar)


def check_completeness(case: Case, matter: Matter, now: datetime, calendar: WorkingCalendar) -> list[Task]:
    """The window's duty on receipt: list everything missing at once, or accept a complete application.

    Returns the tasks to deliver when the case was accepted (empty otherwise). A matter that needs a
    clerk's review (`auto_accept` false) stays submitted until a window decides.
    """
    missing = [m.name for m in matter.missing_materials(m.name for m in case.materials)]
    if missing:
        request_supplement(case, missing, COMPLETENESS_CHECK, now, "材料不齐全，请一次性补齐：" + "、".join(missing))
        return []
    if not matter.auto_accept:
        return []
    if case.receipt_no is not None:  # accepted before and sent back for a supplement
        return continue_processing(case, COMPLETENESS_CHECK, now)
    return accept(case, matter, COMPLETENESS_CHECK, now, calendar)


def accept(case: Case, matter: Matter, actor: Actor, now: datetime, calendar: WorkingCalendar,
           trigger: Trigger = Trigger.ACCEPT) -> list[Task]:
    """受理: receipt, promised completion date, one task per department. Returns the tasks to deliver."""
    today = shanghai_date(now)
    case.deadline = Deadline.start(DeadlineKind.COMPLETION, today, matter.promised_limit, calendar)
    case.receipt_no = "SL" + case.case_no[19:]  # basic code + date + sequence: unique per matter and day
    case.missing_materials = ()
    case.tasks = [
        Task(str(i), d.name, d.credit_code, d.sector, lead=i == 1) for i, d in enumerate(matter.departments, start=1)
    ]
    data: dict[str, Any] = {"receipt_no": case.receipt_no, "promised_by": case.deadline.due.isoformat(),
                            "tasks": [t.task_id for t in case.tasks]}
    if calendar.beyond_coverage(today, case.deadline.due):
        data["calendar_warning"] = "承诺日期超出节假日安排覆盖范围，仅按周末计算"
    reason = "材料齐全，予以受理" if trigger is Trigger.ACCEPT else "5个工作日内未作受理决定，视为受理"
    case.apply(trigger, actor, now, reason, data)
    return [t for t in case.tasks if t.sector is not None]


def request_supplement(case: Case, missing: list[str], actor: Actor, now: datetime, reason: str) -> None:
    """补齐补正: one notice listing everything; the acceptance clock stops until the applicant answers."""
    if not missing:
        raise CaseRuleViolation("补正告知必须列明需补正的材料")
    case.missing_materials = tuple(missing)
    case.supplement_rounds += 1
    case.apply(Trigger.REQUEST_SUPPLEMENT, actor, now, reason, {"missing": missing, "round": case.supplement_rounds})
    if case.deadline:
        case.deadline = case.deadline.pause(shanghai_date(now))


def supplement(case: Case, matter: Matter, materials: Iterable[SubmittedMaterial], actor: Actor, now: datetime,
               calendar: WorkingCalendar) -> list[Task]:
    """The applicant hands in what was missing; completeness is checked again on the whole set."""
    known = {m.name: m for m in case.materials}
    known.update({m.name: m for m in materials})
    case.materials = tuple(known.values())
    case.apply(Trigger.SUPPLEMENT, _person(case, actor), now, "补齐补正材料", {"materials": sorted(known),
                                                           "round": case.supplement_rounds})
    if case.deadline:
        case.deadline = case.deadline.resume(shanghai_date(now), calendar)
    return check_completeness(case, matter, now, calendar)


def not_accept(case: Case, actor: Actor, now: datetime, reason: str) -> None:
    """不予受理, with reasons, and the case ends."""
    _require_reason(reason, "不予受理")
    case.apply(Trigger.NOT_ACCEPT, actor, now, reason)
    close(case, now)


def withdraw(case: Case, actor: Actor, now: datetime, reason: str) -> None:
    """撤回: the case ends, and with it every open task (a sector that has one is told)."""
    person = _person(case, actor)
    case.apply(Trigger.WITHDRAW, person, now, reason or "申请人撤回申请")
    end_open_tasks(case, person, now, "申请人撤回申请")
    close(case, now)


def end_open_tasks(case: Case, actor: Actor, now: datetime, reason: str) -> None:
    """Every task not yet ended is cancelled; each event says whether its sector must be told (it had the task:
    in process there, or holding our reference) — the service sends those a cancellation."""
    for task in case.open_tasks:
        _cancel_task(case, task, actor, now, reason)


def _cancel_task(case: Case, task: Task, actor: Actor, now: datetime, reason: str) -> None:
    notice, told = _sector_notice(task)
    case.apply(Trigger.TASK_CANCELLED, actor, now, reason,
               {"task": task.task_id, "department": task.department, "sector_notice": notice})
    task.state, task.sector_told = TaskState.CANCELLED, told


def _sector_notice(task: Task) -> tuple[str, bool | None]:
    """What taking `task` from its sector means: the event's `sector_notice`, and the task's `sector_told`
    (False: telling it is under way; None: its sector never had it)."""
    return ("sending", False) if reached_sector(task) else ("not_needed", None)


def reached_sector(task: Task) -> bool:
    """Whether the task's sector system has it (so must be told when it is cancelled or taken away)."""
    return task.sector is not None and (task.state is TaskState.IN_PROCESS or task.sector_ref is not None)


def sector_told(case: Case, task_id: str, actor: Actor, now: datetime) -> None:
    """The sector confirmed it dropped a task it had (a cancellation delivered)."""
    task = case.task(task_id)
    if task.sector_told is not False:
        return  # nothing was being told, or told already (a repeat)
    task.sector_told = True
    case.apply(Trigger.SECTOR_TOLD, actor, now, f"{task.department}已确认撤销", {"task": task_id})


def start_task(case: Case, task_id: str, actor: Actor, now: datetime, sector_ref: str | None = None,
               resent: bool = False) -> None:
    """A department has the case: the case is in process from its first task on. `resent`: the answer to a
    later round (a correction sent again) — the sector's reference for the corrected case replaces the old."""
    task = case.task(task_id)
    if resent and task.state is TaskState.IN_PROCESS and sector_ref and sector_ref != task.sector_ref:
        task.sector_ref = sector_ref
        case.apply(Trigger.TASK_STARTED, actor, now, f"{task.department}已接收更正后的办件",
                   {"task": task_id, "department": task.department, "sector_ref": sector_ref, "round": task.round})
        return
    if task.state is not TaskState.PENDING:
        return  # a repeated acknowledgement (retry, duplicate callback) changes nothing
    if case.state is CaseState.ACCEPTED:
        case.apply(Trigger.START_PROCESSING, actor, now, "部门已接收办件", {"task": task_id})
    task.state, task.sector_ref = TaskState.IN_PROCESS, sector_ref
    case.apply(Trigger.TASK_STARTED, actor, now, f"{task.department}开始办理",
               {"task": task_id, "department": task.department, "sector_ref": sector_ref})


def conclude_task(case: Case, task_id: str, decision: TaskState, opinion: str, actor: Actor, now: datetime,
                  result: SectorResult | None = None) -> None:
    """A department decides its part. Once every task has concluded the case follows the lead department.
    `result`: what its sector's answer said besides (its time of decision, a certificate): kept on the task, and
    the event carries the sector's time (`sector_at`) beside ours (`at`)."""
    task = case.task(task_id)
    if not decision.concluded:
        raise CaseRuleViolation(f"{decision} 不是办理决定")
    if task.state.concluded:
        if task.state is decision:
            return  # the same decision again (a sector's retry): changes nothing
        raise CaseRuleViolation(f"任务 {task_id} 已作出决定（{task.state}），不能改为 {decision}")
    if task.state is TaskState.CANCELLED:
        case.require(Trigger.TASK_CONCLUDED, actor)  # a case that has ended says so first
        raise CaseRuleViolation(f"任务 {task_id} 已撤销")
    if decision is not TaskState.APPROVED:
        _require_reason(opinion, "不予办理或退件")
    if task.state is TaskState.PENDING and actor.kind is ActorKind.DEPARTMENT:
        start_task(case, task_id, actor, now)  # deciding is having it (an operator's return starts nothing)
    case.apply(Trigger.TASK_CONCLUDED, actor, now, opinion or str(decision),
               {"task": task_id, "department": task.department, "decision": str(decision), "lead": task.lead,
                **_result_data(result)})
    task.state, task.opinion = decision, opinion  # after `apply`: a refused transition leaves the task as it was
    task.result = None if result is None or result.empty else result
    _decide_when_all_ended(case, now)


def _result_data(result: SectorResult | None) -> dict[str, Any]:
    """What a task-concluded event says of the sector's answer: its time, the certificate, the document."""
    if result is None or result.empty:
        return {}
    data: dict[str, Any] = {"sector_at": result.decided_at.isoformat() if result.decided_at else None,
            "certificate_number": result.certificate_number, "document_ref": result.document_ref}
    if result.certificate_issued:
        data["certificate_issued"] = True
    return {key: value for key, value in data.items() if value is not None}


def certificate_to_fetch(task: Task) -> bool:
    """Whether the task's sector said it issued a certificate we have not fetched: approved there, with a
    certificate issued (or its number named)."""
    return (task.sector is not None and task.state is TaskState.APPROVED and task.result is not None
            and task.result.certificate_issued)


def _decide_when_all_ended(case: Case, now: datetime) -> None:
    """Once every task has ended the case follows its lead department — but only from in process (or
    accepted, for a task returned before any started): a case waiting for a supplement decides when it is back."""
    if case.all_tasks_concluded and case.state in (CaseState.IN_PROCESS, CaseState.ACCEPTED):
        _decide(case, now)


def _decide(case: Case, now: datetime) -> None:
    lead = case.lead_task
    case.opinion = lead.opinion
    denials = {t.department: t.opinion for t in case.tasks if t.state is not TaskState.APPROVED}
    case.apply(TASK_DECISIONS[lead.state], _decider(case, lead), now,
               lead.opinion or str(lead.state), {"lead": lead.department, "not_approved_by": denials})
    if case.state is not CaseState.APPROVED:
        close(case, now)


def _decider(case: Case, lead: Task) -> Actor:
    """Who the case's decision is recorded as: the lead department — or the operator who settled its task."""
    for event in reversed(case.events):
        if event.trigger is Trigger.TASK_CONCLUDED and event.data.get("task") == lead.task_id:
            if event.actor.kind is ActorKind.OPERATOR:
                return event.actor
            break
    return Actor(ActorKind.DEPARTMENT, lead.credit_code)


# -- after acceptance, when a sector will not take the case: the ways forward (case.WAYS_FORWARD) -----------
def settle(case: Case, task_id: str, way: WayForward, actor: Actor, now: datetime, reason: str,
           missing: Iterable[str] = (), note: Mapping[str, Any] | None = None) -> None:
    """Apply the way forward chosen for a task its sector will not take (its refusal, or an undeliverable
    message). Refused (CaseRuleViolation) for a task already ended; ForbiddenTransition where the table says no.
    `note`: more the way's event records (a sector's refusal: its code and message), beside its own data."""
    if note:
        before = len(case.events)
        settle(case, task_id, way, actor, now, reason, missing)
        _noted(case, before, WAYS_FORWARD[way].trigger, note)
        return
    task = case.task(task_id)
    if task.state.ended:
        raise CaseRuleViolation(f"任务 {task_id} 已{'撤销' if task.state is TaskState.CANCELLED else '办结'}，无需处理")
    _require_reason(reason, WAYS_FORWARD[way].meaning)
    if way is WayForward.SUPPLEMENT:
        send_back(case, task, actor, now, reason, list(missing))
    elif way is WayForward.RETURN:
        conclude_task(case, task_id, TaskState.RETURNED, reason, actor, now)
    elif way is WayForward.BACK_OFFICE:
        hand_to_back_office(case, task, actor, now, reason)
    else:
        void(case, task, actor, now, reason)


def _noted(case: Case, since: int, trigger: Trigger, note: Mapping[str, Any]) -> None:
    """The first event of `trigger` recorded after `since`, with `note` added to its data (it is not stored yet)."""
    for index in range(since, len(case.events)):
        event = case.events[index]
        if event.trigger is trigger:
            noted = replace(event, data={**event.data, **note})
            case.events[index] = noted
            case.new_events[case.new_events.index(event)] = noted
            return


def send_back(case: Case, task: Task, actor: Actor, now: datetime, reason: str, missing: list[str]) -> None:
    """退回补正: the case goes back to the window as a supplement request listing what is missing; the clock
    stops. Once the supplement is complete the case continues and the task goes to its sector again."""
    if not missing:
        raise CaseRuleViolation("退回补正必须列明需补正的材料")
    case.apply(Trigger.SEND_BACK, actor, now, reason, {"task": task.task_id, "department": task.department,
                                                     "missing": missing, "round": case.supplement_rounds + 1})
    case.missing_materials = tuple(missing)
    case.supplement_rounds += 1
    task.state = TaskState.PENDING
    task.round += 1  # what the sector answers to the earlier round changes nothing now
    if case.deadline:
        case.deadline = case.deadline.pause(shanghai_date(now))


def continue_processing(case: Case, actor: Actor, now: datetime) -> list[Task]:
    """A case sent back is complete again: it returns to the departments (its clock resumed on the supplement,
    its receipt and promised date kept) and the tasks sent back go to their sectors again. Returns them."""
    resend = [t for t in case.tasks if t.state is TaskState.PENDING and t.sector is not None]
    case.missing_materials = ()
    case.apply(Trigger.CONTINUE, actor, now, "补正材料齐全，继续办理", {"tasks": [t.task_id for t in resend]})
    _decide_when_all_ended(case, now)
    return resend


def hand_to_back_office(case: Case, task: Task, actor: Actor, now: datetime, reason: str) -> None:
    """The task leaves its sector system for the department's back office, where a clerk decides it through
    the back-office API. A sector that had it is told to drop it."""
    notice, told = _sector_notice(task)
    case.apply(Trigger.HAND_TO_BACK_OFFICE, actor, now, reason,
               {"task": task.task_id, "department": task.department, "from_sector": task.sector,
                "sector_notice": notice})
    task.sector, task.state, task.sector_told = None, TaskState.PENDING, told
    task.round += 1


def void(case: Case, task: Task, actor: Actor, now: datetime, reason: str) -> None:
    """作废: the lead's (or only) task voids the whole case and cancels every open task; a co-department's task
    is cancelled alone, and the case goes on with the others."""
    if task.lead:
        case.apply(Trigger.VOID, actor, now, reason, {"task": task.task_id})
        end_open_tasks(case, actor, now, reason)
        close(case, now)
        return
    _cancel_task(case, task, actor, now, reason)
    _decide_when_all_ended(case, now)


def correct(case: Case, matter: Matter, changes: Mapping[str, tuple[Any, Any]], actor: Actor, now: datetime,
            reason: str) -> list[Task]:
    """更正: the window has corrected named fields (`changes`: field -> (old, new), already applied to the case by
    the caller, which checked the new values). Completeness is checked again; every open task of a sector system
    starts a new round and is returned, to be sent again under a key of its own."""
    _require_reason(reason, "更正")
    if not changes:
        raise CaseRuleViolation("更正必须至少修改一项内容")
    missing = [m.name for m in matter.missing_materials(m.name for m in case.materials)]
    if missing:
        raise CaseRuleViolation("更正后材料不齐全：" + "、".join(missing))
    if {"applicant.id_number", "applicant.id_type"} & changes.keys():  # age 60+ is read from the ID number
        claims = [g for g in case.green_channel if g in GREEN_CHANNEL_CLAIMS]
        case.green_channel = green_channel(claims, case.applicant.id_type, case.applicant.id_number,
                                           shanghai_date(now))
    resend = [t for t in case.open_tasks if t.sector is not None]
    case.apply(Trigger.CORRECT, actor, now, reason,
               {"fields": {name: {"old": old, "new": new} for name, (old, new) in changes.items()},
                "resent": {t.task_id: t.round + 1 for t in resend}})
    for task in resend:
        task.round += 1
    return resend


def suspend(case: Case, actor: Actor, now: datetime, procedure: str, reason: str) -> None:
    """特别程序 (hearing, expert review, extension): the completion clock stops."""
    _require_reason(reason, "特别程序")
    case.apply(Trigger.SUSPEND, actor, now, reason, {"procedure": procedure})
    if case.deadline:
        case.deadline = case.deadline.pause(shanghai_date(now))


def resume(case: Case, actor: Actor, now: datetime, calendar: WorkingCalendar, reason: str) -> None:
    """The special procedure ends: the clock runs again, the promised date moved by the time it stood."""
    resumed = case.deadline.resume(shanghai_date(now), calendar) if case.deadline else None
    case.apply(Trigger.RESUME, actor, now, reason or "特别程序结束",
               {"promised_by": resumed.due.isoformat() if resumed else None})
    case.deadline = resumed


def prefill_certificate(case: Case, draft: CertificateDraft, actor: Actor, now: datetime) -> None:
    """待出证: the certificate a sector issued, fetched, waits at unified issuing, filled in. Its number must be the
    one the sector's decision named (ResultProblem otherwise: which one is right is for people to find out). A
    certificate issued already, or this one fetched again (a replay), changes nothing."""
    if case.certificate is not None or case.certificate_draft is not None and \
            case.certificate_draft.certificate == draft.certificate:
        return
    named = case.task(draft.task_id).result
    if named is not None and named.certificate_number not in (None, draft.certificate.number):
        raise ResultProblem(f"the certificate fetched is number {draft.certificate.number!r}, but the decision "
                            f"named {named.certificate_number!r}")
    certificate = draft.certificate
    case.apply(Trigger.CERTIFICATE_FETCHED, actor, now, f"已获取{certificate.name}，待统一出证",
               {**_certificate_data(certificate), "task": draft.task_id, "sector": draft.sector})
    case.certificate_draft = draft


def issue_certificate(case: Case, certificate: Certificate | None, actor: Actor, now: datetime) -> None:
    """统一出证: the result is recorded at the unified issuing window. Without a `certificate` the one a sector
    issued (prefilled, 待出证) is issued; with one, its number must be the prefilled one's, if there is one (a
    window does not issue another number than the department's)."""
    draft = case.certificate_draft
    if certificate is None:
        if draft is None:
            raise CaseRuleViolation("该办件没有待出证的证照：请填写证照名称、编号和发证机关")
        certificate = draft.certificate
    elif draft is not None and certificate.number != draft.certificate.number:
        raise CaseRuleViolation(f"证照编号 {certificate.number} 与{draft.sector}签发的证照编号 "
                                f"{draft.certificate.number} 不一致：不填写证照信息即按部门签发的证照出证")
    source = {"source": {"sector": draft.sector, "task": draft.task_id}} if draft is not None else {}
    case.apply(Trigger.ISSUE_CERTIFICATE, actor, now, f"出具{certificate.name}",
               {**_certificate_data(certificate), **source})
    case.certificate = certificate


def issue_automatically(case: Case, matter: Matter, now: datetime) -> bool:
    """An electronic certificate a sector issued, fetched, is issued by the gateway itself where the matter says
    so (`auto_issue_electronic`), once the case is approved; the case then awaits delivery as usual."""
    if not (matter.auto_issue_electronic and case.state is CaseState.APPROVED and case.certificate is None
            and case.certificate_draft is not None):
        return False
    issue_certificate(case, None, GATEWAY, now)
    return True


def _certificate_data(certificate: Certificate) -> dict[str, Any]:
    return {"name": certificate.name, "number": certificate.number, "issuer": certificate.issuer,
            "valid_until": certificate.valid_until.isoformat() if certificate.valid_until else None}


def deliver(case: Case, delivery: Delivery, actor: Actor, now: datetime) -> None:
    """统一送达: picked up or sent by express (with its tracking number); then the case is done."""
    if delivery.method not in ("pickup", "express"):
        raise CaseRuleViolation("送达方式应为 pickup（窗口领取）或 express（快递送达）")
    if delivery.method == "express" and not delivery.tracking_no:
        raise CaseRuleViolation("快递送达必须填写快递单号")
    case.delivery = delivery
    case.apply(Trigger.DELIVER, actor, now, "窗口领取" if delivery.method == "pickup" else "快递送达",
               {"method": delivery.method, "tracking_no": delivery.tracking_no, "received_by": delivery.received_by})
    close(case, now)


def evaluate(case: Case, evaluation: Evaluation, actor: Actor, now: datetime) -> None:
    """好差评, once, after the case is done. Stored by meaning, never by a source system's number."""
    if case.evaluation is not None:
        raise CaseRuleViolation("该办件已评价")
    if evaluation.level not in EVALUATION_LEVELS:
        raise CaseRuleViolation(f"评价等级应为以下之一：{'、'.join(EVALUATION_LEVELS)}")
    case.apply(Trigger.EVALUATE, _person(case, actor), now, evaluation.text or evaluation.level,
               {"level": evaluation.level, "channel": evaluation.channel})
    case.evaluation = evaluation


# The case events other systems may subscribe to (adapters.CaseEventType, bundle.yaml `subscriptions:`).
EVALUATED, CERTIFICATE_ISSUED, CASE_CLOSED = "evaluated", "certificate_issued", "case_closed"
_ANNOUNCED = {Trigger.EVALUATE: EVALUATED, Trigger.ISSUE_CERTIFICATE: CERTIFICATE_ISSUED}


def announced_as(event: CaseEvent) -> str | None:
    """The subscribable case event `event` is, if any: an evaluation, a certificate issued, or the case closed
    (办结, or a supplement never handed in)."""
    if event.to_state is CaseState.CLOSED and event.from_state is not CaseState.CLOSED:
        return CASE_CLOSED
    return _ANNOUNCED.get(event.trigger)


def close(case: Case, now: datetime) -> None:
    # A case being closed exists, so it has a state; Case.state is None only before it is created.
    case.completion = COMPLETION_BY_STATE[case.state]  # type: ignore[index]
    case.apply(Trigger.CLOSE, GATEWAY, now, "办件办结", {"completion": str(case.completion)})


def tick(case: Case, matter: Matter, now: datetime, calendar: WorkingCalendar, warn_days: int,
         supplement_days: int) -> list[Task]:
    """Time passes (e-supervision). Returns tasks to deliver when the case was deemed accepted."""
    today = shanghai_date(now)
    deadline = case.deadline
    if case.state is CaseState.SUPPLEMENT_REQUIRED and deadline and deadline.paused_on and (
            today - deadline.paused_on).days > supplement_days:
        case.apply(Trigger.SUPPLEMENT_EXPIRED, CLOCK, now, f"{supplement_days}日内未补正，驳回申请",
                   {"completion": str(COMPLETION_BY_STATE[CaseState.SUPPLEMENT_REQUIRED])})
        case.completion = COMPLETION_BY_STATE[CaseState.SUPPLEMENT_REQUIRED]
        end_open_tasks(case, CLOCK, now, "补正超时驳回")  # a case sent back after acceptance has tasks out
        return []
    if deadline is None or case.state not in (CaseState.SUBMITTED, CaseState.ACCEPTED, CaseState.IN_PROCESS):
        return []
    if deadline.kind is DeadlineKind.ACCEPTANCE and today > deadline.due and case.state is CaseState.SUBMITTED:
        return accept(case, matter, CLOCK, now, calendar, Trigger.DEEM_ACCEPTED)
    if deadline.needs_warning(today, calendar, warn_days):
        case.deadline = replace(deadline, warned=True)
        case.apply(Trigger.DEADLINE_WARNING, CLOCK, now, f"距{_kind_label(deadline)}期限不足{warn_days}个工作日",
                   {"kind": str(deadline.kind), "due": deadline.due.isoformat()})
    if deadline.is_overdue(today):
        case.deadline = replace(case.deadline or deadline, overdue=True)
        case.apply(Trigger.OVERDUE, CLOCK, now, f"已超过{_kind_label(deadline)}期限",
                   {"kind": str(deadline.kind), "due": deadline.due.isoformat()})
    return []


def green_channel(claims: Iterable[str], id_type: str, id_number: str, today: date) -> tuple[str, ...]:
    """Why a case has priority (绿色通道): claimed grounds, plus age 60+ read from the ID number itself (any
    number in GB 11643 form: resident ID, temporary ID, residence permits, the 2023 permanent residence card)."""
    unknown = set(claims) - GREEN_CHANNEL_CLAIMS
    if unknown:
        raise CaseRuleViolation(f"绿色通道理由应为以下之一：{'、'.join(sorted(GREEN_CHANNEL_CLAIMS))}")
    grounds = sorted(set(claims))
    birth = birth_date(id_type, id_number)
    if birth is not None and _age(birth, today) >= 60:
        grounds.insert(0, "aged_60_plus")
    return tuple(grounds)


def _age(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _person(case: Case, actor: Actor) -> Actor:
    """The terminal that submitted as an agent (代办员) keeps acting as the agent for this case."""
    submitted_by = case.events[0].actor if case.events else None
    if case.agent is not None and actor.kind is ActorKind.APPLICANT and submitted_by == Actor(ActorKind.AGENT,
                                                                                               actor.id):
        return submitted_by
    return actor


def _kind_label(deadline: Deadline) -> str:
    return "受理" if deadline.kind is DeadlineKind.ACCEPTANCE else "承诺办结"


def _require_reason(reason: str, what: str) -> None:
    if not reason or not reason.strip():
        raise CaseRuleViolation(f"{what}必须书面说明理由")

