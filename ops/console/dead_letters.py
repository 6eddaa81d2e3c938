"""The console's dead letters and replay runs: `/console/dead-letters`, `/console/replays`, `/console/discards`.

What `/v1/ops` (ops/api.py) offers on the same `DeadLetterDesk` (ops/dead_letters.py), as pages:
- the list: a filter form (GET), counts by sector and error class (each a link setting the filter), a table
  paged by the desk's cursor (上一页 goes back along the cursors the links carry), a checkbox per letter;
- one letter's whole story (canonical message, rendered request, every attempt, the sector's last answer, the
  case's timeline), masked; plain only for `may_unmask` roles, audited BEFORE it is shown, under the same
  action name as the API's `?unmasked=true`; forms to replay it, discard it (operators), and — for an identity
  that also holds the window role — correct its case at the window (`CaseService.correct`, as the API);
- bulk replay and discard in two steps: a plan page showing the count and the first letters (the selection's
  ids or the filter carried in hidden fields), then the confirmation, which freezes the set (the desk's
  `start_replay` / `discard`); a run continues in a thread started here and in the scheduled job `replay-runs`;
- the letters grouped by cause (`/console/dead-letters/causes`, paged as the API pages them): each group links to
  the list filtered by it and offers its replay (and, for operators, discard) through the same plan/confirm;
- the list's CSV export (`/console/dead-letters/export.csv`, the API's: bounded, masked, audited);
- the runs, newest first, and one run's progress, refreshed by htmx every second while it runs; a running run is
  cancelled from its page (reason required): what it replayed stays replayed, the rest is dead again.

Who: as the API — operators everything; a sector administrator their own sector only (another sector's letter
is 404, a filter naming another sector 403, another sector's run 404), replays yes, discards no. Every change
goes through ops/letter_actions.py — the functions the API calls, which write the action's own audit record — or
the case service; the `AuditTrail` middleware records each POST besides. Scope, filter and run visibility are
letter_actions' too, so the two doors cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.cases.service import CaseService, Correction
from gateway.domain.case import Actor, ActorKind
from gateway.domain.clock import SHANGHAI, instants_as_beijing_text
from gateway.domain.roles import Identity, NotAllowed, Role, may_unmask
from gateway.http.text_fields import typed
from gateway.persistence.keyset import MAX_CURSOR, Keyset
from gateway.persistence.tables import MAX_ROW_ID
from ops import letter_actions as actions
from ops.causes import MAX_CAUSE
from ops.console.web import PREFIX, Csrf, entered, ledger_of, render
from ops.dead_letters import MAX_TEXT, BadInput, DeadLetterDesk, DeadLetterFilter, ReplayRun, ReplayRunNotFound

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Letters = Annotated[Identity, Depends(entered("dead-letters"))]
Runs = Annotated[Identity, Depends(entered("replays"))]
RowIdInPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
RUNS = Keyset("replay-runs", (int,), descending=True)  # newest first, as GET /v1/ops/replays pages them
PAGE_SIZE = 50
MAX_IDS = 1000
MAX_TRAIL = 50  # how many pages back 上一页 reaches
# A letter's parts that may hold ID and phone numbers: masked unless the reader may see them (as ops/api.py).
PERSONAL_PARTS = actions.PERSONAL_PARTS
FILTER_FIELDS = ("sector", "version", "matter", "case_no", "error_class", "since", "until", "min_attempts",
                 "max_attempts", "correlation_id", "cause", "text")
STATUS_NAMES = {"dead": "死信（待处理）", "replayed": "已重放", "discarded": "已丢弃", "superseded": "已被新一轮取代",
                "any": "全部"}
OUTCOMES = {"back_office": "转后台办理：由该部门的工作人员通过后台接口办理",
            "return": "退回申请人：连同原因退回，申请人可修改后重新提交",
            "void": "作废：该事项（主办或唯一事项时为整个办件）作废"}
RUN_STATUS = {"running": "进行中", "done": "已完成", "cancelled": "已取消"}
MAPPINGS = {"active": "当前启用的映射版本", "original": "消息最初渲染时的映射版本"}
Reason = Annotated[str, typed("原因", multiline=True, blank=""), Form(max_length=500)]
Mapping = Annotated[Literal["original", "active"], Form()]


# --- what comes in -----------------------------------------------------------------------------------------


class LetterFilterIn(BaseModel):
    """The filter form's fields (GET), carried on as hidden fields into a plan and its confirmation. A blank
    field is no condition: a form sends every field."""

    model_config = ConfigDict(extra="ignore")

    sector: str | None = Field(default=None, min_length=1, max_length=64)
    version: str | None = Field(default=None, min_length=1, max_length=64)
    matter: str | None = Field(default=None, pattern=r"^[0-9A-Z]{31}$")
    case_no: str | None = Field(default=None, min_length=1, max_length=50)
    error_class: str | None = Field(default=None, min_length=1, max_length=32)
    since: datetime | None = None  # Beijing time, as the datetime-local field sends it
    until: datetime | None = None
    min_attempts: int | None = Field(default=None, ge=0, le=10_000)  # no field: carried from a link only
    max_attempts: int | None = Field(default=None, ge=0, le=10_000)
    correlation_id: str | None = Field(default=None, min_length=1, max_length=64)
    cause: str | None = Field(default=None, min_length=1, max_length=MAX_CAUSE)  # a group of the causes page
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)  # a part of the cause

    @model_validator(mode="before")
    @classmethod
    def _blank_is_none(cls, given: Any) -> Any:
        if isinstance(given, dict):
            return {k: (None if isinstance(v, str) and not v.strip() else v) for k, v in given.items()}
        return given

    @model_validator(mode="after")
    def _in_order(self) -> LetterFilterIn:
        since, until = actions.from_beijing(self.since), actions.from_beijing(self.until)
        if since is not None and until is not None and since >= until:
            raise ValueError("起始时间应早于截止时间")
        if self.min_attempts is not None and self.max_attempts is not None and self.min_attempts > self.max_attempts:
            raise ValueError("最少尝试次数不能大于最多尝试次数")
        return self

    def query(self) -> dict[str, str]:
        """The fields set, as the filter form sends them (for links and hidden fields)."""
        shown = {name: getattr(self, name) for name in FILTER_FIELDS}
        return {k: _beijing_field(v) if isinstance(v, datetime) else str(v) for k, v in shown.items() if v is not None}


class ListIn(LetterFilterIn):
    status: Literal["dead", "replayed", "discarded", "superseded", "any"] = "dead"
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR)
    trail: list[str] = Field(default_factory=list, max_length=MAX_TRAIL)  # the cursors of the pages before


class ChosenIn(LetterFilterIn):
    """A bulk action's letters: the checked ids (`which=selected`) or everything the filter matches."""

    which: Literal["selected", "all"] = "all"
    ids: list[Annotated[int, Field(ge=1, le=MAX_ROW_ID)]] = Field(default_factory=list, max_length=MAX_IDS)


