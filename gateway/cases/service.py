"""The case service: what the hall, windows, departments, the issuing window and the clock do to cases.

Each command is one unit of work: load, let the domain change the case (`gateway.domain.lifecycle`),
store the case, its events and any outbox rows in one transaction. Services know nothing of HTTP or
of any sector's protocol.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.exc import IntegrityError

from adapters import FailureClass, Operation, SectorRefusal
from gateway.cases.views import case_view
from gateway.catalogue.forms import checked_form
from gateway.domain import answers, lifecycle
from gateway.domain.answers import AnswerMismatch
from gateway.domain.calendar import WorkingCalendar
from gateway.domain.case import (
    WAYS_FORWARD,
    Actor,
    ActorKind,
    Agent,
    Applicant,
    Case,
    CaseEvent,
    CaseRuleViolation,
    CaseState,
    Certificate,
    Delivery,
    Evaluation,
    ForbiddenTransition,
    SubmittedMaterial,
    Task,
    TaskState,
    WayForward,
)
from gateway.domain.clock import Clock, shanghai_date
from gateway.domain.codes import id_number_problem
from gateway.domain.matter import Department, HandlingForm, Matter
from gateway.domain.provenance import LicenceRefused, verified_licence
from gateway.domain.results import CertificateDraft, ResultProblem, SectorResult, fetched_certificate
from gateway.persistence.keyset import Key
from gateway.persistence.personal_data import PersonalData
from gateway.persistence.repository import (
    CaseRepository,
    DeadLetter,
    DeadLetterRepository,
    Failure,
    OutboxMessage,
    OutboxRepository,
    StaleCase,
    StoredResponse,
    numbers_taken_apart,
)
from gateway.persistence.uow import UnitOfWork, UnitsOfWork

log = structlog.get_logger("yiwang.cases")
RESIDENT_ID_CARD = "111"  # GA/T 2000.156: an agent (代办员) always identifies with one
# Which handling form (办理形式) a channel uses: a matter must offer it.
CHANNEL_FORMS = {
    "online_pc": HandlingForm.ONLINE,
    "mobile": HandlingForm.MOBILE,
    "city_window": HandlingForm.WINDOW,
    "county_window": HandlingForm.WINDOW,
    "township_counter": HandlingForm.WINDOW,
    "village_agency": HandlingForm.WINDOW,
}


_DECISIONS = {"approved": TaskState.APPROVED, "denied": TaskState.DENIED, "returned": TaskState.RETURNED}


class MatterSource(Protocol):
    """The catalogue as the case service needs it."""

    def published(self, code: str) -> Matter | None: ...

    def version(self, code: str, version: int) -> Matter | None: ...


class AnswerObserver(Protocol):
    """Hears of sector answers refused for naming another task (metrics, built by the composition root)."""

    def mismatch(self, sector: str, source: str) -> None:
        """A callback (`source` "callback") or polled answer ("poll") refused by gateway.domain.answers."""

    def reference_clash(self, sector: str) -> None:
        """A submit answer with a reference another task of the sector already holds."""


class _Unobserved:
    """The default observer: hears nothing."""

    def mismatch(self, sector: str, source: str) -> None:
        pass

    def reference_clash(self, sector: str) -> None:
        pass


class UnknownMatter(LookupError):
    def __init__(self, matter: str) -> None:
        super().__init__(f"没有已发布的事项 {matter}")


class InvalidApplication(ValueError):
    """The application breaks a rule the hall can fix (a bad ID number, a material the matter does not list)."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was already used with a different request (the key is not repeated: the caller's)."""

    def __init__(self) -> None:
        super().__init__("该 Idempotency-Key 已用于内容不同的申请；新的申请请使用新的键")


class CaseNotFound(LookupError):
    def __init__(self, case_no: str) -> None:
        super().__init__(f"没有编号为 {case_no} 的办件")


class DeadLetterNotFound(LookupError):
    def __init__(self, dead_letter_id: int) -> None:
        super().__init__(f"没有编号为 {dead_letter_id} 的死信")


class NotReplayable(ValueError):
    """A dead letter already replayed, or one that names no message to send again."""


class NotYourCase(PermissionError):
    """A department's clerk acting on a task, or a case, that is not their department's."""


