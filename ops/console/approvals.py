"""The console's four-eyes page, mirroring `/v1/approvals` (gateway/http/routers/approvals.py) for the same roles:

- `GET /console/approvals`: the requests this identity may decide (`may_decide`: a sector administrator their
  sector's, as the API lists them), pending by default or of another status, `PAGE_SIZE` a page;
- `POST …/{id}/approve`: `Approvals.approve`, running `run_approved` (the guarded action, recorded as done by both
  identities) — the API's call; the requester approving their own request is refused by the service
  (`OwnRequest`, shown as its problem page);
- `POST …/{id}/reject`: `Approvals.reject` with the reason (the requester may withdraw their own this way).
"""

from __future__ import annotations

from typing import Annotated, Literal, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from gateway.domain.roles import Identity
from gateway.http.approval_holds import run_approved
from gateway.http.text_fields import typed
from gateway.security.approvals import STATUSES, Approvals, may_decide
from ops.console.web import PREFIX, Csrf, entered, render

router = APIRouter(prefix=PREFIX + "/approvals", include_in_schema=False)
Decider = Annotated[Identity, Depends(entered("approvals"))]
PAGE_SIZE = 50
DONE = {"approved": "已批准，操作已执行。", "rejected": "已驳回。"}
Status = Literal["pending", "approved", "rejected", "failed", "all"]


def _approvals(request: Request) -> Approvals:
    return cast(Approvals, request.app.state.approvals)


@router.get("", response_class=HTMLResponse)
def approvals(request: Request, who: Decider, status: Annotated[Status, Query()] = "pending",
              page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> HTMLResponse:
    listed = _approvals(request).list(None if status == "all" else status)
    mine = [a for a in listed if may_decide(who, a.action, a.sector)]
    shown = mine[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    following = urlencode({"status": status, "page": page + 1}) if len(mine) > page * PAGE_SIZE else None
    previous = urlencode({"status": status, "page": page - 1}) if page > 1 else None
    return render(request, "approvals.html", current="approvals", approvals=[a.public() for a in shown],
                  status=status, statuses=(*STATUSES, "all"), total=len(mine), next=following, previous=previous,
                  done=DONE.get(request.query_params.get("done", "")))


def _done(what: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/approvals?{urlencode({'status': what, 'done': what})}", status_code=303)


@router.post("/{approval_id}/approve")
def approve(approval_id: str, request: Request, who: Decider, _: Csrf) -> RedirectResponse:
    _approvals(request).approve(approval_id, who, lambda a: run_approved(request, a))
    return _done("approved")


@router.post("/{approval_id}/reject")
def reject(approval_id: str, request: Request, who: Decider, _: Csrf,
           reason: Annotated[str, typed("驳回理由", multiline=True, blank=""), Form(max_length=500)] = ""
           ) -> RedirectResponse:
    _approvals(request).reject(approval_id, who, reason)
    return _done("rejected")