class CausesIn(LetterFilterIn):
    status: Literal["dead", "replayed", "discarded", "superseded", "any"] = "dead"
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR)
    trail: list[str] = Field(default_factory=list, max_length=MAX_TRAIL)


class ExportIn(LetterFilterIn):
    status: Literal["dead", "replayed", "discarded", "superseded", "any"] = "dead"


class RunsIn(BaseModel):
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR)
    trail: list[str] = Field(default_factory=list, max_length=MAX_TRAIL)


# --- helpers -----------------------------------------------------------------------------------------------


def _desk(request: Request) -> DeadLetterDesk:
    return cast(DeadLetterDesk, request.app.state.dead_letter_desk)  # set by gateway.bootstrap.app


def _beijing_field(value: datetime) -> str:
    """An instant as a datetime-local field holds it: Beijing time, no zone."""
    return (value.astimezone(SHANGHAI) if value.tzinfo is not None else value).strftime("%Y-%m-%dT%H:%M:%S")


def _filter(identity: Identity, given: LetterFilterIn, status: str | None = "dead",
            ids: list[int] | None = None) -> DeadLetterFilter:
    return actions.letter_filter(identity, given, status, ids)


def _chosen(identity: Identity, given: ChosenIn) -> DeadLetterFilter:
    """Bulk actions take dead letters only; "selected" with nothing checked is refused, not "everything"."""
    if given.which == "selected" and not given.ids:
        raise BadInput("没有勾选任何死信")
    return _filter(identity, given, "dead", given.ids if given.which == "selected" else None)


