"""`/v1/ops`: the operators' desk over HTTP — what `yiwang ops` does (ops/cli.py), on the same
`DeadLetterDesk` (ops/dead_letters.py).

- Dead letters: list with filters (sorted, paged by an opaque cursor), counts by sector and error class, one
  shown whole with its case's timeline, replayed one by one or in bulk runs (a dry run says how many and
  which), discarded with a reason. A bulk run is recorded at once and continued in batches: by a thread this
  request starts and by the scheduled job `replay-runs`, so it completes even if this process dies.
- Causes: the letters grouped by their cause (ops/causes.py), the largest first, paged; a cause is a filter
  (`cause=`) for every list and bulk action. `text` searches the causes (the error texts themselves are sealed).
- CSV export of the letters matching a filter (masked, bounded, audited; ops/letter_actions.py).
- Cancelling a bulk run: what it has not replayed yet is released, replayable again.
- Webhook deliveries to the hall that failed for good, across all subscriptions, and sending one again.
- The overview (`GET /v1/ops/overview`, ops/overview.py): the console's first page's figures, each with the link
  to the list it counts; operators and the system, security and audit administrators see the whole gateway, a
  sector administrator their own sector's part.

Who, for dead letters and webhooks: operators do everything. A sector administrator lists, shows and replays
their own sector's dead letters only — another sector's letter is 404 to them (as if it did not exist), a filter
naming another sector 403 — and never discards. Nobody else comes in.

Personal data is masked (`gateway.observability.logs.mask_value`) for every role. `?unmasked=true` on a letter is for
operators and the letter's own sector administrator (`gateway.domain.roles.may_unmask`, the message log's rule too);
each such read is written to the audit log before it is answered.

Every action is audited twice: the `AuditTrail` middleware records each POST (who, route, status), and the
action itself writes a record with what the middleware cannot know — the reason, the filter, the mapping
version and the outcome (counts, the run id). The actions and their records are ops/letter_actions.py, which
the console calls too: the routes here only translate HTTP.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import date, datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.audit.ledger import Ledger
from gateway.domain.case import DISCARD_OUTCOMES
from gateway.domain.clock import instants_as_beijing_text
from gateway.domain.roles import Identity, Role
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import install_problems, problem_doc
from gateway.http.schemas import BeijingTime, DeliveryOut, EventOut
from gateway.http.text_fields import typed
from gateway.notifications.hall import FailedDelivery, NotRedeliverable, UnknownDelivery, WebhookFailures
from gateway.observability.logs import mask_text
from gateway.persistence.keyset import MAX_CURSOR, Keyset
from gateway.persistence.repository import DeadLetter
from gateway.persistence.tables import MAX_ROW_ID
from ops import letter_actions as actions
from ops.causes import MAX_CAUSE
from ops.dead_letters import (
    MAX_TEXT,
    BadInput,
    DeadLetterDesk,
    DeadLetterFilter,
    DeadLetterNotFound,
    NotCancellable,
    NotDiscardable,
    NotReplayable,
    ReasonRequired,
    ReplayPlan,
    ReplayRun,
    ReplayRunNotFound,
)
from ops.journey import MAX_ENTRIES, CaseJourney
from ops.overview import OVERVIEW_ROLES, Overview, Scope
from ops.overview import Page as ConsolePage

router = APIRouter(prefix="/v1/ops", tags=["operators"], route_class=JsonBodyRoute)
Operator = Annotated[Identity, Depends(require(Role.OPERATOR))]
Reader = Annotated[Identity, Depends(require(Role.OPERATOR, Role.SECTOR_ADMIN))]  # and replayer
MAX_PAGE = 500
# Newest first by id; no total (a sector administrator's runs are picked in memory; failures are a log).
REPLAY_RUNS = Keyset("replay-runs", (int,), descending=True)
FAILED_DELIVERIES = Keyset("webhook-failures", (int,), descending=True)
MAX_IDS = 1000
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
RowIdInPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
Sort = Literal["created_at", "-created_at", "attempts", "-attempts", "sector", "-sector"]  # the desk's SORTS
MappingVersion = Literal["original", "active"]
PERSONAL_PARTS = actions.PERSONAL_PARTS  # a letter's parts that may hold ID and phone numbers: masked


# --- what comes in -----------------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LetterFilterIn(Strict):
    """Which dead letters: every condition given must hold."""

    sector: str | None = Field(default=None, min_length=1, max_length=64)
    version: str | None = Field(default=None, min_length=1, max_length=64,
                                description="the sector's bundle version the message was rendered with")
    matter: str | None = Field(default=None, pattern=r"^[0-9A-Z]{31}$", description="the case's matter (实施编码)")
    case_no: str | None = Field(default=None, min_length=1, max_length=50)
    error_class: str | None = Field(default=None, min_length=1, max_length=32,
                                    description="transport, timeout, sector_fault, mapping, validation, auth, …")
    since: datetime | None = Field(default=None, description="failed at or after (no zone: Beijing time)")
    until: datetime | None = Field(default=None, description="failed before (no zone: Beijing time)")
    min_attempts: int | None = Field(default=None, ge=0, le=10_000)
    max_attempts: int | None = Field(default=None, ge=0, le=10_000)
    correlation_id: str | None = Field(default=None, min_length=1, max_length=64,
                                       description="of the request or job that wrote the letter's message")
    cause: str | None = Field(default=None, min_length=1, max_length=MAX_CAUSE,
                              description="a cause exactly as /v1/ops/dead-letters/causes names it")
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT,
                             description="a part of the cause, any case (the error message itself rests sealed: "
                                         "words are found, not ids or numbers)")

    @model_validator(mode="after")
    def _consistent(self) -> LetterFilterIn:
        if self.min_attempts is not None and self.max_attempts is not None and self.min_attempts > self.max_attempts:
            raise ValueError("min_attempts 不能大于 max_attempts")
        since, until = _utc(self.since), _utc(self.until)
        if since is not None and until is not None and since >= until:
            raise ValueError("since 应早于 until")
        return self


class CountQuery(LetterFilterIn):
    status: Literal["dead", "replayed", "discarded", "superseded", "any"] = "dead"


class ListQuery(CountQuery):
    sort: Sort = "-created_at"
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR, description="next_cursor of the page before")


class CausesQuery(CountQuery):
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR, description="next_cursor of the page before")


class BulkFilterIn(LetterFilterIn):
    ids: list[RowId] | None = Field(default=None, min_length=1, max_length=MAX_IDS, description="these letters only")


# Blank is "no reason" (refused as reason-required below); characters no record should hold: invalid-request.
Reason = Annotated[str, typed("原因", multiline=True, blank="")]


class OperatorReasonIn(Strict):
    reason: Reason = Field(max_length=500, description="why: required, not blank; kept in the audit log")


class ReplayIn(OperatorReasonIn):
    mapping: MappingVersion = Field(default="active", description="render with the sector's active bundle version, or "
                                                          "the one the message was first rendered with")


class BulkReplayIn(Strict):
    filter: BulkFilterIn = Field(description="which dead letters; {} is every dead letter (of your sector)")
    reason: Reason = Field(default="", max_length=500, description="required unless dry_run")
    mapping: MappingVersion = "active"
    dry_run: bool = Field(default=False, description="say how many and which, change nothing")


CaseOutcome = Literal["back_office", "return", "void"]
CASE_OUTCOME_HELP = ("what becomes of the letter's case (for a parallel case, its task), in the same transaction: "
                     "back_office — its department's clerk decides through the back-office API; return — returned "
                     "to the applicant with the reason; void — 作废 (the lead's or only task voids the case)")


class CancelIn(Strict):
    reason: Reason = Field(max_length=500, description="why: required, not blank; kept with the run and audited")


class DiscardIn(OperatorReasonIn):
    case_outcome: CaseOutcome = Field(description=CASE_OUTCOME_HELP)


class BulkDiscardIn(Strict):
    filter: BulkFilterIn
    reason: Reason = Field(default="", max_length=500, description="required unless dry_run")
    case_outcome: CaseOutcome | None = Field(default=None, description=CASE_OUTCOME_HELP + "; required unless dry_run")
    dry_run: bool = False


class FailuresQuery(Strict):
    subscription: str | None = Field(default=None, pattern=r"^wh_[0-9a-f]{12}$")
    hall: str | None = Field(default=None, min_length=1, max_length=20, description="the subscribing identity's id")
    since: datetime | None = Field(default=None, description="no zone: Beijing time")
    until: datetime | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR, description="next_cursor of the page before")


# --- what goes out -----------------------------------------------------------------------------------------


class DeadLetterOut(BaseModel):
    """A dead letter as listed: what failed, why, how often; its bodies only when shown whole."""

    id: int
    case_no: str
    sector: str
    operation: str
    error_class: str
    error_message: str
    attempts: int
    deliveries: int
    bundle_version: str | None
    status: str = Field(description="dead | replayed | discarded | superseded (its task was sent again in a new "
                                     "round, or ended)")
    created_at: BeijingTime | None
    replayed_at: BeijingTime | None
    replayed_by: str | None
    replay_reason: str | None = None
    replay_run_id: int | None = Field(default=None, description="the bulk replay run that replayed it")
    cause: str | None = Field(default=None, description="its error text with ids and numbers taken out: letters "
                                                        "dead of one fault share it")
    discarded_at: BeijingTime | None = None
    discarded_by: str | None = None
    discard_reason: str | None = None
    case_outcome: str | None = Field(default=None, description="what discarding it did to its case")
    superseded_at: BeijingTime | None = None


class DeadLetterWhole(DeadLetterOut):
    outbox_id: int | None
    idempotency_key: str
    masked: bool
    canonical_payload: Any
    rendered_request: Any
    last_response: Any
    history: list[dict[str, Any]]
    timeline: list[EventOut] = Field(description="the case's events, oldest first")


class CountOut(BaseModel):
    sector: str
    error_class: str
    count: int


class CauseOut(BaseModel):
    error_class: str
    sector: str
    cause: str = Field(description="the cause: a filter (`cause=`) for the list, replays and discards; '' for "
                                   "letters whose cause is not known yet")
    count: int
    first_at: BeijingTime
    last_at: BeijingTime
    sample_id: int = Field(description="one of its letters (the oldest), to read whole")


class PlanOut(BaseModel):
    count: int
    sample: list[DeadLetterOut] = Field(description="the first (up to 20) it would act on")


class KeptOut(BaseModel):
    id: int
    why: str = Field(description="why its case could not take the way forward chosen")


class DiscardedOut(BaseModel):
    count: int
    kept: list[KeptOut] = Field(default_factory=list, description="letters left dead: their cases could not take it")


class ReplayRunOut(BaseModel):
    id: int
    filter: dict[str, Any]
    reason: str
    mapping: str
    requested_by: str
    status: str = Field(description="running | done | cancelled")
    total: int
    replayed: int
    skipped: int = Field(description="not replayed by it: discarded or replayed one by one after it started, or "
                                     "released by a cancel")
    created_at: BeijingTime
    finished_at: BeijingTime | None
    cancelled_by: str | None = None
    cancel_reason: str | None = None


class CancelledOut(ReplayRunOut):
    released: int = Field(description="its letters not yet replayed, released by the cancel: dead, in no run, "
                                      "replayable again")


class FailedDeliveryOut(DeliveryOut):
    subscription_id: str
    hall: str = Field(description="the identity that subscribed")
    hall_name: str


# --- helpers -----------------------------------------------------------------------------------------------


def _desk(request: Request) -> DeadLetterDesk:
    return cast(DeadLetterDesk, request.app.state.dead_letter_desk)  # set by gateway.bootstrap.app


def _ledger(request: Request) -> Ledger:
    return cast(Ledger, request.app.state.ledger)  # set by gateway.bootstrap.app


_utc = actions.from_beijing
_scope = actions.scope_of
_required = actions.required


def _filter(identity: Identity, given: LetterFilterIn, status: str | None = "dead",
            ids: list[int] | None = None) -> DeadLetterFilter:
    return actions.letter_filter(identity, given, status, ids)


def _bulk_filter(identity: Identity, given: BulkFilterIn) -> DeadLetterFilter:
    """Bulk actions take dead letters only: a replayed or discarded one never matches."""
    return _filter(identity, given, "dead", given.ids)






def _json_letter(letter: DeadLetter) -> dict[str, Any]:
    return actions.letter_view(letter, encode=jsonable_encoder)


def _plan(plan: ReplayPlan) -> PlanOut:
    return PlanOut(count=plan.count, sample=[DeadLetterOut(**_json_letter(letter)) for letter in plan.sample])


def _run(run: ReplayRun) -> dict[str, Any]:
    return {f.name: getattr(run, f.name) for f in fields(run)} | {
        "reason": mask_text(run.reason), "filter": instants_as_beijing_text(run.filter),  # its bounds kept in UTC
        "cancel_reason": None if run.cancel_reason is None else mask_text(run.cancel_reason)}


_visible = actions.visible


def _audit(request: Request, identity: Identity, action: str, subject: str, detail: dict[str, Any],
           outcome: str, sector: str | None = None, case_no: str | None = None) -> None:
    actions.audit(_ledger(request), identity, action, subject, detail, outcome, sector, case_no)


_continue_in_background = actions.continue_in_background


# --- dead letters ------------------------------------------------------------------------------------------


@router.get("/dead-letters", response_model=Page[DeadLetterOut], responses=problem_doc(401, 403, 422),
            summary="检索死信")
def list_dead_letters(request: Request, identity: Reader, query: Annotated[ListQuery, Query()]) -> dict[str, Any]:
    """投递失败且不再自动重试的消息（死信），按部门、错误类别、时间等筛选、排序并分页（`next_cursor` 取下一页）。
    部门系统管理员只看到本部门的。只读。"""
    status = None if query.status == "any" else query.status
    page = _desk(request).page(_filter(identity, query, status), sort=query.sort, limit=query.limit,
                               cursor=query.cursor)
    return {"items": [_json_letter(letter) for letter in page.items], "total": page.total,
            "next_cursor": page.next_cursor}


@router.get("/dead-letters/counts", response_model=list[CountOut], responses=problem_doc(401, 403, 422),
            summary="死信计数")
def count_dead_letters(request: Request, identity: Reader, query: Annotated[CountQuery, Query()]) -> list[Any]:
    """符合筛选条件的死信数量，按部门和错误类别汇总。只读。"""
    status = None if query.status == "any" else query.status
    counts = _desk(request).counts(_filter(identity, query, status))
    return [{"sector": sector, "error_class": error_class, "count": count} for sector, error_class, count in counts]


@router.get("/dead-letters/causes", response_model=Page[CauseOut], responses=problem_doc(401, 403, 422),
            summary="死信原因归类")
def dead_letter_causes(request: Request, identity: Reader, query: Annotated[CausesQuery, Query()]) -> dict[str, Any]:
    """符合筛选条件的死信按原因归类（错误信息去掉编号、时间、数字等后的文字），数量多的在前，分页。
    原因可作为 `cause` 筛选条件，对整组列出、重放或丢弃。翻页期间数量变化的组可能前移或后移。只读。"""
    status = None if query.status == "any" else query.status
    found, total = actions.causes_page(_desk(request), _filter(identity, query, status), query.cursor, query.limit)
    return answer(actions.CAUSES, found, asdict, total=total)


@router.get("/dead-letters/export.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "UTF-8 带 BOM 的 CSV"},
                       **problem_doc(401, 403, 422)},
            summary="导出死信（CSV）")
def export_dead_letters(request: Request, identity: Reader, query: Annotated[CountQuery, Query()]) -> Any:
    """符合筛选条件的死信导出为 CSV（UTF-8 带 BOM，Excel 可直接打开；个人信息一律脱敏；时间为北京时间）。
    最多 100000 条，超过为 422，请缩小筛选范围。每次导出记入审计（谁、条件、条数）。"""
    status = None if query.status == "any" else query.status
    lines = actions.export_csv(_desk(request), _ledger(request), identity, _filter(identity, query, status))
    return StreamingResponse(lines, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="dead-letters.csv"'})


@router.get("/dead-letters/{dead_letter_id}", response_model=DeadLetterWhole, responses=problem_doc(401, 403, 404),
            summary="查看死信")
def show_dead_letter(dead_letter_id: RowIdInPath, request: Request, identity: Reader,
                     unmasked: Annotated[bool, Query(description="operators and the sector's own "
                                                                 "administrator: plain, audited")] = False
                      ) -> dict[str, Any]:
    """一条死信的全部：消息内容、渲染后的请求、每次尝试，以及办件的时间线。只读。"""
    desk = _desk(request)
    letter = (actions.read_unmasked(desk, _ledger(request), identity, dead_letter_id) if unmasked
              else desk.get(dead_letter_id, _scope(identity)))
    timeline = [actions.event_shown(e, masked=not unmasked, encode=jsonable_encoder)
                for e in desk.timeline(letter.case_no)]
    return {**actions.letter_view(letter, masked=not unmasked, encode=jsonable_encoder), "masked": not unmasked,
            "timeline": timeline}


@router.post("/dead-letters/{dead_letter_id}/replay", response_model=DeadLetterOut,
             responses=problem_doc(401, 403, 404, 409, 422),
             summary="重放死信")
def replay_dead_letter(dead_letter_id: RowIdInPath, body: ReplayIn, request: Request,
                       identity: Reader) -> dict[str, Any]:
    """用原幂等键把一条死信的消息再投递一次，部门系统会识别重复。需写明原因，记入审计。
    已重放或已丢弃的死信为 409。"""
    letter = actions.replay_one(_desk(request), _ledger(request), identity, dead_letter_id,
                                reason=_required(body.reason), mapping=body.mapping)
    return _json_letter(letter)


@router.post("/dead-letters/{dead_letter_id}/discard", response_model=DeadLetterOut,
             responses=problem_doc(401, 403, 404, 409, 422),
             summary="丢弃死信")
def discard_dead_letter(dead_letter_id: RowIdInPath, body: DiscardIn, request: Request,
                        identity: Operator) -> dict[str, Any]:
    """永久丢弃一条死信，它不会再被重放。需写明原因，记入审计。状态不允许时为 409。"""
    letter = actions.discard_one(_desk(request), _ledger(request), identity, dead_letter_id,
                                 reason=_required(body.reason), case_outcome=body.case_outcome)
    return _json_letter(letter)


# --- in bulk -----------------------------------------------------------------------------------------------


@router.post("/replays", status_code=202, response_model=ReplayRunOut,
             responses={200: {"model": PlanOut, "description": "试运行（dry_run）：将重放的数量和清单"},
                        **problem_doc(401, 403, 422)},
             summary="批量重放死信")
def replay_many(body: BulkReplayIn, request: Request, response: Response, identity: Reader) -> Any:
    """重放符合筛选条件的死信：`dry_run` 只返回数量和清单（200）；否则开始一次后台重放（202，`Location` 指向进度）。
    需写明原因，记入审计。不是幂等操作：每次调用开始一次新的批量重放。"""
    desk, ledger, chosen = _desk(request), _ledger(request), _bulk_filter(identity, body.filter)
    if body.dry_run:
        return JSONResponse(jsonable_encoder(_plan(actions.plan_replay(desk, ledger, identity, chosen))))
    run = actions.start_replay(desk, ledger, identity, chosen, reason=_required(body.reason), mapping=body.mapping)
    if run.status != "done":
        _continue_in_background(desk, run.id)
    response.headers["Location"] = f"/v1/ops/replays/{run.id}"
    return _run(run)


@router.get("/replays", response_model=Page[ReplayRunOut], responses=problem_doc(401, 403, 422),
            summary="批量重放记录")
def list_replay_runs(request: Request, identity: Reader, paging: Paged) -> dict[str, Any]:
    """批量重放的记录及进度，新的在前，分页。只读。"""
    desk, before = _desk(request), paging.after_id(REPLAY_RUNS)
    visible: list[ReplayRun] = []
    while len(visible) <= paging.limit:  # a sector administrator sees some runs only: read on until a page is full
        batch = desk.runs(paging.limit + 1, before_id=before)
        visible += [run for run in batch if _visible(identity, run)]
        if len(batch) <= paging.limit:
            break
        before = batch[-1].id
    return answer(REPLAY_RUNS, REPLAY_RUNS.cut(visible, paging.limit, lambda run: (run.id,)), _run)


@router.get("/replays/{run_id}", response_model=ReplayRunOut, responses=problem_doc(401, 403, 404),
            summary="查看批量重放进度")
def show_replay_run(run_id: RowIdInPath, request: Request, identity: Reader) -> dict[str, Any]:
    """一次批量重放及其进度。只读。"""
    run = _desk(request).run(run_id)
    if not _visible(identity, run):
        raise ReplayRunNotFound(run_id)  # another sector's run is as unknown as one that never was
    return _run(run)


@router.post("/replays/{run_id}/cancel", response_model=CancelledOut, responses=problem_doc(401, 403, 404, 409, 422),
             summary="取消批量重放")
def cancel_replay_run(run_id: RowIdInPath, body: CancelIn, request: Request, identity: Reader) -> dict[str, Any]:
    """停止一次进行中的批量重放：已重放的保持已重放，尚未重放的死信释放出来（仍为死信，可再次重放），不丢失、不重复。
    部门系统管理员只能取消自己发起的。已完成或已取消的为 409。需写明原因，记入审计。"""
    run, released = actions.cancel_replay(_desk(request), _ledger(request), identity, run_id,
                                          reason=_required(body.reason))
    return {**_run(run), "released": released}


@router.post("/discards", response_model=PlanOut | DiscardedOut, responses=problem_doc(401, 403, 422),
             summary="批量丢弃死信")
def discard_many(body: BulkDiscardIn, request: Request, identity: Operator) -> Any:
    """丢弃符合筛选条件的死信；`dry_run` 只返回数量。需写明原因，记入审计。"""
    desk, ledger, chosen = _desk(request), _ledger(request), _bulk_filter(identity, body.filter)
    if body.dry_run:
        return _plan(actions.plan_discard(desk, ledger, identity, chosen))
    reason = _required(body.reason)
    if body.case_outcome is None:
        raise BadInput(f"缺少 case_outcome，应为以下之一：{'、'.join(DISCARD_OUTCOMES)}")
    done = actions.discard_many(desk, ledger, identity, chosen, reason=reason, case_outcome=body.case_outcome)
    return DiscardedOut(count=done.count, kept=[KeptOut(id=i, why=why) for i, why in done.kept])


# --- webhook deliveries that failed for good ----------------------------------------------------------------


def _failures(request: Request) -> WebhookFailures:
    return cast(WebhookFailures, request.app.state.webhook_failures)  # set by gateway.bootstrap.app


def _failed_view(failed: FailedDelivery) -> dict[str, Any]:
    d = failed.delivery
    return {**{f.name: getattr(d, f.name) for f in fields(d)}, "hall": failed.owner_id, "hall_name": failed.owner_name}


@router.get("/webhook-failures", response_model=Page[FailedDeliveryOut], responses=problem_doc(401, 403, 422),
            summary="推送失败的 webhook")
def list_webhook_failures(request: Request, _: Operator,
                          query: Annotated[FailuresQuery, Query()]) -> dict[str, Any]:
    """向网上大厅推送最终失败的记录，涵盖所有订阅，新的在前，分页。只读。"""
    found = _failures(request).failed(subscription_id=query.subscription, owner_id=query.hall,
                                      since=_utc(query.since), until=_utc(query.until),
                                      before_id=FAILED_DELIVERIES.last_id(query.cursor), limit=query.limit + 1)
    page = FAILED_DELIVERIES.cut(found, query.limit, lambda failed: (failed.delivery.id,))
    return answer(FAILED_DELIVERIES, page, _failed_view)


@router.post("/webhook-failures/{delivery_id}/redeliver", response_model=FailedDeliveryOut,
             responses=problem_doc(401, 403, 404, 409, 422),
             summary="重新推送 webhook")
def redeliver_webhook(delivery_id: RowIdInPath, body: OperatorReasonIn, request: Request,
                      identity: Operator) -> dict[str, Any]:
    """把一次失败的推送重新发送，事件 id 不变（大厅据此去重）。需写明原因，记入审计。已重新推送的为 409。"""
    reason = _required(body.reason)
    failed = _failures(request).redeliver(delivery_id)
    d = failed.delivery
    _audit(request, identity, "ops redeliver webhook", f"webhook_delivery:{d.id}",
           {"reason": reason, "subscription_id": d.subscription_id, "event_id": d.event.get("event_id"),
            "hall": failed.owner_id}, "pending again", case_no=d.case_no)
    return _failed_view(failed)


# --- the overview -----------------------------------------------------------------------------------------


Overseer = Annotated[Identity, Depends(require(*OVERVIEW_ROLES))]


class OverviewLink(BaseModel):
    """Where a figure leads: the console page of the list it counts, and that list's filter (times: Beijing
    time, no zone)."""

    page: ConsolePage
    filter: dict[str, Any]


class OverviewCount(BaseModel):
    count: int | None = Field(description="null: unknown")
    link: OverviewLink


class OverviewStateCount(OverviewCount):
    state: str


class OverviewCases(BaseModel):
    by_state: list[OverviewStateCount]
    overdue: OverviewCount = Field(description="open cases e-supervision flagged overdue")


class OverviewOutbox(BaseModel):
    pending: OverviewCount
    queued: OverviewCount = Field(description="handed to the broker")
    leased: OverviewCount = Field(description="of the pending and queued, being delivered now")
    oldest_due_age_s: float | None = Field(description="how long the oldest message that is due has waited")
    oldest_due_link: OverviewLink


class OverviewQueue(OverviewCount):
    queue: str


class OverviewQueues(BaseModel):
    transport: Literal["amqp", "in_process"]
    broker: Literal["up", "down"] | None
    items: list[OverviewQueue]


class OverviewDeadLetterCount(OverviewCount):
    sector: str
    error_class: str


class OverviewDay(OverviewCount):
    day: date = Field(description="a Beijing calendar day")


class OverviewDeadLetters(BaseModel):
    waiting: OverviewCount
    by_class: list[OverviewDeadLetterCount]
    trend: list[OverviewDay] = Field(description="new dead letters per day, the last 7 days, today last")


class OverviewCircuit(BaseModel):
    sector: str
    delivery: str | None = Field(description="closed | open | half_open (this process); null: not built here")
    query: str | None
    link: OverviewLink


class OverviewVersion(BaseModel):
    version: str
    status: str
    test_outcome: str | None
    rehearsal_outcome: str | None
    rehearsed_at: BeijingTime | None
    rehearsal_passed: int | None
    rehearsal_total: int | None
    link: OverviewLink


class OverviewAdapter(BaseModel):
    sector: str
    active_version: str | None
    health: Literal["built", "unbuildable", "none"]
    versions: list[OverviewVersion]
    link: OverviewLink


class OverviewCertificate(BaseModel):
    name: str
    sector: str | None = Field(description="null: the gateway's own")
    not_after: BeijingTime
    days_left: float
    link: OverviewLink


class OverviewFerryLink(BaseModel):
    channel: str
    sector: str
    mode: str
    lag: int
    open_gaps: int
    oldest_gap_age_s: float | None
    unacknowledged: int
    last_signal_age_s: float | None
    link: OverviewLink


class OverviewOut(BaseModel):
    at: BeijingTime
    sector: str | None = Field(description="the scope: a sector administrator's sector; null: the whole gateway")
    cases: OverviewCases | None = Field(description="null for a sector administrator")
    outbox: OverviewOutbox | None = Field(description="null for a sector administrator")
    queues: OverviewQueues | None = Field(description="null for a sector administrator")
    dead_letters: OverviewDeadLetters
    circuits: list[OverviewCircuit]
    adapters: list[OverviewAdapter]
    certificates: list[OverviewCertificate] = Field(description="expiring within 30 days, or expired")
    ferry: list[OverviewFerryLink]


@router.get("/overview", response_model=OverviewOut, responses=problem_doc(401, 403), summary="运维总览")
def show_overview(request: Request, identity: Overseer) -> dict[str, Any]:
    """控制台首页的各项数字：办件按状态及超期数、发件箱积压、队列深度、死信（按部门和错误类别，
    及近 7 天每天新增）、熔断器、适配器版本（测试与预演结果）、即将到期的证书、摆渡链路的滞后与缺口。
    每项带 `link`：它所统计的列表及筛选条件。部门系统管理员只看到本部门的死信、熔断器、适配器、证书和摆渡链路
    （办件、发件箱、队列为 null）。只读。"""
    overview = cast(Overview, request.app.state.overview)  # set by gateway.bootstrap.app
    return overview.overview(Scope.of(identity)).public()


# --- a case's journey ----------------------------------------------------------------------------------------


class JourneyEntryOut(BaseModel):
    at: BeijingTime
    kind: str = Field(description="event | message | delivery | attempt | callback | dead_letter | notification")
    title: str = Field(description="what happened, in short")
    sector: str | None = Field(description="the sector it concerns; null: the case itself or the hall")
    detail: dict[str, Any] = Field(description="its particulars (personal data masked unless unmasked)")
    links: dict[str, int | str] = Field(description="ids to follow: dead_letter_id (GET /v1/ops/dead-letters/{id}), "
                                                    "message_record_id (GET /v1/messages/{id}), outbox_id, "
                                                    "webhook_delivery_id, event_seq")


class JourneyCaseOut(BaseModel):
    case_no: str
    matter_code: str
    state: str
    state_label: str
    channel: str
    deadline: dict[str, Any] | None = Field(description="the running clock: kind, due (a date), overdue")
    tasks: list[dict[str, Any]] = Field(description="task_id, department, sector, state, round")


class JourneyOut(BaseModel):
    case: JourneyCaseOut
    entries: list[JourneyEntryOut] = Field(description=f"oldest first; at most {MAX_ENTRIES}")
    truncated: bool = Field(description=f"more than {MAX_ENTRIES} happened: these are the oldest")
    masked: bool


Unmasked = Annotated[bool, Query(description="operators and the sector's own administrator: plain, audited")]


def _journeys(request: Request) -> CaseJourney:
    return cast(CaseJourney, request.app.state.case_journeys)  # set by gateway.bootstrap.app


def _journey(request: Request, identity: Identity, case_no: str, unmasked: bool) -> dict[str, Any]:
    """The case's journey as the caller may see it; unmasked only for who may, audited by the service first."""
    journey = _journeys(request).read(identity, case_no, unmasked=unmasked)
    return {"case": asdict(journey.case), "entries": [asdict(entry) for entry in journey.entries],
            "truncated": journey.truncated, "masked": journey.masked}


