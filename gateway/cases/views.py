"""Read models: what callers see of a case, and the documents a window hands out.

Personal data is masked; times are Beijing time. Texts a person reads are Chinese; keys are English.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from gateway.domain.case import Case, CaseEvent, Certificate, Trigger
from gateway.domain.clock import beijing_text
from gateway.domain.matter import Matter
from gateway.domain.results import CertificateDraft, SectorResult
from gateway.observability.logs import mask_text, mask_value

STATE_LABELS = {
    "submitted": "已提交",
    "accepted": "已受理",
    "supplement_required": "待补齐补正",
    "not_accepted": "不予受理",
    "in_process": "办理中",
    "suspended": "特别程序中",
    "approved": "准予办理",
    "denied": "不予办理",
    "returned": "已退件",
    "certificate_issued": "已出证",
    "delivered": "已送达",
    "closed": "已办结",
    "withdrawn": "已撤回",
    "voided": "已作废",
}


class DocumentNotAvailable(LookupError):
    """The case never reached the point where this document is issued."""


def mask_id_number(number: str) -> str:
    """Keep the region prefix and the last four characters, as receipts print them."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:] if len(number) > 8 else "*" * len(number)


def _masked(text: str | None) -> str | None:
    return None if text is None else mask_text(text)


def mask_phone(phone: str | None) -> str | None:
    return None if not phone else phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:]


def personal_data_view(case: Case) -> dict[str, Any]:
    """Unmasked: only for the roles that must use the numbers, and only after the read is audited."""
    agent = case.agent
    return {"case_no": case.case_no, "applicant": asdict(case.applicant),
            "agent": None if agent is None else {"name": agent.name, "id_number": agent.id_number,
                                                 "agency_point": agent.agency_point}}


def case_view(case: Case) -> dict[str, Any]:
    state = str(case.state)
    deadline = case.deadline
    return {
        "case_no": case.case_no,
        "matter_code": case.matter_code,
        "matter_version": case.matter_version,
        "state": state,
        "state_label": STATE_LABELS[state],
        "channel": case.channel,
        "region_code": case.region_code,
        "applicant": {
            "name": case.applicant.name,
            "id_type": case.applicant.id_type,
            "id_number": mask_id_number(case.applicant.id_number),
            "phone": mask_phone(case.applicant.phone),
        },
        "agent": None if case.agent is None else {
            "name": case.agent.name, "id_number": mask_id_number(case.agent.id_number),
            "agency_point": case.agent.agency_point},
        "green_channel": list(case.green_channel),
        "materials": [m.described() for m in case.materials],
        "receipt_no": case.receipt_no,
        "deadline": None if deadline is None else {
            "kind": str(deadline.kind), "due": deadline.due.isoformat(), "unit": str(deadline.unit),
            "paused_since": deadline.paused_on.isoformat() if deadline.paused_on else None,
            "warned": deadline.warned, "overdue": deadline.overdue},
        "promised_by": _promised_by(case),
        "missing_materials": list(case.missing_materials),
        "supplement_rounds": case.supplement_rounds,
        "tasks": [
            {"task_id": t.task_id, "department": t.department, "credit_code": t.credit_code, "lead": t.lead,
             "via": "sector_system" if t.sector else "back_office", "state": str(t.state),
             "sector_ref": t.sector_ref, "opinion": _masked(t.opinion), "round": t.round,
             "sector_told": t.sector_told, "result": _sector_result(t.result)}
            for t in case.tasks
        ],
        "opinion": _masked(case.opinion),
        "certificate": _certificate(case.certificate),
        "certificate_draft": _certificate_draft(case.certificate_draft),
        "delivery": None if case.delivery is None else vars(case.delivery).copy(),
        "evaluation": None if case.evaluation is None else vars(case.evaluation).copy(),
        "completion": str(case.completion) if case.completion else None,
        "version": case.version,
    }


def _certificate(certificate: Certificate | None) -> dict[str, Any] | None:
    if certificate is None:
        return None
    return {"name": certificate.name, "number": certificate.number, "issuer": certificate.issuer,
            "valid_until": certificate.valid_until.isoformat() if certificate.valid_until else None}


def _certificate_draft(draft: CertificateDraft | None) -> dict[str, Any] | None:
    """待出证: the certificate as the sector issued it, and where it came from (the holder's name is not shown:
    the case's applicant is)."""
    if draft is None:
        return None
    return {**(_certificate(draft.certificate) or {}), "label": "待出证", "sector": draft.sector,
            "task_id": draft.task_id, "fetched_at": beijing_text(draft.fetched_at), "file_ref": draft.file_ref}


