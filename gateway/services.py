"""The case service: what the hall and the sectors do to cases, each in one unit of work.

Services orchestrate: they load, ask the domain to change, and store — case, events and outbox
rows in one transaction. They know nothing of HTTP or of any sector's protocol.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from gateway.catalogue import Catalogue
from gateway.domain.calendar import WorkingCalendar
from gateway.domain.case import Actor, ActorKind, Applicant, Case, CaseEvent, SubmittedMaterial, Trigger
from gateway.domain.clock import Clock, shanghai_date
from gateway.domain.codes import is_valid_id_number
from gateway.domain.matter import Matter
from gateway.persistence.repository import OutboxMessage, StoredResponse
from gateway.persistence.uow import UnitOfWork
from gateway.views import case_view

RESIDENT_ID_CARD = "111"  # GA/T 2000.156
SUBMIT_CASE, QUERY_STATUS = "submit_case", "query_status"
COMPLETENESS_CHECK = Actor(ActorKind.WINDOW, "completeness-check")
GATEWAY = Actor(ActorKind.SYSTEM, "gateway")


class UnknownMatter(LookupError):
    pass


class InvalidApplication(ValueError):
    """The application breaks a rule the hall can fix (a bad ID number, a material the matter does not list)."""


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was already used with a different request."""


class CaseNotFound(LookupError):
    pass


