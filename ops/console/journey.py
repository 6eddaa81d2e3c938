"""The console's case journeys, mirroring `GET /v1/ops/cases/{case_no}/journey` and `GET /v1/ops/journeys`
(ops/api.py) for the same roles (operators; a sector administrator for their own sector), on the same service,
`ops.journey.CaseJourney`:

- `GET /console/cases`: one field, a case number or a correlation id (`CaseJourney.find`, as `yiwang ops
  journey`), and a 303 to the case's journey — or this page again with a 404 message. With `state=` or
  `overdue=true` (where the overview's case figures lead), the matching cases, newest first, paged by a cursor
  (`CaseJourney.cases`, the journey's scope: a sector administrator only cases with a message to their sector);
- `GET /console/cases/{case_no}`: the case's summary and every entry of its journey oldest first, masked;
  `?unmasked=1` only for who may unmask (`CaseJourney.read` refuses the others, as the API), and then the
  service writes the audit record before anything is rendered.
Read only: nothing here changes anything.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.cases.views import STATE_LABELS
from gateway.domain.case import CaseState
from gateway.domain.clock import instants_as_beijing_text
from gateway.domain.roles import Identity, may_unmask
from gateway.persistence.keyset import MAX_CURSOR
from ops.console.web import PREFIX, entered, render, time_now
from ops.journey import CASE_LINES, CaseJourney, CaseNotFound, Entry
from ops.letter_actions import scope_of

router = APIRouter(prefix=PREFIX + "/cases", include_in_schema=False)
Reader = Annotated[Identity, Depends(entered("journey"))]
PAGE_SIZE = 50
MAX_WANTED = 64  # characters of a case number (50) or a correlation id (64), as the CLI
KIND_NAMES = {"event": "办件事件", "message": "待发消息", "delivery": "与部门的收发", "attempt": "调用",
              "callback": "部门回调", "dead_letter": "死信", "notification": "通知大厅"}
LINK_NAMES = {"dead_letter_id": "死信", "message_record_id": "报文记录", "outbox_id": "待发消息",
              "webhook_delivery_id": "推送", "event_seq": "事件序号"}


OutboxKind = Literal["pending", "queued", "leased", "due"]  # the overview's outbox figures (ops/overview.py)
OUTBOX_LABELS = {"pending": "有待发消息", "queued": "有已交给消息队列的消息", "leased": "有正在投递的消息",
                 "due": "有已到期待发的消息"}


def _journeys(request: Request) -> CaseJourney:
    return cast(CaseJourney, request.app.state.case_journeys)  # set by gateway.bootstrap.app


@router.get("", response_class=HTMLResponse)
def cases(request: Request, who: Reader, wanted: Annotated[str, Query(max_length=200)] = "",
          state: CaseState | None = None, overdue: bool = False, outbox: OutboxKind | None = None,
          cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None) -> Response:
    journeys = _journeys(request)
    page: dict[str, Any] = {"current": "journey", "wanted": wanted, "problem": None, "lines": None, "next": None,
                            "first": None, "state": None if state is None else str(state), "overdue": overdue,
                            "outbox": outbox, "outbox_labels": OUTBOX_LABELS, "labels": STATE_LABELS}
    if wanted.strip():
        looked_up = wanted.strip()
        if len(looked_up) > MAX_WANTED:
            page["problem"] = f"办件编号或关联编号至多 {MAX_WANTED} 个字符"
            return render(request, "cases.html", status_code=422, **page)
        try:
            case_no = journeys.find(looked_up, scope=scope_of(who))
        except CaseNotFound:
            page["problem"] = f"没有办件编号或关联编号为“{looked_up}”的办件"
            return render(request, "cases.html", status_code=404, **page)
        return RedirectResponse(f"{PREFIX}/cases/{quote(case_no, safe='')}", status_code=303)
    if state is not None or overdue or outbox is not None:
        now = time_now(request)
        found = journeys.cases(state=None if state is None else str(state), overdue=overdue, scope=scope_of(who),
                               outbox=None if outbox is None else (outbox, now),
                               after=CASE_LINES.decode(cursor), limit=PAGE_SIZE)
        kept = {**({"state": str(state)} if state else {}), **({"overdue": "true"} if overdue else {}),
                **({"outbox": outbox} if outbox else {})}
        page.update(lines=found.items, first=urlencode(kept) if cursor else None,
                    next=urlencode({**kept, "cursor": CASE_LINES.encode(found.next_key)}) if found.next_key else None)
    return render(request, "cases.html", **page)


@router.get("/{case_no}", response_class=HTMLResponse)
def journey(request: Request, who: Reader, case_no: Annotated[str, Path(min_length=1, max_length=50)],
            unmasked: bool = False) -> HTMLResponse:
    told = _journeys(request).read(who, case_no, unmasked=unmasked)  # refused, or audited, before it is shown
    entries = [_shown(entry) for entry in told.entries]
    return render(request, "journey.html", current="journey", journey=told, entries=entries,
                  may_unmask=may_unmask(who, who.sector or ""), kinds=KIND_NAMES)


def _shown(entry: Entry) -> dict[str, Any]:
    """An entry as the page shows it: its detail as (name, text) pairs — nested values as indented JSON, instants
    in Beijing time — and its links as (name, id, console address or None)."""
    detail = [(name, _text(value)) for name, value in instants_as_beijing_text(entry.detail).items()
              if value is not None and value != ""]
    links = [(LINK_NAMES.get(name, name), value,
              f"{PREFIX}/dead-letters/{value}" if name == "dead_letter_id" else None)
             for name, value in entry.links.items()]
    return {"at": entry.at, "kind": entry.kind, "title": entry.title, "sector": entry.sector, "detail": detail,
            "links": links}


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, indent=2)
    return str(value)
