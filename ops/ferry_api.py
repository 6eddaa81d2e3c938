"""`/v1/ops/ferry`: the operators' view of each ferry link (`gateway.sectors.ferry_channels`) over HTTP — what
`yiwang ferry status|gaps|quarantine|resend` shows and does at the command line.

- `GET /v1/ops/ferry/channels`: every link both ways — the last batch and its age, unacknowledged batches, lag,
  open gaps, the age of the peer's last beacon (or receipt), quarantined batches by refusal code.
- `GET /v1/ops/ferry/channels/{channel}/gaps` and `…/quarantine`: the detail of one link.
- `POST /v1/ops/ferry/channels/{channel}/resend` `{"from": n, "to": m, "reason": "…"}`: the kept batches
  `n..m` of the channel the gateway sends on written to the link again (the far side drops what it already
  applied: duplicates are suppressed per batch and per message). A range that names nothing sent is a 422
  `invalid-resend-range`, a link no active ferry bundle names a 404 `ferry-channel-not-found`, a blank reason a
  422 `reason-required`: nothing is written then.

Who, as for dead letters (ops/api.py), decided in ops/ferry_desk.py (which the console's ferry page calls too):
operators read and resend every link; a sector administrator reads and resends their own sector's link only (the
one its active ferry bundle names; the sector's IT team runs the agent on the far side) — another sector's link
is 404 to them, as if it did not exist. A resend is audited twice, as every operator action is: the `AuditTrail`
middleware records the POST, and the action its reason, range and how many batches were written. Nothing here
holds personal data (sequence numbers, times, counts, file names, codes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.audit.ledger import Ledger
from gateway.domain.clock import Clock
from gateway.domain.roles import Identity, Role
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import install_problems, problem_doc
from gateway.http.schemas import BeijingTime
from gateway.http.text_fields import typed
from gateway.persistence.keyset import Keyset
from gateway.sectors import ferry_channels as ferry
from gateway.sectors.ferry_channels import MAX_RESEND, FerryChannels
from ops import ferry_desk as desk
from ops.ferry_desk import link_seen, links_seen

router = APIRouter(prefix="/v1/ops/ferry", tags=["operators"], route_class=JsonBodyRoute)
Reader = Annotated[Identity, Depends(require(Role.OPERATOR, Role.SECTOR_ADMIN))]  # and resender
LinkName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the link: its bundle's ferry.channel")]
MAX_LIST = 1000  # quarantined files listed at most (the newest); the folder keeps them all
# The lists' orders (keyset paging, gateway.http.paging): links by name, gaps oldest first, quarantine newest first.
LINKS = Keyset("ferry links", (str,))
GAPS = Keyset("ferry gaps", (str, int))
QUARANTINE = Keyset("ferry quarantine", (datetime, str), descending=True)
SEQ_MAX = 2**62  # far beyond any channel; keeps the numbers inside every database's integers


# --- what goes out -----------------------------------------------------------------------------------------


class ChannelWayOut(BaseModel):
    channel: str = Field(description="e.g. public_security.down")
    direction: str = Field(description="down (gateway → far side) | up (far side → gateway)")
    sending: bool = Field(description="the gateway sends on it")
    last_seq: int = Field(description="sending: the last batch sealed; receiving: the highest applied with none "
                                      "missing below it")
    last_batch_at: BeijingTime | None
    last_batch_age_s: float | None
    lag: int = Field(description="batches the other side has not yet (sending) or this side has not yet (receiving)")
    unacknowledged: int = Field(description="sending, two-way: batches not receipted yet")
    oldest_unacknowledged_age_s: float | None
    highest_seen: int
    open_gaps: int = Field(description="receiving: ranges named missing, not filled yet")
    oldest_gap_age_s: float | None
    last_signal_at: BeijingTime | None = Field(description="receiving: the peer's last beacon or receipt")
    last_signal_age_s: float | None
    duplicates: int = Field(description="receiving: batches met again after they were applied (a resend, a link's "
                                        "copy or a replay): refused, not applied again")
    replayed_signals: int = Field(description="receiving: old receipts or beacons sent again: ignored")


class ChannelOut(BaseModel):
    channel: str = Field(description="the link (its bundle's ferry.channel)")
    sector: str
    mode: str = Field(description="two_way | one_way")
    down: ChannelWayOut
    up: ChannelWayOut
    quarantined: int = Field(description="files refused and quarantined on this link")
    quarantined_by_code: dict[str, int]
    resend_after_s: float | None = Field(description="two_way: unreceipted batches are written again after this")
    beacon_every_s: float | None = Field(description="one_way: the peer's beacons are due this often")


class GapOut(BaseModel):
    channel: str
    seq_from: int
    seq_to: int
    named_at: BeijingTime
    age_s: float


class QuarantinedOut(BaseModel):
    channel: str
    file: str
    code: str
    reason: str
    at: BeijingTime


class ResendOut(BaseModel):
    channel: str
    seq_from: int = Field(serialization_alias="from")
    seq_to: int = Field(serialization_alias="to")
    resent: int = Field(description="batches written to the link again")


# --- what comes in -----------------------------------------------------------------------------------------


class ResendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    seq_from: int = Field(alias="from", ge=1, le=SEQ_MAX, description="the first batch to write again")
    seq_to: int = Field(alias="to", ge=1, le=SEQ_MAX, description=f"the last (at most {MAX_RESEND} at once)")
    reason: Annotated[str, typed("原因", multiline=True, blank="")] = Field(
        max_length=500, description="why: required, not blank; kept in the audit log")


# --- helpers -----------------------------------------------------------------------------------------------


def _channels(request: Request) -> FerryChannels:
    return cast(FerryChannels, request.app.state.ferry_channels)  # set by gateway.bootstrap.app


def _clock(request: Request) -> Clock:
    return cast(Clock, request.app.state.clock)  # set by gateway.bootstrap.app


# --- routes ------------------------------------------------------------------------------------------------


@router.get("/channels", response_model=Page[ChannelOut], responses=problem_doc(401, 403, 422), summary="摆渡通道状态")
def list_channels(request: Request, identity: Reader, paging: Paged) -> dict[str, Any]:
    """每条摆渡链路的两个方向：最后一批及其时长、未确认批次、滞后、未补齐的缺口、对端最后一次信标（或回执）的时长、
    被隔离的批次。按链路名排序分页；部门系统管理员只看到本部门的。只读。"""
    now = _clock(request).now()
    links = links_seen(_channels(request), identity)
    page = LINKS.seek(links, lambda report: (report.link,), paging.after(LINKS), paging.limit)
    return answer(LINKS, page, lambda report: ferry.link_view(report, now), len(links))


@router.get("/channels/{channel}/gaps", response_model=Page[GapOut], responses=problem_doc(401, 403, 404, 422),
            summary="摆渡通道的缺口")
def list_gaps(channel: LinkName, request: Request, identity: Reader, paging: Paged) -> dict[str, Any]:
    """一条链路上被点名缺失、尚未补齐的批次范围，最早的在前，分页。只读。"""
    link_seen(_channels(request), identity, channel)
    now = _clock(request).now()
    gaps = _channels(request).gaps(channel)
    page = GAPS.seek(gaps, lambda gap: (gap.channel, gap.seq_from), paging.after(GAPS), paging.limit)
    return answer(GAPS, page, lambda gap: ferry.gap_view(gap, now), len(gaps))


@router.get("/channels/{channel}/quarantine", response_model=Page[QuarantinedOut],
            responses=problem_doc(401, 403, 404, 422), summary="摆渡通道的隔离批次")
def list_quarantine(channel: LinkName, request: Request, identity: Reader, paging: Paged) -> dict[str, Any]:
    """一条链路上未通过校验而被隔离的文件（签名、密钥、封装、链条……），原因和时间，新的在前，分页（最近的
    MAX_LIST 个）。只读。"""
    link_seen(_channels(request), identity, channel)
    held = _channels(request).quarantined(channel, MAX_LIST)
    page = QUARANTINE.seek(held, lambda batch: (batch.at, batch.file), paging.after(QUARANTINE), paging.limit)
    return answer(QUARANTINE, page, ferry.quarantined_view, len(held))


@router.post("/channels/{channel}/resend", response_model=ResendOut, response_model_by_alias=True,
             responses=problem_doc(401, 403, 404, 422), summary="重发摆渡批次")
def resend(channel: LinkName, body: ResendIn, request: Request, identity: Reader) -> ResendOut:
    """把网关在该链路上发出、仍保留的第 from 至 to 批重新写入链路（对端已应用的会作为重复丢弃）。需写明原因，记入审计。
    范围无效为 422（`invalid-resend-range`），没有该链路为 404，都不会写入任何文件。"""
    ledger = cast(Ledger, request.app.state.ledger)  # set by gateway.bootstrap.app
    done = desk.resend(_channels(request), ledger, identity, channel, body.seq_from, body.seq_to, body.reason)
    return ResendOut(channel=done.channel, seq_from=done.seq_from, seq_to=done.seq_to, resent=done.resent)


def install_ferry_error_handlers(app: FastAPI) -> None:
    install_problems(app, [
        (ferry.UnknownLink, 404, "ferry-channel-not-found", "没有该摆渡链路"),
        (ferry.BadRange, 422, "invalid-resend-range", "重发范围无效"),
    ])
