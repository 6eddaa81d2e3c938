"""`/v1/ops`: the operators' desk over HTTP — what `yiwang ops` does (ops/cli.py), on the same
`DeadLetterDesk` (ops/dead_letters.py).

- Dead letters: list with filters (sorted, paged by an opaque cursor), counts by sector and error class, one
  shown whole with its case's timeline, replayed one by one or in bulk runs (a dry run says how many and
  which), discarded with a reason. A bulk run is recorded at once and continued in batches: by a thread this
  request starts and by the scheduled job `replay-runs`, so it completes even if this process dies.
- Webhook deliveries to the hall that failed for good, across all subscriptions, and sending one again.

Who: operators do everything. A sector administrator lists, shows and replays their own sector's dead
letters only — another sector's letter is 404 to them (as if it did not exist), a filter naming another
sector 403 — and never discards. Nobody else comes in.

Personal data is masked (`gateway.observability.logs.mask_value`) for every role. `?unmasked=true` on a letter is for
operators and the letter's own sector administrator (`gateway.domain.roles.may_unmask`, the message log's rule too);
each such read is written to the audit log before it is answered.

Every action is audited twice: the `AuditTrail` middleware records each POST (who, route, status), and the
action itself writes a record with what the middleware cannot know — the reason, the filter, the mapping
version and the outcome (counts, the run id).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.audit.ledger import Ledger
from gateway.cases.views import event_view
from gateway.domain.case import DISCARD_OUTCOMES, CaseEvent
from gateway.domain.clock import SHANGHAI, instants_as_beijing_text
from gateway.domain.roles import UNMASKED_ONLY, Identity, NotAllowed, Role, may_unmask
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import install_problems, problem_doc
from gateway.http.schemas import BeijingTime, DeliveryOut, EventOut
from gateway.http.text_fields import typed
from gateway.notifications.hall import FailedDelivery, NotRedeliverable, UnknownDelivery, WebhookFailures
from gateway.observability.logs import mask_text, mask_value
from gateway.persistence.keyset import MAX_CURSOR, Keyset
from gateway.persistence.repository import DeadLetter
from gateway.persistence.tables import MAX_ROW_ID
from ops.dead_letters import (
    REASON_REQUIRED,
    BadInput,
    DeadLetterDesk,
    DeadLetterFilter,
    DeadLetterNotFound,
    NotDiscardable,
    NotReplayable,
    ReasonRequired,
    ReplayPlan,
    ReplayRun,
    ReplayRunNotFound,
)
from ops.journey import MAX_ENTRIES, CaseJourney

log = structlog.get_logger("yiwang.ops.api")
router = APIRouter(prefix="/v1/ops", tags=["operators"], route_class=JsonBodyRoute)
Operator = Annotated[Identity, Depends(require(Role.OPERATOR))]
Reader = Annotated[Identity, Depends(require(Role.OPERATOR, Role.SECTOR_ADMIN))]  # and replayer
MAX_PAGE = 500
# Newest first by id; no total (a sector administrator's runs are picked in memory; failures are a log).
REPLAY_RUNS = Keyset("replay-runs", (int,), descending=True)
FAILED_DELIVERIES = Keyset("webhook-failures", (int,), descending=True)
MAX_IDS = 1000
SAMPLE = 20  # dead letters a dry run shows
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
RowIdInPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
Sort = Literal["created_at", "-created_at", "attempts", "-attempts", "sector", "-sector"]  # the desk's SORTS
MappingVersion = Literal["original", "active"]
# A letter's parts that may hold ID and phone numbers: masked unless the reader may see them.
PERSONAL_PARTS = ("error_message", "canonical_payload", "rendered_request", "last_response", "history",
                  "replay_reason", "discard_reason")


# --- what comes in -----------------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LetterFilterIn(Strict):
    """Which dead letters: every condition given must hold."""

    sector: str | None = Field(default=None, min_length=1, max_length=64)
    version: str | None = Field(default=None, min_length=1, max_length=40,
                                description="the sector's bundle version the message was rendered with")
    matter: str | None = Field(default=None, pattern=r"^[0-9A-Z]{31}$", description="the case's matter (实施编码)")
    case_no: str | None = Field(default=None, min_length=1, max_length=50)
    error_class: str | None = Field(default=None, min_length=1, max_length=32,
                                    description="transport, timeout, sector_fault, mapping, validation, auth, …")
    since: datetime | None = Field(default=None, description="failed at or after (no zone: Beijing time)")
    until: datetime | None = Field(default=None, description="failed before (no zone: Beijing time)")
    min_attempts: int | None = Field(default=None, ge=0, le=10_000)
    max_attempts: int | None = Field(default=None, ge=0, le=10_000)

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
    status: str = Field(description="running | done")
    total: int
    replayed: int
    skipped: int = Field(description="discarded (or replayed one by one) after the run started")
    created_at: BeijingTime
    finished_at: BeijingTime | None


class FailedDeliveryOut(DeliveryOut):
    subscription_id: str
    hall: str = Field(description="the identity that subscribed")
    hall_name: str


# --- helpers -----------------------------------------------------------------------------------------------


def _desk(request: Request) -> DeadLetterDesk:
    return cast(DeadLetterDesk, request.app.state.dead_letter_desk)  # set by gateway.bootstrap.app


def _ledger(request: Request) -> Ledger:
    return cast(Ledger, request.app.state.ledger)  # set by gateway.bootstrap.app


def _utc(value: datetime | None) -> datetime | None:
    """Times without a zone are Beijing time, as people read and write them."""
    if value is None:
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=SHANGHAI)).astimezone(UTC)


def _scope(identity: Identity, sector: str | None = None) -> frozenset[str] | None:
    """The sectors the caller acts for: None (all) for operators, their own for a sector administrator —
    who is refused a filter naming another sector."""
    if identity.has(Role.OPERATOR):
        return None
    if sector is not None and sector != identity.sector:
        raise NotAllowed(f"不是部门 {sector} 的管理员")
    return frozenset({identity.sector}) if identity.sector else frozenset()


def _filter(identity: Identity, given: LetterFilterIn, status: str | None = "dead",
            ids: list[int] | None = None) -> DeadLetterFilter:
    return DeadLetterFilter(
        sector=given.sector, sectors=_scope(identity, given.sector), bundle_version=given.version,
        matter_code=given.matter, case_no=given.case_no, error_class=given.error_class,
        created_from=_utc(given.since), created_to=_utc(given.until),
        min_attempts=given.min_attempts, max_attempts=given.max_attempts,
        status=status,  # type: ignore[arg-type]  # checked by the models' Literal
        ids=frozenset(ids) if ids else None)


def _bulk_filter(identity: Identity, given: BulkFilterIn) -> DeadLetterFilter:
    """Bulk actions take dead letters only: a replayed or discarded one never matches."""
    return _filter(identity, given, "dead", given.ids)


def _required(reason: str) -> str:
    if not reason.strip():
        raise ReasonRequired(REASON_REQUIRED)
    return reason.strip()


def _letter(letter: DeadLetter, masked: bool = True) -> dict[str, Any]:
    """The letter as JSON; its personal parts masked unless `masked` is False."""
    plain: dict[str, Any] = jsonable_encoder({f.name: getattr(letter, f.name) for f in fields(letter)})
    # Kept in UTC: each attempt's `at`, and the canonical message's instants (`case.accepted_at`); the request
    # as rendered and the sector's answer are shown as they went and came, byte for byte.
    plain.update({part: instants_as_beijing_text(plain[part]) for part in ("history", "canonical_payload")})
    if masked:
        plain.update({part: mask_value(plain.get(part)) for part in PERSONAL_PARTS})
    return plain


def _event(event: CaseEvent, masked: bool) -> dict[str, Any]:
    view = event_view(event)  # masked, as /v1/cases/{case_no}/events shows it
    return view if masked else {**view, "reason": event.reason, "data": jsonable_encoder(dict(event.data))}


def _plan(plan: ReplayPlan) -> PlanOut:
    return PlanOut(count=plan.count, sample=[DeadLetterOut(**_letter(letter)) for letter in plan.sample])


def _run(run: ReplayRun) -> dict[str, Any]:
    return {f.name: getattr(run, f.name) for f in fields(run)} | {
        "reason": mask_text(run.reason), "filter": instants_as_beijing_text(run.filter)}  # its bounds kept in UTC


def _visible(identity: Identity, run: ReplayRun) -> bool:
    """Operators see every run; a sector administrator the runs confined to their own sector."""
    if identity.has(Role.OPERATOR):
        return True
    named = {run.filter.get("sector"), *(run.filter.get("sectors") or ())} - {None}
    return bool(named) and named <= {identity.sector}


def _audit(request: Request, identity: Identity, action: str, subject: str, detail: dict[str, Any],
           outcome: str, sector: str | None = None, case_no: str | None = None) -> None:
    """The action's own record: what the middleware's cannot hold (reason, filter, counts)."""
    _ledger(request).audit(f"identity:{identity.id}", action, subject, {"name": identity.name, **detail},
                           sector or identity.sector, outcome=outcome, case_no=case_no)


def _continue_in_background(desk: DeadLetterDesk, run_id: int) -> None:
    """Start working through the run now; the scheduled job `replay-runs` finishes it if this process cannot
    (two continuing at once never send a message twice: the desk's batches are conditional updates)."""
    def work() -> None:
        try:
            desk.continue_replay(run_id)
        except Exception:  # noqa: BLE001 - the run stays unfinished and the scheduled job takes it up
            log.exception("replay run interrupted; the scheduled job will continue it", run_id=run_id)

    threading.Thread(target=work, name=f"replay-run-{run_id}", daemon=True).start()


# --- dead letters ------------------------------------------------------------------------------------------


@router.get("/dead-letters", response_model=Page[DeadLetterOut], responses=problem_doc(401, 403, 422),
            summary="检索死信")
def list_dead_letters(request: Request, identity: Reader, query: Annotated[ListQuery, Query()]) -> dict[str, Any]:
    """投递失败且不再自动重试的消息（死信），按部门、错误类别、时间等筛选、排序并分页（`next_cursor` 取下一页）。
    部门系统管理员只看到本部门的。只读。"""
    status = None if query.status == "any" else query.status
    page = _desk(request).page(_filter(identity, query, status), sort=query.sort, limit=query.limit,
                               cursor=query.cursor)
    return {"items": [_letter(letter) for letter in page.items], "total": page.total,
            "next_cursor": page.next_cursor}


@router.get("/dead-letters/counts", response_model=list[CountOut], responses=problem_doc(401, 403, 422),
            summary="死信计数")
def count_dead_letters(request: Request, identity: Reader, query: Annotated[CountQuery, Query()]) -> list[Any]:
    """符合筛选条件的死信数量，按部门和错误类别汇总。只读。"""
    status = None if query.status == "any" else query.status
    counts = _desk(request).counts(_filter(identity, query, status))
    return [{"sector": sector, "error_class": error_class, "count": count} for sector, error_class, count in counts]


@router.get("/dead-letters/{dead_letter_id}", response_model=DeadLetterWhole, responses=problem_doc(401, 403, 404),
            summary="查看死信")
def show_dead_letter(dead_letter_id: RowIdInPath, request: Request, identity: Reader,
                     unmasked: Annotated[bool, Query(description="operators and the sector's own "
                                                                 "administrator: plain, audited")] = False
                      ) -> dict[str, Any]:
    """一条死信的全部：消息内容、渲染后的请求、每次尝试，以及办件的时间线。只读。"""
    desk = _desk(request)
    letter = desk.get(dead_letter_id, _scope(identity))
    if unmasked:
        if not may_unmask(identity, letter.sector):
            raise NotAllowed(UNMASKED_ONLY)
        # Audited before it is answered: when the audit log cannot take the record, nothing is shown.
        _audit(request, identity, "read unmasked dead letter", f"dead_letter:{letter.id}",
               {"fields": [*PERSONAL_PARTS, "timeline"]}, "shown", letter.sector, letter.case_no)
    timeline = [_event(e, masked=not unmasked) for e in desk.timeline(letter.case_no)]
    return {**_letter(letter, masked=not unmasked), "masked": not unmasked, "timeline": timeline}


@router.post("/dead-letters/{dead_letter_id}/replay", response_model=DeadLetterOut,
             responses=problem_doc(401, 403, 404, 409, 422),
             summary="重放死信")
def replay_dead_letter(dead_letter_id: RowIdInPath, body: ReplayIn, request: Request,
                       identity: Reader) -> dict[str, Any]:
    """用原幂等键把一条死信的消息再投递一次，部门系统会识别重复。需写明原因，记入审计。
    已重放或已丢弃的死信为 409。"""
    reason = _required(body.reason)
    letter = _desk(request).replay(dead_letter_id, by=f"identity:{identity.id}", reason=reason,
                                   mapping=body.mapping, scope=_scope(identity))
    _audit(request, identity, "ops replay dead letter", f"dead_letter:{letter.id}",
           {"reason": reason, "mapping": body.mapping, "idempotency_key": letter.idempotency_key},
           "replayed", letter.sector, letter.case_no)
    return _letter(letter)


@router.post("/dead-letters/{dead_letter_id}/discard", response_model=DeadLetterOut,
             responses=problem_doc(401, 403, 404, 409, 422),
             summary="丢弃死信")
def discard_dead_letter(dead_letter_id: RowIdInPath, body: DiscardIn, request: Request,
                        identity: Operator) -> dict[str, Any]:
    """永久丢弃一条死信，它不会再被重放。需写明原因，记入审计。状态不允许时为 409。"""
    reason = _required(body.reason)
    letter = _desk(request).discard_one(dead_letter_id, by=f"identity:{identity.id}", reason=reason,
                                        case_outcome=body.case_outcome)
    _audit(request, identity, "ops discard dead letter", f"dead_letter:{letter.id}",
           {"reason": reason, "case_outcome": body.case_outcome}, "discarded", letter.sector, letter.case_no)
    return _letter(letter)


# --- in bulk -----------------------------------------------------------------------------------------------


@router.post("/replays", status_code=202, response_model=ReplayRunOut,
             responses={200: {"model": PlanOut, "description": "试运行（dry_run）：将重放的数量和清单"},
                        **problem_doc(401, 403, 422)},
             summary="批量重放死信")
def replay_many(body: BulkReplayIn, request: Request, response: Response, identity: Reader) -> Any:
    """重放符合筛选条件的死信：`dry_run` 只返回数量和清单（200）；否则开始一次后台重放（202，`Location` 指向进度）。
    需写明原因，记入审计。不是幂等操作：每次调用开始一次新的批量重放。"""
    desk, chosen = _desk(request), _bulk_filter(identity, body.filter)
    if body.dry_run:
        plan = desk.plan(chosen)
        _audit(request, identity, "ops replay dry run", "dead_letters", {"filter": chosen.public()},
               f"{plan.count} would be replayed")
        return JSONResponse(jsonable_encoder(_plan(plan)))
    reason = _required(body.reason)
    run = desk.start_replay(chosen, by=f"identity:{identity.id}", reason=reason, mapping=body.mapping)
    _audit(request, identity, "ops replay many", f"replay_run:{run.id}",
           {"filter": chosen.public(), "reason": reason, "mapping": body.mapping},
           f"run {run.id} started: {run.total} to replay")
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


@router.post("/discards", response_model=PlanOut | DiscardedOut, responses=problem_doc(401, 403, 422),
             summary="批量丢弃死信")
def discard_many(body: BulkDiscardIn, request: Request, identity: Operator) -> Any:
    """丢弃符合筛选条件的死信；`dry_run` 只返回数量。需写明原因，记入审计。"""
    desk, chosen = _desk(request), _bulk_filter(identity, body.filter)
    if body.dry_run:  # every dead letter matching (a replay's plan leaves out those it could not send)
        first = desk.page(chosen, sort="created_at", limit=SAMPLE)
        _audit(request, identity, "ops discard dry run", "dead_letters", {"filter": chosen.public()},
               f"{first.total} would be discarded")
        return _plan(ReplayPlan(first.total, first.items))
    reason = _required(body.reason)
    if body.case_outcome is None:
        raise BadInput(f"缺少 case_outcome，应为以下之一：{'、'.join(DISCARD_OUTCOMES)}")
    done = desk.discard(chosen, by=f"identity:{identity.id}", reason=reason, case_outcome=body.case_outcome)
    _audit(request, identity, "ops discard many", "dead_letters",
           {"filter": chosen.public(), "reason": reason, "case_outcome": body.case_outcome},
           f"{done.count} discarded, {len(done.kept)} kept")
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
    if unmasked and not may_unmask(identity, identity.sector or ""):
        raise NotAllowed(UNMASKED_ONLY)
    journey = _journeys(request).journey(case_no, scope=_scope(identity), masked=not unmasked,
                                         reader=f"identity:{identity.id}", reader_name=identity.name)
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
        (NotDiscardable, 409, "not-discardable", "该死信不能丢弃（已处理，或办件不能按所选方式处理）"),
        (ReasonRequired, 422, "reason-required", "必须说明原因"),
        (BadInput, 422, "invalid-filter", "筛选条件、排序或游标无法使用"),
        (UnknownDelivery, 404, "webhook-delivery-not-found", "没有该推送记录"),
        (NotRedeliverable, 409, "not-redeliverable", "该推送不能重发"),
    ])
