"""The audit log and the message log over HTTP, and the middleware that audits every change made through /v1.

- `GET /v1/audit`, `GET /v1/audit/verify`: the audit administrator (auditor) reads; the role changes nothing.
- `GET /v1/messages[/{id}]`: operators see every sector's exchanges, a sector administrator only their own.
  Bodies are masked (ID and phone numbers); `?unmasked=true` (operators only) shows them plain, and that
  reading is itself written to the audit log before the body is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, cast

import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.audit.ledger import AUDIT, MESSAGE, Direction, Filters, Ledger, LedgerRecord
from gateway.domain.clock import SHANGHAI, instants_as_beijing_text
from gateway.domain.roles import UNMASKED_ONLY, Identity, NotAllowed, Role, acts_for_sector, may_unmask
from gateway.http.callers import caller, require
from gateway.http.paging import Page, PageQuery, answer, page_query
from gateway.http.problems import install_problems, problem_doc
from gateway.observability.logs import mask_value as mask
from gateway.persistence.keyset import Keyset
from gateway.persistence.tables import MAX_ROW_ID

log = structlog.get_logger("yiwang.audit")
router = APIRouter(prefix="/v1", tags=["audit"])
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDITED_PREFIX = ("/v1/", "/console/")  # the API, and the console's forms (ops/console)
# Record ids are 32-bit integers in PostgreSQL: a bigger one names nothing, and must not reach SQL (a 500).
RecordId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
# Both logs run oldest first by record id; no total (counting a log is a scan).
AUDIT_ORDER, MESSAGE_ORDER = Keyset("audit", (int,)), Keyset("messages", (int,))
LogPage = Annotated[PageQuery, Depends(page_query(default=100, maximum=1000))]


class RecordNotFound(LookupError):
    """No message record by that id."""


def _ledger(request: Request) -> Ledger:
    return cast(Ledger, request.app.state.ledger)  # set by gateway.bootstrap.app


def _instant(value: datetime | None) -> datetime | None:
    """Times without a zone are Beijing time, as people read and write them."""
    return value.replace(tzinfo=SHANGHAI) if value is not None and value.tzinfo is None else value


def _page(ledger: Ledger, order: Keyset, filters: Filters, paging: PageQuery,
          view: Callable[[LedgerRecord], dict[str, Any]]) -> dict[str, Any]:
    """One page of a log after the cursor's record id."""
    records = ledger.records(replace(filters, after_id=paging.after_id(order)), paging.limit + 1)
    return answer(order, order.cut(records, paging.limit, lambda r: (r.id,)), view)


@router.get("/audit", response_model=Page[dict[str, Any]], responses=problem_doc(401, 403, 422),
            summary="查阅审计日志")
def list_audit(request: Request, identity: Annotated[Identity, Depends(require(Role.AUDITOR))], paging: LogPage,
               actor: str | None = None, action: str | None = None,
               since: datetime | None = None, until: datetime | None = None, sector: str | None = None,
               case_no: str | None = None) -> dict[str, Any]:
    """审计日志，按时间先后，可按操作人、动作、时间段、部门、办件编号筛选，分页（`cursor` 接着上一页的 `next_cursor`）。
    无时区的时间按北京时间理解。详情中的个人信息已脱敏。只读。"""
    ledger = _ledger(request)
    filters = Filters(AUDIT, actor=actor, action=action, since=_instant(since), until=_instant(until), sector=sector,
                      case_no=case_no)
    # A detail's instants (a filter's bounds) were recorded in UTC; shown, like every time, in Beijing time.
    return _page(ledger, AUDIT_ORDER, filters, paging,
                 lambda r: {**r.public(), "detail": instants_as_beijing_text(mask(ledger.open_body(r)))})


@router.get("/audit/verify", responses=problem_doc(401, 403),
            summary="校验审计与报文日志")
def verify(request: Request, identity: Annotated[Identity, Depends(require(Role.AUDITOR))]) -> dict[str, Any]:
    """校验审计日志和报文日志的哈希链与签名检查点，列出发现的每一个问题（为空表示完好）。只读，可重复调用。"""
    return _ledger(request).verify().public()


@router.get("/messages", response_model=Page[dict[str, Any]], responses=problem_doc(401, 403, 422),
            summary="查阅部门报文日志")
