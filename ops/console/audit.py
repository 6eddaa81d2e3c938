"""The console's audit pages, mirroring `GET /v1/audit` and `GET /v1/audit/verify` (gateway/http/routers/audit.py)
for the same role, the audit administrator (auditor); both only read.

- `GET /console/audit`: the audit log oldest first, `PAGE_SIZE` records a page (the next page after the last
  record's id, as the API's cursor), filtered by actor, action, time (Beijing time when no zone is given, as the
  API), sector and case number; each record's detail masked, as the API shows it;
- `GET /console/audit/verify`: `Ledger.verify()`, the call the API makes, and its result per chain: every chain
  with a problem, at which record; the others intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from gateway.audit.ledger import AUDIT, Filters, Ledger, LedgerRecord
from gateway.domain.clock import SHANGHAI, instants_as_beijing_text
from gateway.domain.roles import Identity
from gateway.observability.logs import mask_value
from gateway.persistence.tables import MAX_ROW_ID
from ops.console.web import PREFIX, entered, ledger_of, render

router = APIRouter(prefix=PREFIX + "/audit", include_in_schema=False)
Auditor = Annotated[Identity, Depends(entered("audit"))]
PAGE_SIZE = 50
Text = Annotated[str, Query(max_length=200)]


@dataclass(frozen=True)
class BadFilter(Exception):
    """A filter the log cannot be read by (a time that is no time): shown on the page, nothing read."""

    field: str
    value: str


def _instant(field: str, value: str) -> datetime | None:
    """A time as typed or as the browser's datetime-local sends it; without a zone: Beijing time, as the API."""
    if not value.strip():
        return None
    try:
        instant = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadFilter(field, value) from exc
    return instant.replace(tzinfo=SHANGHAI) if instant.tzinfo is None else instant


def _detail(ledger: Ledger, record: LedgerRecord) -> str | None:
    """A record's detail as the API shows it (masked, instants in Beijing time), as JSON text (escaped on the page)."""
    body = ledger.open_body(record)
    return None if body is None else json.dumps(instants_as_beijing_text(mask_value(body)), ensure_ascii=False)


@router.get("", response_class=HTMLResponse)
def audit(request: Request, who: Auditor, actor: Text = "", action: Text = "", since: Text = "", until: Text = "",
          sector: Text = "", case_no: Text = "",
          after: Annotated[int | None, Query(ge=0, le=MAX_ROW_ID)] = None) -> HTMLResponse:
    shown = {"actor": actor, "action": action, "since": since, "until": until, "sector": sector, "case_no": case_no}
    try:
        filters = Filters(AUDIT, actor=actor or None, action=action or None, since=_instant("since", since),
                          until=_instant("until", until), sector=sector or None, case_no=case_no or None,
                          after_id=after)
    except BadFilter as bad:
        return render(request, "audit.html", status_code=422, current="audit", filters=shown, records=[], next=None,
                      problem=f"“{bad.value}”不是时间（例如 2026-12-08 10:00）", first=None)
    ledger = ledger_of(request)
    records = ledger.records(filters, PAGE_SIZE + 1)
    rows: list[dict[str, Any]] = [{**r.public(), "detail": _detail(ledger, r)} for r in records[:PAGE_SIZE]]
    kept = {k: v for k, v in shown.items() if v}
    following = urlencode({**kept, "after": rows[-1]["id"]}) if len(records) > PAGE_SIZE else None
    first = urlencode(kept) if after is not None else None
    return render(request, "audit.html", current="audit", filters=shown, records=rows, next=following, first=first,
                  problem=None)


@router.get("/verify", response_class=HTMLResponse)
def verify(request: Request, who: Auditor) -> HTMLResponse:
    report = ledger_of(request).verify()
    broken: dict[str, list[Any]] = {}
    for problem in report.problems:
        broken.setdefault(problem.chain, []).append(problem)
    return render(request, "audit_verify.html", current="audit", report=report, broken=sorted(broken.items()))