@router.get("/cases/{case_no}/journey", response_model=JourneyOut, responses=problem_doc(401, 403, 404, 422),
            summary="办件全程")
def case_journey(case_no: Annotated[str, Path(min_length=1, max_length=50)], request: Request, identity: Reader,
                 unmasked: Unmasked = False) -> dict[str, Any]:
    """一个办件经历的一切，按时间先后：办件事件、待发消息、与部门的每次收发、每次调用、回调、死信及其重放、给大厅的通知。
    部门系统管理员只看得到有消息发往本部门的办件，且只看到本部门的部分。个人信息脱敏；`unmasked=true` 显示原文
    （每次读取先记入审计）。只读。"""
    return _journey(request, identity, case_no, unmasked)


@router.get("/journeys", response_model=JourneyOut, responses=problem_doc(401, 403, 404, 422),
            summary="按关联编号查办件全程")
def journey_by_correlation(request: Request, identity: Reader,
                           correlation_id: Annotated[str, Query(min_length=1, max_length=64,
                                                                description="X-Correlation-Id of the request or "
                                                                            "job that wrote a message")],
                           unmasked: Unmasked = False) -> dict[str, Any]:
    """关联编号（X-Correlation-Id）所属办件的全程，同 `/v1/ops/cases/{case_no}/journey`；没有所属办件时为 404。只读。"""
    return _journey(request, identity, _journeys(request).case_of_correlation(correlation_id), unmasked)


def install_ops_error_handlers(app: FastAPI) -> None:
    install_problems(app, [
        (DeadLetterNotFound, 404, "dead-letter-not-found", "没有该死信"),
        (ReplayRunNotFound, 404, "replay-run-not-found", "没有该重放批次"),
        (NotReplayable, 409, "not-replayable", "该死信不能重放"),
        (NotCancellable, 409, "not-cancellable", "该重放批次已结束，不能取消"),
        (NotDiscardable, 409, "not-discardable", "该死信不能丢弃（已处理，或办件不能按所选方式处理）"),
        (ReasonRequired, 422, "reason-required", "必须说明原因"),
        (BadInput, 422, "invalid-filter", "筛选条件、排序或游标无法使用"),
        (UnknownDelivery, 404, "webhook-delivery-not-found", "没有该推送记录"),
        (NotRedeliverable, 409, "not-redeliverable", "该推送不能重发"),
    ])