@dataclass(frozen=True)
class SubmitCase:
    matter_code: str
    applicant: Applicant
    materials: tuple[SubmittedMaterial, ...]
    form: Mapping[str, Any] = field(default_factory=dict)
    channel: str = "online_pc"
    region_code: str = "150200"
    agent: Agent | None = None
    green_channel_claims: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """A hash of the request's meaning, so a retried POST is recognised whatever its whitespace."""
        body = json.dumps(self, default=_fingerprinted, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()


class LicenceLibrary(Protocol):
    """The electronic licence library as intake asks it (wired to the named query `licence_lookup`)."""

    def lookup(self, number: str) -> Mapping[str, Any]:
        """The library's answer for licence `number` (the query's mapped result); LicenceRefused when it knows
        no licence by that number; a DeliveryError when it cannot be asked."""


def _fingerprinted(value: Any) -> Any:
    """JSON for a part of a command; a material as stored (an uncited one as it was before citations existed, so
    an Idempotency-Key's stored fingerprint still matches)."""
    if isinstance(value, SubmittedMaterial):
        return value.as_data()
    return vars(value) if hasattr(value, "__dict__") else list(value)


# The applicant's fields a window may correct (更正); the form's fields are named `form.<field>`.
CORRECTABLE_APPLICANT = ("name", "id_type", "id_number", "phone", "address", "legal_representative")
OPTIONAL_APPLICANT = frozenset({"phone", "address", "legal_representative"})


@dataclass(frozen=True)
class Correction:
    """更正: named fields of an accepted case and their new values (None clears an optional field or removes a
    form field), and/or a new list of materials, with the reason the window gives."""

    reason: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    materials: tuple[SubmittedMaterial, ...] | None = None

    def apply_to(self, case: Case) -> dict[str, tuple[Any, Any]]:
        """Change the case; returns field -> (old, new) for what really changed. CaseRuleViolation names a field
        that cannot be corrected."""
        changes: dict[str, tuple[Any, Any]] = {}
        applicant, form = vars(case.applicant).copy(), dict(case.form)
        for name, new in self.fields.items():
            group, _, key = name.partition(".")
            if group == "applicant" and key in CORRECTABLE_APPLICANT:
                if new is None and key not in OPTIONAL_APPLICANT or new is not None and not isinstance(new, str):
                    raise CaseRuleViolation(f"更正字段 {name} 必须是文字")
                old, applicant[key] = applicant[key], new
            elif group == "form" and key:
                old = form.pop(key, None)
                if new is not None:
                    form[key] = new
            else:
                raise CaseRuleViolation(f"不能更正字段 {name}：可更正 applicant.<{'|'.join(CORRECTABLE_APPLICANT)}> "
                                        "与 form.<字段>")
            if old != new:
                changes[name] = (old, new)
        case.applicant, case.form = Applicant(**applicant), form
        if self.materials is not None and self.materials != case.materials:
            changes["materials"] = ([m.as_data() for m in case.materials], [m.as_data() for m in self.materials])
            case.materials = self.materials
        return changes


@dataclass(frozen=True)
class SubmitOutcome:
    case: Mapping[str, Any]  # the case view as first answered
    replayed: bool  # True when an Idempotency-Key returned an earlier answer


Change = Callable[[Case, Matter, datetime], list[Task]]  # a change to a case; returns tasks to deliver


@dataclass
class CaseService:
    units: UnitsOfWork  # every command and read is one unit of work; its keys seal personal data at rest
    catalogue: MatterSource
    calendar: WorkingCalendar
    clock: Clock
    material_exists: Callable[[Iterable[str]], list[str]] = lambda refs: []  # returns the unknown refs
    warn_days: int = 2  # e-supervision warns this many working days before a deadline
    supplement_days: int = 30  # an unanswered supplement notice ends the case after this many days
    # Which sector system takes a department's task of a matter (the active bundles' routing); None:
    # the catalogue's `sector` of the department decides, and no sector means the back office.
    router: Callable[[str, str], str | None] | None = None
    answer_observer: AnswerObserver = field(default_factory=_Unobserved)
    # Where a cited licence is confirmed (set once the sector calls exist); None: citing a licence is refused.
    licences: LicenceLibrary | None = None

    @property
    def personal(self) -> PersonalData:
        """Seals personal data at rest, finds cases by the blind index."""
        return self.units.personal

    def uow(self, read_only: bool = False) -> UnitOfWork:
        return self.units(read_only=read_only)

    # -- the hall and the windows: applications --------------------------------------------------
    def submit(self, command: SubmitCase, actor: Actor, idempotency_key: str | None = None) -> SubmitOutcome:
        """`idempotency_key` is the caller's own: it is remembered for `actor.id` (the identity), so another
        identity sending the same key makes a case of its own and learns nothing of the first."""
        matter, command = self._check(command)
        fingerprint = command.fingerprint()  # of the application as given: a citation's answer changes with time
        if _cites(command.materials):
            if idempotency_key is not None and (replayed := self._replayed(actor.id, idempotency_key,
                                                                           fingerprint)) is not None:
                return replayed  # a repeated POST asks the library nothing
            command = replace(command, materials=self._confirmed(command.materials, command.applicant))
        try:
            return self._submit_once(matter, command, actor, idempotency_key, fingerprint)
        except IntegrityError:
            # Two requests with one key raced past the lookup, or two SQLite submissions began a day's
            # case counter at once: the loser rolled back whole; once more finds the winner's answer, or
            # the counter row to lock.
            return self._submit_once(matter, command, actor, idempotency_key, fingerprint)

    def get(self, case_no: str) -> Case:
        with self.uow(read_only=True) as uow:
            case = uow.cases.get(case_no)
        if case is None:
            raise CaseNotFound(case_no)
        return case

    def events(self, case_no: str) -> list[CaseEvent]:
        return self.get(case_no).events

    def for_applicant(self, id_number: str, after: Key | None = None, limit: int = 100) -> list[tuple[Key, Case]]:
        """One applicant's cases, newest first, each with its key in that order (APPLICANT_CASES)."""
        with self.uow(read_only=True) as uow:
            found = [(key, uow.cases.get(case_no)) for key, case_no in uow.cases.for_applicant(id_number, after, limit)]
        return [(key, case) for key, case in found if case is not None]

    def count_for_applicant(self, id_number: str) -> int:
        with self.uow(read_only=True) as uow:
            return uow.cases.count_for_applicant(id_number)

    def matter_of(self, case: Case) -> Matter:
        matter = self.catalogue.version(case.matter_code, case.matter_version)
        if matter is None:
            raise UnknownMatter(f"{case.matter_code} v{case.matter_version}")
        return self._routed(matter)

    def _routed(self, matter: Matter) -> Matter:
        """The matter with each department's `sector` as the active bundles route it (tasks are made from it)."""
        if self.router is None:
            return matter
        route = self.router

        def routed(department: Department) -> Department:
            return replace(department, sector=route(matter.implementation_code, department.credit_code)
                           or department.sector)

        return replace(matter, implementing_body=routed(matter.implementing_body),
                       co_departments=tuple(routed(d) for d in matter.co_departments))

    def supplement(self, case_no: str, materials: tuple[SubmittedMaterial, ...], actor: Actor,
                   expected_version: int | None = None) -> Case:
        if _cites(materials):  # the library is asked before the case is locked, never while
            materials = self._confirmed(materials, self.get(case_no).applicant)

        def change(case: Case, matter: Matter, now: datetime) -> list[Task]:
            self._check_materials(matter, materials)
            return lifecycle.supplement(case, matter, materials, actor, now, self.calendar)

        return self.change(case_no, change, expected_version)

    def withdraw(self, case_no: str, actor: Actor, reason: str, expected_version: int | None = None) -> Case:
        """Withdrawn: its open tasks are cancelled; the sector systems that already have one are told."""
        return self.change(case_no, _quiet(lambda c, m, now: lifecycle.withdraw(c, actor, now, reason)),
                           expected_version)

    def accept(self, case_no: str, actor: Actor, expected_version: int | None = None) -> Case:
        def change(case: Case, matter: Matter, now: datetime) -> list[Task]:
            missing = [m.name for m in matter.missing_materials(x.name for x in case.materials)]
            if missing:
                raise CaseRuleViolation("材料不齐全，不能受理：" + "、".join(missing))
            if case.receipt_no is not None:  # accepted before, sent back for a supplement: it goes on
                return lifecycle.continue_processing(case, actor, now)
            return lifecycle.accept(case, matter, actor, now, self.calendar)

        return self.change(case_no, change, expected_version)

    def not_accept(self, case_no: str, actor: Actor, reason: str, expected_version: int | None = None) -> Case:
        return self.change(case_no, _quiet(lambda c, m, now: lifecycle.not_accept(c, actor, now, reason)),
                           expected_version)

    def request_supplement(self, case_no: str, missing: list[str], actor: Actor, reason: str,
                           expected_version: int | None = None) -> Case:
        def change(case: Case, matter: Matter, now: datetime) -> list[Task]:
            unknown = [name for name in missing if not matter.knows_material(name)]
            if unknown:
                # The window may not add requirements beyond the published list.
                raise CaseRuleViolation("补正材料不在事项材料清单中：" + "、".join(unknown))
            lifecycle.request_supplement(case, missing, actor, now, reason or "请补齐补正材料")
            return []

        return self.change(case_no, change, expected_version)

    def correct(self, case_no: str, correction: Correction, actor: Actor, expected_version: int | None = None) -> Case:
        """更正 at the window: named fields of an accepted case corrected with a reason, checked as intake checks
        them; the case is sent again to every sector system that has an open task (a new round, a new key).
        Cited licences are confirmed again, held by the applicant as corrected."""
        correction = self._reconfirmed(case_no, correction)

        def change(case: Case, matter: Matter, now: datetime) -> list[Task]:
            changes = correction.apply_to(case)
            self._check_corrected(matter, case)
            return lifecycle.correct(case, matter, changes, actor, now, correction.reason)

        return self.change(case_no, change, expected_version)

    def settle(self, case_no: str, task_id: str, way: WayForward, actor: Actor, reason: str,
               missing: Iterable[str] = (), expected_version: int | None = None) -> Case:
        """A way forward for a task its sector will not take (case.WAYS_FORWARD)."""
        return self.change(case_no, _quiet(lambda c, m, now: lifecycle.settle(c, task_id, way, actor, now, reason,
                                                                              missing)), expected_version)

    # -- departments without a system: the back-office API ----------------------------------------
    def decide_task(self, case_no: str, task_id: str, decision: TaskState, opinion: str, actor: Actor,
                    department: str | None, expected_version: int | None = None) -> Case:
        def change(case: Case, matter: Matter, now: datetime) -> list[Task]:
            _own_task(case, task_id, department)
            lifecycle.conclude_task(case, task_id, decision, opinion, actor, now)
            lifecycle.issue_automatically(case, matter, now)  # a co-department's licence fetched before
            return []

        return self.change(case_no, change, expected_version)

    def suspend(self, case_no: str, procedure: str, reason: str, actor: Actor, department: str | None,
                expected_version: int | None = None) -> Case:
        def change(case: Case, matter: Matter, now: datetime) -> list[Task]:
            _own_case(case, department)
            # A back-office department has the case from the moment it acts on it.
            for task in case.tasks:
                if task.sector is None and task.credit_code == department and case.state is CaseState.ACCEPTED:
                    lifecycle.start_task(case, task.task_id, actor, now)
            lifecycle.suspend(case, actor, now, procedure, reason)
            return []

        return self.change(case_no, change, expected_version)

    def resume(self, case_no: str, reason: str, actor: Actor, department: str | None,
               expected_version: int | None = None) -> Case:
        def change(case: Case, matter: Matter, now: datetime) -> list[Task]:
            _own_case(case, department)
            lifecycle.resume(case, actor, now, self.calendar, reason)
            return []

        return self.change(case_no, change, expected_version)

    # -- unified issuing and delivery, evaluation -------------------------------------------------
    def issue_certificate(self, case_no: str, certificate: Certificate | None, actor: Actor,
                          expected_version: int | None = None) -> Case:
        """统一出证. `certificate` None: the one its sector issued, prefilled (待出证); CaseRuleViolation if none is,
        or if a given certificate's number is not the prefilled one's."""
        return self.change(case_no, _quiet(lambda c, m, now: lifecycle.issue_certificate(c, certificate, actor, now)),
                           expected_version)

    def deliver(self, case_no: str, delivery: Delivery, actor: Actor, expected_version: int | None = None) -> Case:
        def change(case: Case, matter: Matter, now: datetime) -> None:
            if delivery.method == "express" and not matter.express_delivery:
                raise CaseRuleViolation(f"事项“{matter.name}”不提供快递送达")
            lifecycle.deliver(case, delivery, actor, now)

        return self.change(case_no, _quiet(change), expected_version)

    def evaluate(self, case_no: str, evaluation: Evaluation, actor: Actor,
                 expected_version: int | None = None) -> Case:
        return self.change(case_no, _quiet(lambda c, m, now: lifecycle.evaluate(c, evaluation, actor, now)),
                           expected_version)

    # -- the sector systems' answers, recorded by the dispatcher -----------------------------------
    def record_submitted(self, message: OutboxMessage, owner: str, sector_ref: str,
                         poll_after: timedelta | None) -> bool:
        """The sector took its task: the task starts and, unless it calls back, its first poll is scheduled.
        A reference another task of the sector holds starts nothing: the message becomes a `validation` dead
        letter naming both cases, and neither case changes."""
        clashes: list[str] = []

        def change(case: Case, matter: Matter, now: datetime, uow: UnitOfWork) -> None:
            holder = uow.cases.task_for_sector_ref(message.sector, sector_ref)
            if holder is not None and holder != (case.case_no, message.task_id):
                clashes.append(f"{message.sector} answered case {case.case_no} task {message.task_id} with the "
                               f"reference {sector_ref!r}, which case {holder[0]} task {holder[1]} already holds")
                _dead_letter(uow, message, now, clashes[-1], {"sector_ref": sector_ref})
                return
            before = len(case.events)
            # A later round's answer opens its own polling: the earlier round's polls were superseded with it.
            resent = message.round > 0 and case.task(message.task_id).state is TaskState.IN_PROCESS
            lifecycle.start_task(case, message.task_id, _sector(message), now, sector_ref, resent=resent)
            uow.outbox.complete(message.id, now)
            if len(case.events) == before and not resent:
                return  # started already (a callback came first, or a repeat): its polling is scheduled
            if poll_after is not None and not case.task(message.task_id).state.concluded:
                uow.outbox.add(case.case_no, message.sector, Operation.QUERY_STATUS, message.task_id,
                               now + poll_after, message.priority, message.round)

        recorded = _once_more_on_clash(lambda: self._record(message, owner, change))
        for clash in clashes[-1:]:  # the last try is the one committed
            log.warning("sector reference already held", sector=message.sector, case_no=message.case_no,
                        detail=clash)
            self.answer_observer.reference_clash(message.sector)
        return recorded

    def record_status(self, message: OutboxMessage, owner: str, result: Mapping[str, Any],
                      poll_after: timedelta) -> bool:
        """A status answer: keep polling while undecided; a decision concludes the department's task."""
        decision = _DECISIONS.get(result.get("status", ""))
        refused: list[AnswerMismatch] = []

        def change(case: Case, matter: Matter, now: datetime, uow: UnitOfWork) -> None:
            try:  # an answer about another task changes nothing: a dead letter for the operators instead
                task = case.task(message.task_id)
                answers.check_same_task(message.sector, answers.claims(result), case.case_no, task.task_id,
                                        known_as=task.sector_ref,
                                        answer_ref=answers.identifier("sector_ref", result.get("sector_ref")))
            except AnswerMismatch as mismatch:
                refused.append(mismatch)
                _dead_letter(uow, message, now, str(mismatch), dict(result))
                return
            if decision is None or case.state is CaseState.SUSPENDED:
                # Undecided — or decided during a special procedure: ask again until it can be recorded.
                uow.outbox.reschedule(message.id, now + poll_after)
                return
            try:
                facts = SectorResult.read(result)
            except ResultProblem as problem:  # a time without its zone is never guessed: the operators see it
                _dead_letter(uow, message, now, f"the decision cannot be recorded: {problem}", dict(result))
                log.warning("sector decision unreadable", sector=message.sector, case_no=case.case_no,
                            detail=str(problem))
                return
            lifecycle.conclude_task(case, message.task_id, decision, result.get("opinion") or "", _sector(message),
                                    now, facts)
            lifecycle.issue_automatically(case, matter, now)
            uow.outbox.complete(message.id, now)

        recorded = self._record(message, owner, change)
        for mismatch in refused:
            self._refused(message.sector, "poll", mismatch)
        return recorded

    def record_refusal(self, message: OutboxMessage, owner: str, refusal: SectorRefusal) -> bool:
        """A sector's final refusal of a task's submission, recorded in one transaction: the message settled and
        the way forward its mapping names applied (`lifecycle.settle`) by the sector's department, with the
        sector's own message as the reason and its code and message in the event. A supplement the sector named
        nothing for goes to the back office instead (the event says so). A refusal the case can no longer take
        that way (it moved on: suspended, waiting for another supplement) is a dead letter for an operator."""
        def change(case: Case, matter: Matter, now: datetime, uow: UnitOfWork) -> None:
            task = case.task(message.task_id)
            if task.state.ended or task.round != message.round:
                uow.outbox.complete(message.id, now)  # the task moved on: a refusal of what it was changes nothing
                return
            way, reason, note = refusal_way(task, refusal)
            actor = _sector(message)
            try:
                case.require(WAYS_FORWARD[way].trigger, actor)
            except ForbiddenTransition as forbidden:
                _dead_letter(uow, message, now, f"{message.sector} refused: {refusal.sector_message}; {forbidden}",
                             {**note, "way": str(way), "missing": list(refusal.missing)}, FailureClass.SECTOR_FAULT)
                return
            before = task_snapshot(case)
            lifecycle.settle(case, task.task_id, way, actor, now, reason, refusal.missing, note)
            uow.outbox.complete(message.id, now)
            store_change(uow, case, before, (), now)

        return self._record(message, owner, change)

    def record_certificate(self, message: OutboxMessage, owner: str, result: Mapping[str, Any]) -> bool:
        """The certificate a sector issued, fetched: prefilled for unified issuing (待出证) — and issued by the
        gateway where the matter says so. One the answer cannot give (no number, a number other than the one the
        decision named) becomes a `validation` dead letter; the case stays as it was."""
        refused: list[str] = []

        def change(case: Case, matter: Matter, now: datetime, uow: UnitOfWork) -> None:
            task = case.task(message.task_id)
            try:
                certificate, holder_name, file_ref = fetched_certificate(result, task.department)
                draft = CertificateDraft(certificate, message.sector, task.task_id, now, holder_name, file_ref)
                lifecycle.prefill_certificate(case, draft, _sector(message), now)
            except ResultProblem as problem:
                refused.append(f"the certificate cannot be prefilled: {problem}")
                _dead_letter(uow, message, now, refused[-1], dict(result))
                return
            lifecycle.issue_automatically(case, matter, now)
            uow.outbox.complete(message.id, now)

        recorded = self._record(message, owner, change)
        for why in refused:
            log.warning("sector certificate refused", sector=message.sector, case_no=message.case_no, detail=why)
        return recorded

    def record_cancelled(self, message: OutboxMessage, owner: str) -> bool:
        """A sector took our cancellation of a task it had: the task shows its sector was told."""
        def change(case: Case, matter: Matter, now: datetime, uow: UnitOfWork) -> None:
            lifecycle.sector_told(case, message.task_id, _sector(message), now)
            uow.outbox.complete(message.id, now)

        return self._record(message, owner, change)

    def record_callback(self, sector: str, result: Mapping[str, Any]) -> bool:
        """A sector calls back with its decision — possibly before its answer to the submit was recorded,
        possibly twice. Applied only to the task every identifier it carries names (gateway.domain.answers);
        otherwise AnswerMismatch, and nothing changes. Returns False when it changed nothing (a duplicate)."""
        try:
            return _once_more_on_clash(lambda: self._record_callback(sector, result))
        except AnswerMismatch as mismatch:
            self._refused(sector, "callback", mismatch)
            raise

    def answered_case(self, sector: str, result: Mapping[str, Any]) -> str | None:
        """The case whose task holds the reference a sector's answer carries (the message log files a callback
        under it, for the case's journey); None when it carries none, or no task holds it."""
        try:
            sector_ref = answers.reference(result)
        except AnswerMismatch:
            return None
        with self.uow(read_only=True) as uow:
            holder = uow.cases.task_for_sector_ref(sector, sector_ref)
        return holder[0] if holder is not None else None

    def _record_callback(self, sector: str, result: Mapping[str, Any]) -> bool:
        sector_ref, found = answers.reference(result), answers.claims(result)
        with self.uow(read_only=True) as uow:
            holder = uow.cases.task_for_sector_ref(sector, sector_ref)
        case_no = holder[0] if holder is not None else answers.case_to_bind(sector_ref, found)
        decision = _DECISIONS.get(str(result.get("status", "")))
        facts = SectorResult.read(result) if decision is not None else None  # ResultProblem: nothing changes
        actor = Actor(ActorKind.DEPARTMENT, f"sector:{sector}")

        def change(case: Case, matter: Matter, now: datetime) -> list[Task]:
            task = case.task(holder[1]) if holder is not None else answers.task_to_bind(case, sector, sector_ref,
                                                                                       found)
            answers.check_same_task(sector, found, case.case_no, task.task_id, known_as=task.sector_ref or sector_ref,
                                    answer_ref=sector_ref)
            lifecycle.start_task(case, task.task_id, actor, now, sector_ref)
            if decision is not None:
                lifecycle.conclude_task(case, task.task_id, decision, str(result.get("opinion") or ""), actor, now,
                                        facts)
                lifecycle.issue_automatically(case, matter, now)
            return []

        try:
            before = self.get(case_no).version
        except CaseNotFound:
            raise answers.no_such_case(sector_ref, case_no) from None
        return self.change(case_no, change).version != before

    def _refused(self, sector: str, source: str, mismatch: AnswerMismatch) -> None:
        log.warning("sector answer refused", sector=sector, source=source, detail=str(mismatch))
        self.answer_observer.mismatch(sector, source)

    def record_dead_letter(self, message: OutboxMessage, owner: str, failure: Failure) -> bool:
        """A failure that outlasted its retries: keep it for operators; the case stays where it was."""
        with self.uow() as uow:
            if not uow.outbox.holds_lease(message.id, owner):
                return False
            now = self.clock.now()
            uow.outbox.mark_dead(message.id, now)
            uow.dead_letters.add(message, failure, now)
            uow.commit()
        return True

    def record_bad_answer(self, message: OutboxMessage, owner: str, backoff: timedelta) -> bool:
        """A status answer that could not be read: counted on the message and asked again after `backoff`; the
        case is not touched (the message log holds the answer)."""
        with self.uow() as uow:
            if not uow.outbox.holds_lease(message.id, owner):
                return False
            uow.outbox.bad_answer(message.id, self.clock.now() + backoff)
            uow.commit()
        return True

    def wait_for_circuit(self, message: OutboxMessage, owner: str, until: datetime, *, spent: bool) -> bool:
        """The sector's breaker refused the delivery: the message is due again at `until` (when the breaker may
        close), this take not counted as a delivery unless `spent`; the case stays where it was."""
        with self.uow() as uow:
            if not uow.outbox.holds_lease(message.id, owner):
                return False
            uow.outbox.wait_for_circuit(message.id, until, self.clock.now(), spent=spent)
            uow.commit()
        return True

    def wait_for_answer(self, message: OutboxMessage, owner: str, until: datetime) -> bool:
        """The message is on its way across a gap (`adapters.AnswerPending`): due again at `until`, this take not
        counted as a delivery; the case stays where it was. False when the lease was lost (nothing changed)."""
        with self.uow() as uow:
            if not uow.outbox.holds_lease(message.id, owner):
                return False
            uow.outbox.wait_for_answer(message.id, until)
            uow.commit()
        return True

    def answer_arrived(self, idempotency_key: str) -> int:
        """An answer for the messages sent with `idempotency_key` has come across a gap: the ones waiting for it
        are due now, so the delivery loop takes them at once. Returns how many."""
        with self.uow() as uow:
            made = uow.outbox.due_now(idempotency_key, self.clock.now())
            uow.commit()
        return made

    def record_unhandled(self, outbox_id: int | None, failure: Failure, about: Mapping[str, Any]) -> int | None:
        """The broker gave up on a message no worker could settle (its delivery limit, or unreadable): it
        becomes a dead letter like any other. None when its outbox row is settled already (nothing is lost)."""
        with self.uow() as uow:
            message = uow.outbox.get(outbox_id) if outbox_id is not None else None
            if message is not None and message.status not in uow.outbox.OPEN:
                return None
            now = self.clock.now()
            if message is not None:
                uow.outbox.mark_dead(message.id, now)
            letter = uow.dead_letters.add(message, failure, now, about=about)
            uow.commit()
        return letter

    def dead_letters(self, case_no: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self.uow(read_only=True) as uow:
            return list(uow.dead_letters.list(case_no=case_no, limit=limit))

    def dead_letter(self, dead_letter_id: int) -> DeadLetter:
        with self.uow(read_only=True) as uow:
            letter = uow.dead_letters.get(dead_letter_id)
        if letter is None:
            raise DeadLetterNotFound(dead_letter_id)
        return letter

    # -- the clock ----------------------------------------------------------------------------------
    def tick(self) -> int:
        """Deemed acceptance, deadline warnings, overdue flags, expired supplements. Returns cases changed."""
        now = self.clock.now()
        today = shanghai_date(now)
        horizon = self.calendar.add_working_days(today, self.warn_days)
        with self.uow(read_only=True) as uow:
            candidates = uow.cases.due_for_clock(today, horizon)
        moved: list[bool] = []

        def tick_one(case: Case, matter: Matter, at: datetime) -> list[Task]:
            before = len(case.events)
            to_deliver = lifecycle.tick(case, matter, at, self.calendar, self.warn_days, self.supplement_days)
            moved.append(len(case.events) > before)
            return to_deliver

        for case_no in candidates:
            try:
                self.change(case_no, tick_one)
            except StaleCase:
                continue  # another process moved it meanwhile; the next tick looks again
        return sum(moved)

    # -- the one way a stored case changes -----------------------------------------------------------
    def change(self, case_no: str, change: Change, expected_version: int | None = None) -> Case:
        """Load, check the version the caller saw, change, store with what the change makes to send (see
        `store_change`), commit."""
        with self.uow() as uow:
            case = uow.cases.get(case_no, for_update=True)  # writers of one case take turns: none is stale
            if case is None:
                raise CaseNotFound(case_no)
            if expected_version is not None and expected_version != case.version:
                raise StaleCase(case_no)
            now = self.clock.now()
            events_before, before = len(case.events), task_snapshot(case)
            to_deliver = change(case, self.matter_of(case), now)
            if len(case.events) == events_before:
                return case  # nothing happened: nothing to store
            store_change(uow, case, before, to_deliver, now)
            uow.commit()
        return case

    def _record(self, message: OutboxMessage, owner: str,
                change: Callable[[Case, Matter, datetime, UnitOfWork], None]) -> bool:
        with self.uow() as uow:
            # Locked first: outcomes of the case's other tasks, recorded at the same moment by other workers,
            # wait for this one and then read it, instead of failing as stale — a worker whose recording
            # failed hands its message back, and the sector would be called again (issue 14).
            case = uow.cases.get(message.case_no, for_update=True)
            if not uow.outbox.holds_lease(message.id, owner):
                return False  # another dispatcher took the message over; it records the outcome
            if case is None:
                raise CaseNotFound(message.case_no)
            now = self.clock.now()
            before = task_snapshot(case)
            try:
                change(case, self.matter_of(case), now, uow)
            except ForbiddenTransition:
                # The case moved on meanwhile (withdrawn, closed): the sector's late answer changes
                # nothing; the message is done rather than retried for ever.
                uow.outbox.complete(message.id, now)
                uow.commit()
                return False
            if case.new_events:
                uow.cases.save(case, now)
                _enqueue_certificate_fetches(uow, case, before, now)
            uow.commit()
        return True

    def record_event_delivered(self, message: OutboxMessage, owner: str) -> bool:
        """A subscribed sector took a case event: its delivery is done; the case does not change."""
        return self._complete(message, owner)

    def settle_without_sending(self, message: OutboxMessage, owner: str) -> bool:
        """The case ended before its message left (withdrawn, not accepted): there is nothing to send."""
        return self._complete(message, owner)

    def _complete(self, message: OutboxMessage, owner: str) -> bool:
        with self.uow() as uow:
            if not uow.outbox.holds_lease(message.id, owner):
                return False
            uow.outbox.complete(message.id, self.clock.now())
            uow.commit()
        return True

    # -- intake ---------------------------------------------------------------------------------------
    def _check(self, command: SubmitCase) -> tuple[Matter, SubmitCase]:
        """The matter, and the command as it is kept (its form's texts normalised); InvalidApplication when
        the application breaks a rule of the matter or carries what no sector could take."""
        published = self.catalogue.published(command.matter_code)
        if published is None:
            raise UnknownMatter(command.matter_code)
        matter = self._routed(published)
        if CHANNEL_FORMS[command.channel] not in matter.handling_forms:
            raise InvalidApplication(f"事项“{matter.name}”不支持通过 {command.channel} 办理")
        if command.channel == "village_agency" and command.agent is None:
            raise InvalidApplication("村（社区）代办点提交的申请必须登记代办员")
        self._check_people(command.applicant, command.agent)
        self._check_materials(matter, command.materials)
        return matter, replace(command, form=self._check_form(matter, command.form))

    def _check_corrected(self, matter: Matter, case: Case) -> None:
        """A corrected case passes intake's checks of what it carries (the matter it was accepted under); its
        form is kept as intake keeps one (texts normalised)."""
        self._check_people(case.applicant, case.agent)
        self._check_materials(matter, case.materials)
        case.form = self._check_form(matter, case.form)

    def _check_people(self, applicant: Applicant, agent: Agent | None) -> None:
        today = shanghai_date(self.clock.now())  # the service's clock: a birth date is judged against it
        for person, id_type, number in _id_numbers(applicant, agent):
            if (problem := id_number_problem(id_type, number, today)) is not None:
                raise InvalidApplication(person + problem)

    def _check_materials(self, matter: Matter, materials: Iterable[SubmittedMaterial]) -> None:
        materials = list(materials)
        unknown = [m.name for m in materials if not matter.knows_material(m.name)]
        if unknown:
            raise InvalidApplication(f"事项“{matter.name}”的材料清单中没有：{'、'.join(unknown)}")
        missing_files = self.material_exists([m.file_ref for m in materials if m.file_ref])
        if missing_files:
            raise InvalidApplication(f"材料文件不存在：{', '.join(missing_files)}")

    def _confirmed(self, materials: Iterable[SubmittedMaterial], applicant: Applicant) -> tuple[SubmittedMaterial, ...]:
        """Each cited licence confirmed with the library now: valid and the applicant's, with its provenance."""
        return tuple(self._confirm(m, applicant) if m.licence_number is not None else m for m in materials)

    def _confirm(self, material: SubmittedMaterial, applicant: Applicant) -> SubmittedMaterial:
        if self.licences is None or material.licence_number is None:
            raise LicenceRefused("网关未接入证照库，不能引用证照，请上传材料")
        answer = self.licences.lookup(material.licence_number)
        now = self.clock.now()
        provenance = verified_licence(material.licence_number, answer, applicant.id_number, shanghai_date(now), now)
        return replace(material, provenance=provenance)

    def _reconfirmed(self, case_no: str, correction: Correction) -> Correction:
        """The correction with its cited licences confirmed for the applicant as corrected; when only the ID number
        changes, the case's own citations are confirmed again (a licence of the old number is no longer theirs)."""
        new_id = "applicant.id_number" in correction.fields
        if correction.materials is None and not new_id:
            return correction
        case = self.get(case_no)
        materials = case.materials if correction.materials is None else correction.materials
        if not _cites(materials):
            return correction
        applicant = replace(case.applicant, id_number=correction.fields.get("applicant.id_number",
                                                                              case.applicant.id_number))
        return replace(correction, materials=self._confirmed(materials, applicant))

    @staticmethod
    def _check_form(matter: Matter, form: Mapping[str, Any]) -> dict[str, Any]:
        kept, problems = checked_form(matter.form_schema, form)
        if problems:
            raise InvalidApplication("申请表填写不符合要求",
                                     [{"loc": ["body", "form", *p.path], "msg": p.message} for p in problems])
        return kept

    def _submit_once(self, matter: Matter, command: SubmitCase, actor: Actor, key: str | None,
                     fingerprint: str) -> SubmitOutcome:
        now = self.clock.now()
        scope = matter.implementation_code + shanghai_date(now).strftime("%Y%m%d")
        number = None
        if numbers_taken_apart(self.units.dialect):  # see take_number_apart: a replayed key must not spend one
            if key is not None and (replayed := self._replayed(actor.id, key, fingerprint)) is not None:
                return replayed
            with self.uow() as apart:
                number = apart.cases.take_number_apart(scope)
                apart.commit()
        with self.uow() as uow:
            if key is not None and (replayed := self._replayed(actor.id, key, fingerprint, uow)) is not None:
                return replayed
            seq = number if number is not None else uow.cases.next_sequence(scope)
            case = self._new_case(matter, command, now, seq)
            lifecycle.submit(case, matter, actor, now, self.calendar)
            to_deliver = lifecycle.check_completeness(case, matter, now, self.calendar)
            uow.cases.add(case, now)
            _enqueue(uow, case, to_deliver, now)
            view = case_view(case)
            if key is not None:
                uow.idempotency.add(actor.id, key, StoredResponse(fingerprint, case.case_no, 201, view), now)
            uow.commit()
        return SubmitOutcome(view, replayed=False)

    def _replayed(self, owner: str, key: str, fingerprint: str,
                  uow: UnitOfWork | None = None) -> SubmitOutcome | None:
        """The stored answer to this identity's earlier submission with this Idempotency-Key, if there was one."""
        if uow is None:
            with self.uow(read_only=True) as reading:
                return self._replayed(owner, key, fingerprint, reading)
        earlier = uow.idempotency.get(owner, key)
        if earlier is None:
            return None
        if earlier.request_hash != fingerprint:
            raise IdempotencyConflict()
        return SubmitOutcome(earlier.response, replayed=True)

    @staticmethod
    def _new_case(matter: Matter, command: SubmitCase, now: datetime, seq: int) -> Case:
        today = shanghai_date(now)
        applicant = command.applicant
        return Case(
            case_no=f"{matter.implementation_code}{today:%Y%m%d}{seq:06d}",
            matter_code=matter.implementation_code,
            matter_version=matter.version,
            applicant=applicant,
            materials=command.materials,
            form=command.form,
            channel=command.channel,
            region_code=command.region_code,
            agent=command.agent,
            green_channel=lifecycle.green_channel(command.green_channel_claims, applicant.id_type,
                                                  applicant.id_number, today),
        )


def _cites(materials: Iterable[SubmittedMaterial]) -> bool:
    return any(m.licence_number is not None for m in materials)


class Repositories(Protocol):
    """What storing a changed case needs: a unit of work's repositories, or the dead-letter desk's."""

    cases: CaseRepository
    outbox: OutboxRepository
    dead_letters: DeadLetterRepository


def task_snapshot(case: Case) -> dict[str, Task]:
    """The case's tasks as they stand, to compare with after a change (`store_change`)."""
    return {task.task_id: replace(task) for task in case.tasks}


def store_change(repos: Repositories, case: Case, before: Mapping[str, Task], to_deliver: Iterable[Task],
                 now: datetime) -> None:
    """Store a changed case with everything the change means for sectors, in the caller's transaction:
    - a task that started a new round (a correction, a send-back, a hand-over): its open messages of earlier
      rounds, and the dead letters they left, are superseded — what a sector answers to them changes nothing;
    - a task a sector had and must drop (cancelled, or handed to the back office): that sector is sent a
      cancellation;
    - the tasks the change returns: submitted to their sectors, under their round's idempotency key."""
    repos.cases.save(case, now)
    priority = _priority(case)
    for task in case.tasks:
        earlier = before.get(task.task_id)
        if earlier is None:
            continue
        if task.round > earlier.round:
            repos.outbox.supersede(case.case_no, task.task_id, task.round, now)
            repos.dead_letters.supersede(case.case_no, task.task_id, task.round, now)
        if task.sector_told is False and earlier.sector_told is not False and earlier.sector is not None:
            repos.outbox.add(case.case_no, earlier.sector, Operation.CANCEL_CASE, task.task_id, now, priority,
                             task.round)
    _enqueue_certificate_fetches(repos, case, before, now)
    _enqueue(repos, case, list(to_deliver), now)


def _enqueue_certificate_fetches(repos: Repositories, case: Case, before: Mapping[str, Task], now: datetime) -> None:
    """A task its sector has just approved saying it issued a certificate: the certificate is fetched from that
    sector (`fetch_certificate`, delivered like any message), to be prefilled for unified issuing."""
    for task in case.tasks:
        earlier = before.get(task.task_id)
        if lifecycle.certificate_to_fetch(task) and (earlier is None or not earlier.state.concluded):
            assert task.sector is not None
            repos.outbox.add(case.case_no, task.sector, Operation.FETCH_CERTIFICATE, task.task_id, now,
                             _priority(case), task.round)


def _enqueue(repos: Repositories, case: Case, tasks: list[Task], now: datetime) -> None:
    for task in tasks:
        assert task.sector is not None
        repos.outbox.add(case.case_no, task.sector, Operation.SUBMIT_CASE, task.task_id, now, _priority(case),
                         task.round)


def _priority(case: Case) -> int:
    return 1 if case.green_channel else 0  # green channel first, without broker priorities


def _id_numbers(applicant: Applicant, agent: Agent | None) -> list[tuple[str, str, str]]:
    """(who, ID type, number) of everyone an application names."""
    numbers = [("申请人", applicant.id_type, applicant.id_number)]
    if agent is not None:
        numbers.append(("代办员", RESIDENT_ID_CARD, agent.id_number))
    return numbers


def _quiet(step: Callable[[Case, Matter, datetime], None]) -> Change:
    """A change that delivers nothing new to sectors."""
    def change(case: Case, matter: Matter, now: datetime) -> list[Task]:
        step(case, matter, now)
        return []

    return change


def _once_more_on_clash(record: Callable[[], bool]) -> bool:
    """Two answers bound one reference to two tasks at once: the unique index refused the second, which
    rolled back whole; once more, the check sees the first one's reference."""
    try:
        return record()
    except IntegrityError:
        return record()


def _dead_letter(uow: UnitOfWork, message: OutboxMessage, now: datetime, why: str, answer: dict[str, Any],
                 failure: FailureClass = FailureClass.VALIDATION) -> None:
    """A sector's answer that cannot be recorded on its case: the message dies with it, the case stays."""
    uow.outbox.mark_dead(message.id, now)
    uow.dead_letters.add(message, Failure(str(failure), why, attempts=1, last_response=answer), now)


NO_MISSING_LIST = "业务系统要求补正但未列明需补正的材料，转部门后台办理"


def refusal_way(task: Task, refusal: SectorRefusal) -> tuple[WayForward, str, dict[str, Any]]:
    """The way forward of a sector's final refusal, the reason on the timeline (the sector's own message) and
    what the event adds: the sector's code and message, and why a supplement became a hand-over."""
    way = WayForward(refusal.way)
    note: dict[str, Any] = {"sector_code": refusal.code, "sector_message": refusal.sector_message}
    if way is WayForward.SUPPLEMENT and not refusal.missing:  # nothing to list at the window: a clerk decides
        way, note["fallback"] = WayForward.BACK_OFFICE, NO_MISSING_LIST
    reason = refusal.sector_message.strip() or f"{task.department}业务系统不予办理（{refusal.code}）"
    return way, reason, note


def _sector(message: OutboxMessage) -> Actor:
    return Actor(ActorKind.DEPARTMENT, f"sector:{message.sector}")


def _own_task(case: Case, task_id: str, department: str | None) -> None:
    task = case.task(task_id)
    if department is not None and task.credit_code != department:
        raise NotYourCase(f"任务 {task_id} 属于{task.department}")
    if task.sector is not None:
        raise CaseRuleViolation(f"任务 {task_id} 由{task.department}的业务系统办理，不经后台接口")


def _own_case(case: Case, department: str | None) -> None:
    if department is not None and all(t.credit_code != department for t in case.tasks):
        raise NotYourCase(f"办件 {case.case_no} 不涉及本部门")

