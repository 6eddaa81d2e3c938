"""Read models: what the hall sees of a case. Personal data is masked; times are Beijing time."""

from __future__ import annotations

from typing import Any

from gateway.domain.case import Case, CaseEvent
from gateway.domain.clock import to_shanghai

STATE_LABELS = {
    "submitted": "已提交",
    "accepted": "已受理",
    "supplement_required": "待补齐补正",
    "in_process": "办理中",
    "approved": "准予办理",
    "denied": "不予办理",
    "closed": "已办结",
}


def mask_id_number(number: str) -> str:
    """Keep the region prefix and the last four characters, as receipts print them."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:] if len(number) > 8 else "*" * len(number)


def mask_phone(phone: str | None) -> str | None:
    return None if not phone else phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:]


def case_view(case: Case) -> dict[str, Any]:
    state = str(case.state)
    return {
        "case_no": case.case_no,
        "matter_code": case.matter_code,
        "state": state,
        "state_label": STATE_LABELS[state],
        "applicant": {
            "name": case.applicant.name,
            "id_type": case.applicant.id_type,
            "id_number": mask_id_number(case.applicant.id_number),
            "phone": mask_phone(case.applicant.phone),
        },
        "materials": [m.name for m in case.materials],
        "receipt_no": case.receipt_no,
        "promised_by": case.promised_by.isoformat() if case.promised_by else None,
        "missing_materials": list(case.missing_materials),
        "sector_ref": case.sector_ref,
        "opinion": case.opinion,
        "version": case.version,
    }


def event_view(event: CaseEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": to_shanghai(event.at).isoformat(),
        "trigger": str(event.trigger),
        "from_state": str(event.from_state) if event.from_state else None,
        "to_state": str(event.to_state),
        "actor": str(event.actor),
        "reason": event.reason,
        "data": dict(event.data),
    }