def list_messages(request: Request, identity: Annotated[Identity, Depends(require(Role.OPERATOR, Role.SECTOR_ADMIN))],
                  paging: LogPage, sector: str | None = None, case_no: str | None = None,
                  direction: Direction | None = None) -> dict[str, Any]:
    """网关与部门系统之间收发的报文记录，可按部门、办件、方向筛选并分页；部门系统管理员只能看到本部门的。只读。"""
    if not identity.has(Role.OPERATOR):
        if sector is not None and not acts_for_sector(identity, sector):
            raise NotAllowed(f"不是部门 {sector} 的管理员")
        sector = identity.sector or ""  # a sector administrator without a sector sees nothing
    filters = Filters(MESSAGE, action=direction, sector=sector, case_no=case_no)
    return _page(_ledger(request), MESSAGE_ORDER, filters, paging, LedgerRecord.public)


@router.get("/messages/{record_id}", responses=problem_doc(401, 403, 404),
            summary="查看一次报文往来")
def get_message(record_id: RecordId, request: Request,
                identity: Annotated[Identity, Depends(require(Role.OPERATOR, Role.SECTOR_ADMIN))],
                unmasked: bool = False) -> dict[str, Any]:
    """一次收发及其报文内容，个人信息脱敏；`unmasked=true` 显示原文
    （仅运维人员和本部门系统管理员，每次读取记入审计）。只读。"""
    ledger = _ledger(request)
    record = ledger.get(record_id)
    if record is None or record.kind != MESSAGE:
        raise RecordNotFound(f"没有编号为 {record_id} 的报文记录")
    if not acts_for_sector(identity, record.sector or ""):
        raise NotAllowed(f"不是部门 {record.sector} 的管理员")
    if unmasked and not may_unmask(identity, record.sector or ""):
        raise NotAllowed(UNMASKED_ONLY)
    body = ledger.open_body(record)
    if unmasked:  # recorded before anything is shown: no record, no reading
        ledger.audit(f"identity:{identity.id}", "read unmasked message", f"message:{record.id}",
                     {"name": identity.name}, record.sector, outcome="shown", case_no=record.case_no)
    return {**record.public(), "masked": not unmasked, "body": body if unmasked else mask(body)}


def install_audit_error_handlers(app: FastAPI) -> None:
    install_problems(app, [(RecordNotFound, 404, "message-not-found", "未找到该报文记录")])


class AuditTrail:
    """ASGI middleware: one audit record per state-changing /v1 request, refused ones included — who
    (`request.state.identity`, set by `auth.require`, else anonymous), the method and route template, the
    path parameters as subject, and the status code with its outcome."""

    def __init__(self, app: ASGIApp, ledger: Ledger) -> None:
        self.app, self.ledger = app, ledger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGING or not scope["path"].startswith(AUDITED_PREFIX):
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts: the app failed

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await run_in_threadpool(self._record, scope, status)

    def _record(self, scope: Scope, status: int) -> None:
        identity = scope.get("state", {}).get("identity") or _presented_identity(scope)
        params: dict[str, Any] = scope.get("path_params") or {}
        action = f"{scope['method']} {_template(scope)}"
        try:
            self.ledger.audit(f"identity:{identity.id}" if identity else "anonymous", action,
                              ",".join(f"{k}={v}" for k, v in params.items()) or None,
                              {"name": identity.name if identity else None, "path": scope["path"], "status": status},
                              identity.sector if identity else params.get("sector"),
                              outcome=f"{status} {_outcome(status)}", case_no=params.get("case_no"))
        except Exception:  # noqa: BLE001 - the change is made and answered; say loudly that its record is not
            log.exception("audit record not written", action=action, status=status)


def _presented_identity(scope: Scope) -> Identity | None:
    """Whose key (or certificate) a refused request presented (`require` names only an admitted identity)."""
    return caller(Request(scope))


def _template(scope: Scope) -> str:
    """The route as declared (`/v1/cases/{case_no}/accept`), so the log groups by action, not by case."""
    segments: list[str] = scope["path"].split("/")
    start = 0
    for name, value in (scope.get("path_params") or {}).items():  # in the order they appear in the path
        for i in range(start, len(segments)):
            if segments[i] == str(value):
                segments[i], start = f"{{{name}}}", i + 1
                break
    return "/".join(segments)


def _outcome(status: int) -> str:
    return "ok" if status < 400 else "refused" if status < 500 else "failed"