_required = actions.required


def _operator(identity: Identity) -> None:
    if not identity.has(Role.OPERATOR):
        raise NotAllowed("只有运维人员可以丢弃死信")


def _text(value: Any) -> str:
    """A JSON part as readable, indented text (autoescaped by the template)."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _link(path: str, **params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "", [])}
    return path + (f"?{urlencode(kept, doseq=True)}" if kept else "")


def _pages(path: str, base: dict[str, Any], cursor: str | None, trail: list[str],
           next_cursor: str | None) -> dict[str, str | None]:
    """上一页/下一页 for a forward-only cursor: each link carries the cursors of the pages before it."""
    back = None
    if cursor is not None:
        back = _link(path, **base, cursor=trail[-1] if trail else None, trail=trail[:-1])
    ahead = None
    if next_cursor is not None:
        ahead = _link(path, **base, cursor=next_cursor, trail=[*trail, cursor or ""][-MAX_TRAIL:])
    return {"previous": back, "next": ahead}


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


# --- dead letters ------------------------------------------------------------------------------------------


@router.get("/dead-letters", response_class=HTMLResponse)
def list_dead_letters(request: Request, me: Letters, query: Annotated[ListIn, Query()]) -> HTMLResponse:
    desk, status = _desk(request), None if query.status == "any" else query.status
    chosen = _filter(me, query, status)
    page = desk.page(chosen, limit=PAGE_SIZE, cursor=query.cursor or None)
    base = {**query.query(), "status": query.status}
    counts = [{"sector": s, "error_class": c, "count": n,
               "link": _link(PREFIX + "/dead-letters", **{**base, "sector": s, "error_class": c})}
              for s, c, n in desk.counts(chosen)]
    return render(request, "dead_letters.html", current="dead-letters", query=query, kept=query.query(),
                  letters=[actions.letter_view(x) for x in page.items], total=page.total, counts=counts,
                  statuses=STATUS_NAMES, pages=_pages(PREFIX + "/dead-letters", base, query.cursor, query.trail,
                                                      page.next_cursor),
                  may_discard=me.has(Role.OPERATOR),
                  export=_link(PREFIX + "/dead-letters/export.csv", **base),
                  causes_link=_link(PREFIX + "/dead-letters/causes", **base))


@router.get("/dead-letters/causes", response_class=HTMLResponse)
def list_causes(request: Request, me: Letters, query: Annotated[CausesIn, Query()]) -> HTMLResponse:
    """The matching letters grouped by cause, paged as GET /v1/ops/dead-letters/causes pages them (the same
    order and cursor): each group links to its letters and offers its replay (and, for operators, discard)."""
    status = None if query.status == "any" else query.status
    found, total = actions.causes_page(_desk(request), _filter(me, query, status), query.cursor or None, PAGE_SIZE)
    base = {**query.query(), "status": query.status}
    causes = [{**asdict(c), "link": _link(PREFIX + "/dead-letters", **{**base, "cause": c.cause}) if c.cause else None}
              for c in found.items]
    next_cursor = None if found.next_key is None else actions.CAUSES.encode(found.next_key)
    return render(request, "causes.html", current="dead-letters", query=query, kept=query.query(), total=total,
                  causes=causes, statuses=STATUS_NAMES, may_discard=me.has(Role.OPERATOR),
                  pages=_pages(PREFIX + "/dead-letters/causes", base, query.cursor, query.trail, next_cursor))


@router.get("/dead-letters/export.csv", response_class=StreamingResponse)
def export_dead_letters(request: Request, me: Letters, query: Annotated[ExportIn, Query()]) -> StreamingResponse:
    """The list's letters as CSV, as GET /v1/ops/dead-letters/export.csv writes them (bounded, masked, audited)."""
    status = None if query.status == "any" else query.status
    lines = actions.export_csv(_desk(request), ledger_of(request), me, _filter(me, query, status))
    return StreamingResponse(lines, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="dead-letters.csv"'})


@router.get("/dead-letters/{dead_letter_id}", response_class=HTMLResponse)
def show_dead_letter(dead_letter_id: RowIdInPath, request: Request, me: Letters,
                     unmasked: Annotated[bool, Query()] = False,
                     done: Annotated[Literal["replayed", "discarded", "corrected"] | None, Query()] = None
                     ) -> HTMLResponse:
    desk = _desk(request)
    # Audited before it is shown: when the audit log cannot take the record, nothing is shown.
    letter = (actions.read_unmasked(desk, ledger_of(request), me, dead_letter_id) if unmasked
              else desk.get(dead_letter_id, actions.scope_of(me)))
    view = actions.letter_view(letter, masked=not unmasked)
    parts = {name: _text(view[name]) for name in ("canonical_payload", "rendered_request", "last_response")}
    return render(request, "dead_letter.html", current="dead-letters", letter=view, parts=parts,
                  history=view["history"] or [], unmasked=unmasked, done=done,
                  timeline=[actions.event_shown(e, masked=not unmasked) for e in desk.timeline(letter.case_no)],
                  may_unmask=may_unmask(me, letter.sector), may_discard=me.has(Role.OPERATOR),
                  may_correct=me.has(Role.WINDOW), outcomes=OUTCOMES, mappings=MAPPINGS)


def _back_to(dead_letter_id: int, done: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/dead-letters/{dead_letter_id}?done={done}", status_code=303)


@router.post("/dead-letters/{dead_letter_id}/replay")
def replay_dead_letter(dead_letter_id: RowIdInPath, request: Request, me: Letters, _: Csrf, reason: Reason = "",
                       mapping: Mapping = "active") -> RedirectResponse:
    letter = actions.replay_one(_desk(request), ledger_of(request), me, dead_letter_id, reason=_required(reason),
                                mapping=mapping)
    return _back_to(letter.id, "replayed")


@router.post("/dead-letters/{dead_letter_id}/discard")
def discard_dead_letter(dead_letter_id: RowIdInPath, request: Request, me: Letters, _: Csrf,
                        case_outcome: Annotated[Literal["back_office", "return", "void"], Form()],
                        reason: Reason = "") -> RedirectResponse:
    _operator(me)
    letter = actions.discard_one(_desk(request), ledger_of(request), me, dead_letter_id, reason=_required(reason),
                                 case_outcome=case_outcome)
    return _back_to(letter.id, "discarded")


Corrected = Annotated[str, typed("更正内容", blank=""), Form(max_length=200)]


@router.post("/dead-letters/{dead_letter_id}/correction")
def correct_case(dead_letter_id: RowIdInPath, request: Request, me: Letters, _: Csrf,
                 reason: Reason = "", name: Corrected = "", phone: Corrected = "", address: Corrected = "",
                 form_field: Annotated[str, Form(max_length=64, pattern=r"^[A-Za-z0-9_]*$")] = "",
                 form_value: Corrected = "") -> RedirectResponse:
    """更正 at the window, as POST /v1/cases/{case_no}/correction: the fields filled in, with the reason."""
    if not me.has(Role.WINDOW):
        raise NotAllowed("只有同时具有窗口角色的身份可以更正办件")
    letter = _desk(request).get(dead_letter_id, actions.scope_of(me))
    named: dict[str, Any] = {f"applicant.{k}": v for k, v in (("name", name), ("phone", phone),
                                                             ("address", address)) if v}
    if form_field:
        named[f"form.{form_field}"] = form_value or None
    if not named:
        raise BadInput("没有填写要更正的字段")
    service = cast(CaseService, request.app.state.case_service)  # set by gateway.bootstrap.app
    service.correct(letter.case_no, Correction(_required(reason), named), Actor(ActorKind.WINDOW, me.id))
    return _back_to(letter.id, "corrected")


# --- in bulk -----------------------------------------------------------------------------------------------


def _plan_context(given: ChosenIn) -> dict[str, Any]:
    return {"kept": given.query(), "which": given.which, "ids": given.ids if given.which == "selected" else []}


@router.post("/replays/plan", response_class=HTMLResponse)
def plan_replay(request: Request, me: Letters, _: Csrf, given: Annotated[ChosenIn, Form()]) -> HTMLResponse:
    chosen = _chosen(me, given)
    plan = actions.plan_replay(_desk(request), ledger_of(request), me, chosen)
    return render(request, "plan.html", current="dead-letters", kind="replay", count=plan.count,
                  letters=[actions.letter_view(x) for x in plan.sample], mappings=MAPPINGS, **_plan_context(given))


@router.post("/replays")
def replay_many(request: Request, me: Letters, _: Csrf, given: Annotated[ChosenIn, Form()], reason: Reason = "",
                mapping: Mapping = "active") -> RedirectResponse:
    desk, chosen, why = _desk(request), _chosen(me, given), _required(reason)
    run = actions.start_replay(desk, ledger_of(request), me, chosen, reason=why, mapping=mapping)
    if run.status != "done":
        actions.continue_in_background(desk, run.id)
    return RedirectResponse(f"{PREFIX}/replays/{run.id}", status_code=303)


@router.post("/discards/plan", response_class=HTMLResponse)
def plan_discard(request: Request, me: Letters, _: Csrf, given: Annotated[ChosenIn, Form()]) -> HTMLResponse:
    _operator(me)
    chosen = _chosen(me, given)
    first = actions.plan_discard(_desk(request), ledger_of(request), me, chosen)
    return render(request, "plan.html", current="dead-letters", kind="discard", count=first.count,
                  letters=[actions.letter_view(x) for x in first.sample], outcomes=OUTCOMES, **_plan_context(given))


@router.post("/discards", response_class=HTMLResponse)
def discard_many(request: Request, me: Letters, _: Csrf, given: Annotated[ChosenIn, Form()],
                 case_outcome: Annotated[Literal["back_office", "return", "void"], Form()],
                 reason: Reason = "") -> HTMLResponse:
    """The result is shown at once: a discard is not a run kept in the database to come back to."""
    _operator(me)
    done = actions.discard_many(_desk(request), ledger_of(request), me, _chosen(me, given), reason=_required(reason),
                                case_outcome=case_outcome)
    return render(request, "discarded.html", current="dead-letters", count=done.count, kept=done.kept,
                  outcome=OUTCOMES[case_outcome])


# --- runs --------------------------------------------------------------------------------------------------


@router.get("/replays", response_class=HTMLResponse)
def list_runs(request: Request, me: Runs, query: Annotated[RunsIn, Query()]) -> HTMLResponse:
    desk = _desk(request)
    before = RUNS.last_id(query.cursor or None)
    visible: list[ReplayRun] = []
    while len(visible) <= PAGE_SIZE:  # a sector administrator sees some runs only: read on until a page is full
        batch = desk.runs(PAGE_SIZE + 1, before_id=before)
        visible += [run for run in batch if actions.visible(me, run)]
        if len(batch) <= PAGE_SIZE:
            break
        before = batch[-1].id
    page = RUNS.cut(visible, PAGE_SIZE, lambda run: (run.id,))
    next_cursor = None if page.next_key is None else RUNS.encode(page.next_key)
    return render(request, "replays.html", current="replays", runs=page.items, mappings=MAPPINGS, states=RUN_STATUS,
                  pages=_pages(PREFIX + "/replays", {}, query.cursor, query.trail, next_cursor))


@router.get("/replays/{run_id}", response_class=HTMLResponse)
def show_run(run_id: RowIdInPath, request: Request, me: Runs,
             released: Annotated[int | None, Query(ge=0, le=MAX_ROW_ID)] = None) -> Response:
    """`released`: how many letters the cancel that redirected here released (the run keeps them as skipped)."""
    run = _desk(request).run(run_id)
    if not actions.visible(me, run):
        raise ReplayRunNotFound(run_id)  # another sector's run is as unknown as one that never was
    template = "_run_progress.html" if _htmx(request) else "replay_run.html"
    return render(request, template, current="replays", run=run, mappings=MAPPINGS, states=RUN_STATUS,
                  filter=instants_as_beijing_text(run.filter),
                  released=released if run.status == "cancelled" else None)


@router.post("/replays/{run_id}/cancel")
def cancel_run(run_id: RowIdInPath, request: Request, me: Runs, _: Csrf, reason: Reason = "") -> RedirectResponse:
    """Stop a running run, as POST /v1/ops/replays/{run_id}/cancel: what it replayed stays replayed, the rest is
    released (dead again); a sector administrator cancels only the runs they started."""
    run, released = actions.cancel_replay(_desk(request), ledger_of(request), me, run_id, reason=_required(reason))
    return RedirectResponse(f"{PREFIX}/replays/{run.id}?released={released}", status_code=303)