@dataclass(frozen=True)
class SubmitCase:
    matter_code: str
    applicant: Applicant
    materials: tuple[SubmittedMaterial, ...]
    form: Mapping[str, Any] = field(default_factory=dict)
    channel: str = "online_pc"

    def fingerprint(self) -> str:
        """A hash of the request's meaning, so a retried POST is recognised whatever its whitespace."""
        body = {
            "matter_code": self.matter_code,
            "applicant": vars(self.applicant),
            "materials": [vars(m) for m in self.materials],
            "form": self.form,
            "channel": self.channel,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class SubmitOutcome:
    case: Mapping[str, Any]  # the case view as first answered
    replayed: bool  # True when an Idempotency-Key returned an earlier answer


@dataclass
class CaseService:
    engine: Engine
    catalogue: Catalogue
    calendar: WorkingCalendar
    clock: Clock

    # -- the hall ---------------------------------------------------------------------------------
    def submit(self, command: SubmitCase, idempotency_key: str | None = None) -> SubmitOutcome:
        matter = self._check(command)
        try:
            return self._submit_once(matter, command, idempotency_key)
        except IntegrityError:
            # Two requests with one key raced past the lookup (possible on PostgreSQL): the loser
            # rolled back; now the winner's answer is there to return.
            if idempotency_key is None:
                raise
            return self._submit_once(matter, command, idempotency_key)

    def get(self, case_no: str) -> Case:
        with UnitOfWork(self.engine, read_only=True) as uow:
            case = uow.cases.get(case_no)
        if case is None:
            raise CaseNotFound(case_no)
        return case

    def events(self, case_no: str) -> list[CaseEvent]:
        return self.get(case_no).events

    def _check(self, command: SubmitCase) -> Matter:
        matter = self.catalogue.get(command.matter_code)
        if matter is None:
            raise UnknownMatter(command.matter_code)
        if command.applicant.id_type == RESIDENT_ID_CARD and not is_valid_id_number(command.applicant.id_number):
            raise InvalidApplication("居民身份证号码校验不通过 (GB 11643 check digit)")
        unknown = [m.name for m in command.materials if not matter.knows_material(m.name)]
        if unknown:
            raise InvalidApplication(f"事项“{matter.name}”的材料清单中没有：{'、'.join(unknown)}")
        return matter

    def _submit_once(self, matter: Matter, command: SubmitCase, key: str | None) -> SubmitOutcome:
        fingerprint = command.fingerprint()
        with UnitOfWork(self.engine) as uow:
            if key is not None and (earlier := uow.idempotency.get(key)) is not None:
                if earlier.request_hash != fingerprint:
                    raise IdempotencyConflict(key)
                return SubmitOutcome(earlier.response, replayed=True)
            now = self.clock.now()
            case = self._new_case(uow, matter, command, now)
            accepted = self._intake(matter, case, now)
            uow.cases.add(case, now)
            if accepted:
                key_out = idempotency_key(case.case_no, SUBMIT_CASE)
                uow.outbox.add(case.case_no, case.sector, SUBMIT_CASE, key_out, now)
            view = case_view(case)
            if key is not None:
                uow.idempotency.add(key, StoredResponse(fingerprint, case.case_no, 201, view), now)
            uow.commit()
        return SubmitOutcome(view, replayed=False)

    def _new_case(self, uow: UnitOfWork, matter: Matter, command: SubmitCase, now: datetime) -> Case:
        day = shanghai_date(now).strftime("%Y%m%d")
        seq = uow.cases.next_sequence(matter.implementation_code + day)
        case = Case(
            case_no=f"{matter.implementation_code}{day}{seq:06d}",
            matter_code=matter.implementation_code,
            sector=matter.sector,
            applicant=command.applicant,
            materials=command.materials,
            form=command.form,
        )
        case.apply(Trigger.SUBMIT, Actor(ActorKind.APPLICANT, command.channel), now, "提交申请")
        return case

    def _intake(self, matter: Matter, case: Case, now: datetime) -> bool:
        """The window's duty: accept a complete application on the spot, or list everything missing once."""
        missing = [m.name for m in matter.missing_materials(m.name for m in case.materials)]
        if missing:
            case.missing_materials = tuple(missing)
            reason = "材料不齐全，请一次性补齐：" + "、".join(missing)
            case.apply(Trigger.REQUEST_SUPPLEMENT, COMPLETENESS_CHECK, now, reason, {"missing": missing})
            return False
        accepted_on = shanghai_date(now)
        case.promised_by = self.calendar.add_working_days(accepted_on, matter.promised_working_days)
        case.receipt_no = "SL" + case.case_no[19:]  # basic code + date + sequence: unique per matter and day
        data = {"receipt_no": case.receipt_no, "promised_by": case.promised_by.isoformat()}
        if self.calendar.beyond_coverage(accepted_on, case.promised_by):
            data["calendar_warning"] = "承诺日期超出节假日安排覆盖范围，仅按周末计算"
        case.apply(Trigger.ACCEPT, COMPLETENESS_CHECK, now, "材料齐全，予以受理", data)
        return True

    # -- the sector's answers, recorded by the dispatcher ------------------------------------------
    def record_submitted(self, message: OutboxMessage, owner: str, sector_ref: str, poll_after: timedelta) -> bool:
        """The sector took the case: start processing and schedule the first status poll."""
        with UnitOfWork(self.engine) as uow:
            case = self._leased_case(uow, message, owner)
            if case is None:
                return False
            now = self.clock.now()
            case.sector_ref = sector_ref
            case.apply(Trigger.START_PROCESSING, Actor(ActorKind.SECTOR, case.sector), now, "部门系统已接收",
                       {"sector_ref": sector_ref})
            uow.cases.save(case, now)
            uow.outbox.complete(message.id, now)
            uow.outbox.add(case.case_no, case.sector, QUERY_STATUS, idempotency_key(case.case_no, QUERY_STATUS),
                           now + poll_after)
            uow.commit()
        return True

    def record_status(self, message: OutboxMessage, owner: str, result: Mapping[str, Any],
                      poll_after: timedelta) -> bool:
        """A status answer: keep polling while undecided; on a decision, record it and close the case."""
        with UnitOfWork(self.engine) as uow:
            case = self._leased_case(uow, message, owner)
            if case is None:
                return False
            now = self.clock.now()
            decision = {"approved": Trigger.APPROVE, "denied": Trigger.DENY}.get(result.get("status", ""))
            if decision is None:
                uow.outbox.reschedule(message.id, now + poll_after)
            else:
                self._decide(case, decision, result, now)
                uow.cases.save(case, now)
                uow.outbox.complete(message.id, now)
            uow.commit()
        return True

    def record_dead_letter(self, message: OutboxMessage, owner: str, error_class: str, error_message: str,
                           attempts: int, rendered_request: Any) -> bool:
        """A failure that outlasted its retries: keep it for operators; the case stays where it was."""
        with UnitOfWork(self.engine) as uow:
            if not uow.outbox.holds_lease(message.id, owner):
                return False
            now = self.clock.now()
            uow.outbox.mark_dead(message.id, now)
            uow.dead_letters.add(message, error_class, error_message, attempts, rendered_request, now)
            uow.commit()
        return True

    def _leased_case(self, uow: UnitOfWork, message: OutboxMessage, owner: str) -> Case | None:
        if not uow.outbox.holds_lease(message.id, owner):
            return None  # another dispatcher took the message over; it records the outcome
        case = uow.cases.get(message.case_no)
        if case is None:
            raise CaseNotFound(message.case_no)
        return case

    def _decide(self, case: Case, decision: Trigger, result: Mapping[str, Any], now: datetime) -> None:
        sector = Actor(ActorKind.SECTOR, case.sector)
        opinion = result.get("opinion") or ""
        case.opinion = opinion
        case.apply(decision, sector, now, opinion or str(decision), {"decided_at": result.get("decided_at")})
        completion = "出证办结" if decision is Trigger.APPROVE else "办结"
        case.apply(Trigger.CLOSE, GATEWAY, now, "办件办结", {"completion": completion})


def idempotency_key(case_no: str, operation: str, task: str = "main") -> str:
    """Stable across retries and replays: case number + task + operation (invariant 2)."""
    return f"{case_no}:{task}:{operation}"
