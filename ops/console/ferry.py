"""The console's ferry page, `/console/ferry`: every ferry link both ways (last batch and its age, lag,
unacknowledged batches, open gaps, the far side's last beacon, quarantined batches by code), one link's gaps and
quarantined files, and the resend form — what `/v1/ops/ferry` (ops/ferry_api.py) shows and does, through the same
calls (`FerryChannels` on app.state; the identity's links and the audited resend of ops/ferry_desk.py).

Who: the roles of `GET /v1/ops/ferry/channels` (web.PAGES "ferry"): operators every link, a sector administrator
their own sector's — another sector's link is "not found" to them, as in the API. A resend takes the session's
CSRF token and a reason; it answers with a redirect to the link's page, which says how many batches were written.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from gateway.domain.roles import Identity
from gateway.sectors import ferry_channels as ferry
from gateway.sectors.ferry_channels import MAX_RESEND, FerryChannels
from ops import ferry_desk as desk
from ops.console.web import PREFIX, Csrf, entered, ledger_of, render, time_now

__all__ = ["router"]

router = APIRouter(prefix=PREFIX + "/ferry", include_in_schema=False)
Reader = Annotated[Identity, Depends(entered("ferry"))]
LinkName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
SEQ_MAX = 2**62  # as the API's: inside every database's integers
SHOWN = 100  # gaps and quarantined files listed at most on the page (the API pages through all of them)


def _channels(request: Request) -> FerryChannels:
    return cast(FerryChannels, request.app.state.ferry_channels)  # set by gateway.bootstrap.app


@router.get("", response_class=HTMLResponse)
def channels(request: Request, me: Reader) -> HTMLResponse:
    now = time_now(request)
    links = [ferry.link_view(report, now) for report in desk.links_seen(_channels(request), me)]
    return render(request, "ferry.html", current="ferry", links=links)


@router.get("/{channel}", response_class=HTMLResponse)
def channel(channel: LinkName, request: Request, me: Reader,
            resent: Annotated[int | None, Query(ge=0, le=MAX_RESEND)] = None) -> HTMLResponse:
    report = desk.link_seen(_channels(request), me, channel)
    now = time_now(request)
    gaps = [ferry.gap_view(gap, now) for gap in _channels(request).gaps(channel)[:SHOWN]]
    held = [ferry.quarantined_view(batch) for batch in _channels(request).quarantined(channel, SHOWN)]
    return render(request, "ferry_channel.html", current="ferry", link=ferry.link_view(report, now), gaps=gaps,
                  quarantined=held, resent=resent, max_resend=MAX_RESEND)


@router.post("/{channel}/resend")
def resend(channel: LinkName, request: Request, me: Reader, _: Csrf, seq_from: Annotated[int, Form(alias="from",
           ge=1, le=SEQ_MAX)], seq_to: Annotated[int, Form(alias="to", ge=1, le=SEQ_MAX)],
           reason: Annotated[str, Form(max_length=500)]) -> RedirectResponse:
    done = desk.resend(_channels(request), ledger_of(request), me, channel, seq_from, seq_to, reason)
    return RedirectResponse(f"{PREFIX}/ferry/{channel}?resent={done.resent}", status_code=303)