def _sector_result(result: SectorResult | None) -> dict[str, Any] | None:
    """What the sector's decision said besides: its time (Beijing time, as every time we show), certificate,
    document."""
    if result is None:
        return None
    return {**result.as_data(), "decided_at": beijing_text(result.decided_at) if result.decided_at else None}


def _promised_by(case: Case) -> str | None:
    deadline = case.deadline
    return deadline.due.isoformat() if deadline and deadline.kind == "completion" else None


def event_view(event: CaseEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": beijing_text(event.at),
        # The sector's own time of what the event records (its decision), beside ours: when we learnt it.
        "sector_at": _sector_at(event),
        "trigger": str(event.trigger),
        "from_state": str(event.from_state) if event.from_state else None,
        "to_state": str(event.to_state),
        "actor": str(event.actor),
        "reason": mask_text(event.reason),  # free text a clerk typed may hold a number
        "data": mask_value(_shown_data(event)),
    }


def _sector_at(event: CaseEvent) -> str | None:
    sector_at = event.data.get("sector_at")
    return beijing_text(datetime.fromisoformat(sector_at)) if isinstance(sector_at, str) else None


def _shown_data(event: CaseEvent) -> dict[str, Any]:
    """The event's data as the caller reads it: an instant in Beijing time, like every instant we send."""
    data = dict(event.data)
    if "sector_at" in data:
        data["sector_at"] = _sector_at(event)
    return data


def document(case: Case, matter: Matter, kind: str) -> dict[str, Any]:
    """One of the documents of `_DOCUMENTS`, as structured JSON the hall can print."""
    if kind not in _DOCUMENTS:
        raise DocumentNotAvailable(f"没有这种文书；文书种类：{'、'.join(_DOCUMENTS)}")
    body = _DOCUMENTS[kind](case, matter)
    return {"kind": kind, "case_no": case.case_no, "matter": matter.name, "matter_code": matter.implementation_code,
            "applicant": case_view(case)["applicant"], **body}


def _last(case: Case, *triggers: Trigger) -> CaseEvent:
    for event in reversed(case.events):
        if event.trigger in triggers:
            return event
    raise DocumentNotAvailable(f"办件 {case.case_no} 未产生该文书")


def _acceptance_receipt(case: Case, matter: Matter) -> dict[str, Any]:
    event = _last(case, Trigger.ACCEPT, Trigger.DEEM_ACCEPTED)
    return {"title": "受理凭证", "receipt_no": case.receipt_no, "accepted_at": beijing_text(event.at),
            "accepted_by": str(event.actor), "deemed": event.trigger is Trigger.DEEM_ACCEPTED,
            "materials_received": [m.name for m in case.materials], "promised_by": event.data.get("promised_by"),
            "promised_limit": f"{matter.promised_limit.value} {matter.promised_limit.unit}",
            "enquiry_phone": matter.enquiry_phone, "complaint_phone": matter.complaint_phone}


def _supplement_notice(case: Case, matter: Matter) -> dict[str, Any]:
    event = _last(case, Trigger.REQUEST_SUPPLEMENT)
    return {"title": "补齐补正告知书", "notified_at": beijing_text(event.at),
            "round": event.data.get("round"), "missing_materials": event.data.get("missing", []),
            "reason": event.reason, "note": "请一次性补齐上述材料后重新提交；补正期间受理时限暂停计算。"}


def _not_accepted_notice(case: Case, matter: Matter) -> dict[str, Any]:
    event = _last(case, Trigger.NOT_ACCEPT)
    return {"title": "不予受理通知书", "decided_at": beijing_text(event.at), "reason": event.reason,
            "decided_by": str(event.actor)}


def _delivery_receipt(case: Case, matter: Matter) -> dict[str, Any]:
    event = _last(case, Trigger.DELIVER)
    certificate = case_view(case)["certificate"]
    return {"title": "送达回证", "delivered_at": beijing_text(event.at), "certificate": certificate,
            "method": event.data.get("method"), "tracking_no": event.data.get("tracking_no"),
            "received_by": event.data.get("received_by")}


_DOCUMENTS = {
    "acceptance_receipt": _acceptance_receipt,
    "supplement_notice": _supplement_notice,
    "not_accepted_notice": _not_accepted_notice,
    "delivery_receipt": _delivery_receipt,
}
