"""A case's journey: everything that happened to one case, on one page, oldest first.

One merged timeline from what the gateway keeps about a case:

- `event`: the case's own events (gateway/cases: submitted, accepted, a task concluded, …);
- `message`: each outbox row written for it — operation, sector, idempotency key, status, round;
- `delivery`: each exchange with a sector in the message log (gateway/audit/ledger.py: sent, received);
- `attempt`: each call a dead letter's history holds (when, which failure, how long it took);
- `callback`: each callback the sector made about the case (in the message log, `subject` "callback");
- `notification`: each case event published for the hall and each webhook delivery of it (gateway/notifications);
- `dead_letter`: each dead letter of the case (id, class, status), and its replay, discard or superseding.

Found by case number, or by a correlation id (`case_of_correlation`: the id of the request or job that wrote an
outbox row, gateway/observability/correlation.py); `find` takes either, as `yiwang ops journey` and the console's
search do. `read(identity, …)` is the journey as an identity sees it — the API's and the console's one door: its
scope (`ops.letter_actions.scope_of`), and unmasking refused (`NotAllowed`) unless `may_unmask`.
`cases(…)` lists cases by state or overdue flag (the overview's figures lead there), newest first, paged, in the
same scope. A case this reader may not see is `CaseNotFound`, as one
that does not exist: a `scope` (a sector administrator's sectors) admits only a case with a message to one of
them, and then leaves out what belongs to other sectors (their messages, exchanges, callbacks, dead letters).

Personal data is masked (`gateway.observability.logs.mask_value`) unless `masked=False`; such a read is written
to the audit log (by `reader`) BEFORE anything is returned: when it cannot be written, nothing is shown.
The story is bounded, not paged: at most `MAX_ENTRIES` entries, the oldest, and `truncated` says there were more.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gateway.audit.ledger import MESSAGE, Filters, Ledger, LedgerRecord
from gateway.cases import service as cases
from gateway.cases.views import STATE_LABELS, event_view
from gateway.domain.case import OPEN_CASES, Case, CaseEvent
from gateway.domain.clock import as_utc, beijing_text
from gateway.domain.roles import UNMASKED_ONLY, Identity, NotAllowed, may_unmask
from gateway.observability.logs import mask_text, mask_value
from gateway.persistence import tables as t
from gateway.persistence.keyset import Key, Slice
from gateway.persistence.notification_tables import webhook_deliveries, webhook_subscriptions
from gateway.persistence.repository import CASE_LINES, CaseLine, DeadLetter, flagged_overdue, sent_to, with_message
from gateway.persistence.uow import UnitOfWork, UnitsOfWork
from ops.letter_actions import scope_of

__all__ = ["CASE_LINES", "KINDS", "MAX_ENTRIES", "CaseJourney", "CaseLine", "CaseNotFound", "CaseSummary", "Entry",
           "Journey"]

MAX_ENTRIES = 2000  # one case's story; a case with more (a sector polled for months) says `truncated`
# The kinds, in the order entries at the same instant are told (a message is written with its event, then sent).
KINDS = ("event", "message", "delivery", "attempt", "callback", "dead_letter", "notification")
_RANK = {kind: rank for rank, kind in enumerate(KINDS)}
UNMASKED_ACTION = "read unmasked journey"

TRIGGER_TITLES = {
    "submit": "申请已提交", "supplement": "已补齐补正材料", "withdraw": "申请已撤回", "accept": "已受理",
    "not_accept": "不予受理", "request_supplement": "要求补齐补正", "deem_accepted": "逾期视为受理",
    "start_processing": "开始办理", "suspend": "进入特别程序", "resume": "特别程序结束", "approve": "准予办理",
    "deny": "不予办理", "return": "已退件", "issue_certificate": "已出证", "deliver": "已送达", "close": "已办结",
    "supplement_expired": "补正超时驳回", "send_back": "退回补正", "continue": "补正完成，继续办理", "void": "已作废",
    "task_started": "部门开始办理", "task_concluded": "部门办结", "deadline_warning": "时限预警",
    "overdue": "已超期", "evaluate": "好差评", "correct": "已更正", "hand_to_back_office": "转部门后台办理",
    "task_cancelled": "部门事项已取消", "sector_told": "部门已确认取消", "certificate_fetched": "已取回部门证照",
}
LETTER_TITLES = {"replayed": "死信已重放", "discarded": "死信已丢弃", "superseded": "死信已被新一轮取代"}


class CaseNotFound(cases.CaseNotFound):
    """No such case, none this reader may see, or no case a correlation id belongs to: `case-not-found` (404)."""

    def __init__(self, message: str) -> None:
        LookupError.__init__(self, message)


@dataclass(frozen=True)
class Entry:
    at: datetime  # UTC
    kind: str  # one of KINDS
    title: str  # short, Chinese
    detail: dict[str, Any]  # JSON-able; personal data masked unless the journey is unmasked
    sector: str | None = None  # the sector it concerns; None: the case itself, the hall
    links: dict[str, int | str] = field(default_factory=dict)  # dead_letter_id, message_record_id, outbox_id, …


@dataclass(frozen=True)
class CaseSummary:
    case_no: str
    matter_code: str
    state: str
    state_label: str
    channel: str
    deadline: dict[str, Any] | None  # kind, due (a date), overdue
    tasks: list[dict[str, Any]]  # task_id, department, sector, state, round: those the reader may see


@dataclass(frozen=True)
class Journey:
    case: CaseSummary
    entries: list[Entry]  # oldest first
    truncated: bool  # more than MAX_ENTRIES happened: these are the oldest
    masked: bool


class CaseJourney:
    """Reads a case's journey from the case tables, the outbox, the dead letters, the message log and the
    notifications; writes only the audit record of an unmasked read."""

    def __init__(self, units: UnitsOfWork, ledger: Ledger, *, max_entries: int = MAX_ENTRIES) -> None:
        self.units, self.ledger, self.max_entries = units, ledger, max_entries

    def journey(self, case_no: str, *, scope: frozenset[str] | None = None, masked: bool = True,
                reader: str | None = None, reader_name: str | None = None) -> Journey:
        """The case's journey as `scope` (None: every sector) may see it. Unmasked only with a `reader` to
        audit: the record is written before the journey is returned."""
        if not masked and not reader:
            raise ValueError("an unmasked journey needs a reader to audit")
        limit = self.max_entries + 1
        with self.units(read_only=True) as work:
            case = work.cases.get(case_no)
            if case is None or (scope is not None and not _visible(work, case_no, scope)):
                raise CaseNotFound(f"没有编号为 {case_no} 的办件")
            outbox = _outbox_rows(work, case_no, limit)
            letters = work.dead_letters.page([t.dead_letters.c.case_no == case_no], [t.dead_letters.c.id], limit)
            hall = _notifications(work, case_no, limit)
        records = [(r, self.ledger.open_body(r)) for r in self.ledger.records(Filters(MESSAGE, case_no=case_no), limit)]
        if not masked:  # on record before anything is shown: no record, no reading
            assert reader is not None
            self.ledger.audit(reader, UNMASKED_ACTION, f"case:{case_no}", {"name": reader_name},
                              _one(scope), outcome="shown", case_no=case_no)
        entries = [*_events(case.events, masked), *_messages(outbox), *_exchanges(records, masked),
                   *_letters(letters, masked), *hall]
        visible = sorted((e for e in entries if scope is None or e.sector is None or e.sector in scope),
                         key=lambda e: (e.at, _RANK[e.kind]))
        return Journey(_summary(case, scope), visible[:self.max_entries], len(visible) > self.max_entries, masked)

    def read(self, identity: Identity, case_no: str, *, unmasked: bool = False) -> Journey:
        """The case's journey as `identity` may see it: a sector administrator only a case with a message to
        their sector, and only its part; plain only for who may unmask (else `NotAllowed`), audited first."""
        if unmasked and not may_unmask(identity, identity.sector or ""):
            raise NotAllowed(UNMASKED_ONLY)
        return self.journey(case_no, scope=scope_of(identity), masked=not unmasked,
                            reader=f"identity:{identity.id}", reader_name=identity.name)

    def find(self, wanted: str, *, scope: frozenset[str] | None = None) -> str:
        """The case `wanted` names: a case number (of a case `scope` may see), else a correlation id (a case
        number is never a correlation id the gateway makes). `CaseNotFound` when it is neither."""
        with self.units(read_only=True) as work:
            if _visible(work, wanted, scope):
                return wanted
        found = self.case_of_correlation(wanted)
        with self.units(read_only=True) as work:
            if _visible(work, found, scope):
                return found
        raise CaseNotFound(f"没有属于关联编号 {wanted[:80]} 的办件")

    def cases(self, *, state: str | None = None, overdue: bool = False, outbox: tuple[str, datetime] | None = None,
              scope: frozenset[str] | None = None, after: Key | None = None, limit: int = 50) -> Slice[CaseLine]:
        """Cases in `state` and/or open and flagged overdue (as the overview counts them) and/or with an outbox
        message of a kind at an instant (`("due", now)`: `with_message`), newest first, after the key `after`
        (CASE_LINES); with a `scope`, only cases with a message to one of its sectors."""
        c = t.cases.c
        where = [*([] if state is None else [c.state == state]),
                 *([c.state.in_(sorted(OPEN_CASES)), flagged_overdue()] if overdue else []),
                 *([] if outbox is None else [with_message(*outbox)]),
                 *([] if scope is None else [sent_to(scope)])]
        with self.units(read_only=True) as work:
            lines = work.cases.lines(where, after, limit + 1)
        return CASE_LINES.cut(lines, limit, lambda line: line.key)

    def case_of_correlation(self, correlation_id: str) -> str:
        """The case a correlation id belongs to: the case of the first outbox row written under it."""
        o = t.outbox.c
        with self.units(read_only=True) as work:
            found = work.conn.execute(select(o.case_no).where(o.correlation_id == correlation_id)
                                      .order_by(o.id).limit(1)).scalar()
        if found is None:
            raise CaseNotFound(f"没有属于关联编号 {correlation_id[:80]} 的办件")
        return str(found)


# --- each source as entries --------------------------------------------------------------------------------


def _summary(case: Case, scope: frozenset[str] | None) -> CaseSummary:
    state, deadline = str(case.state), case.deadline
    tasks = [{"task_id": task.task_id, "department": task.department, "sector": task.sector,
              "state": str(task.state), "round": task.round}
             for task in case.tasks if scope is None or task.sector is None or task.sector in scope]
    return CaseSummary(case.case_no, case.matter_code, state, STATE_LABELS.get(state, state), case.channel,
                       None if deadline is None else {"kind": str(deadline.kind), "due": deadline.due.isoformat(),
                                                      "overdue": deadline.overdue},
                       tasks)


def _events(events: Iterable[CaseEvent], masked: bool) -> Iterator[Entry]:
    for event in events:
        view = event_view(event)  # masked as /v1/cases/{case_no}/events shows it
        if not masked:
            view = {**view, "reason": event.reason, "data": _jsonable(dict(event.data))}
        del view["at"]
        trigger = str(event.trigger)
        title = TRIGGER_TITLES.get(trigger, trigger)
        if event.from_state != event.to_state:
            title += f"（{STATE_LABELS.get(str(event.to_state), str(event.to_state))}）"
        yield Entry(event.at, "event", title, view, links={"event_seq": event.seq})


def _visible(work: UnitOfWork, case_no: str, scope: frozenset[str] | None) -> bool:
    """The case exists and, with a `scope`, has a message to one of its sectors."""
    c = t.cases.c
    query = select(c.case_no).where(c.case_no == case_no, *([] if scope is None else [sent_to(scope)]))
    return work.conn.execute(query).first() is not None


def _outbox_rows(work: UnitOfWork, case_no: str, limit: int) -> list[dict[str, Any]]:
    o = t.outbox.c
    query = (select(o.id, o.sector, o.operation, o.task_id, o.idempotency_key, o.status, o.round, o.deliveries,
                    o.replays, o.correlation_id, o.bundle_version, o.created_at, o.done_at)
             .where(o.case_no == case_no).order_by(o.id).limit(limit))
    return [dict(row) for row in work.conn.execute(query).mappings()]


def _messages(rows: Iterable[dict[str, Any]]) -> Iterator[Entry]:
    """Outbox rows hold identifiers and states only: nothing to mask."""
    for row in rows:
        detail = {name: row[name] for name in ("operation", "task_id", "idempotency_key", "status", "round",
                                               "deliveries", "replays", "correlation_id", "bundle_version")}
        detail["done_at"] = beijing_text(as_utc(row["done_at"])) if row["done_at"] else None
        yield Entry(as_utc(row["created_at"]), "message", f"待发消息：{row['operation']}（{row['status']}）", detail,
                    row["sector"], {"outbox_id": row["id"]})


def _exchanges(records: Iterable[tuple[LedgerRecord, Any]], masked: bool) -> Iterator[Entry]:
    for record, body in records:
        opened = body if isinstance(body, dict) else {"body": body}
        detail = {"direction": record.action, "operation": record.subject, "outcome": record.outcome,
                  "idempotency_key": opened.get("idempotency_key"),
                  "body": mask_value(opened.get("body")) if masked else opened.get("body")}
        if record.subject == "callback":
            kind, title = "callback", f"部门回调（{record.outcome}）"
        elif record.action == "sent":
            kind, title = "delivery", f"已发送：{record.subject}"
        else:
            kind, title = "delivery", f"部门答复：{record.subject}（{record.outcome}）"
        yield Entry(record.at, kind, title, detail, record.sector, {"message_record_id": record.id})


def _letters(letters: Iterable[DeadLetter], masked: bool) -> Iterator[Entry]:
    def shown(value: Any) -> Any:
        return mask_value(value) if masked else value

    for letter in letters:
        born = letter.created_at
        assert born is not None  # a stored letter always has its time (None only in one not yet stored)
        links: dict[str, int | str] = {"dead_letter_id": letter.id}
        if letter.outbox_id is not None:
            links["outbox_id"] = letter.outbox_id
        yield Entry(born, "dead_letter", f"成为死信：{letter.operation}（{letter.error_class}）",
                    {"status": letter.status, "error_class": letter.error_class,
                     "error_message": shown(letter.error_message), "attempts": letter.attempts,
                     "deliveries": letter.deliveries, "bundle_version": letter.bundle_version,
                     "idempotency_key": letter.idempotency_key}, letter.sector, links)
        for number, call in enumerate(letter.history, 1):
            yield Entry(_instant(call.get("at"), born), "attempt",
                        f"第 {number} 次调用失败：{call.get('failure') or '未知'}",
                        {"failure": call.get("failure"), "message": shown(call.get("message")),
                         "elapsed_ms": call.get("elapsed_ms")}, letter.sector, dict(links))
        for status, at, detail in (
                ("replayed", letter.replayed_at, {"by": letter.replayed_by, "reason": shown(letter.replay_reason),
                                                  "replay_run_id": letter.replay_run_id}),
                ("discarded", letter.discarded_at, {"by": letter.discarded_by, "reason": shown(letter.discard_reason),
                                                    "case_outcome": letter.case_outcome}),
                ("superseded", letter.superseded_at, {})):
            if at is not None:
                yield Entry(at, "dead_letter", LETTER_TITLES[status], {"status": status, **detail}, letter.sector,
                            dict(links))


def _notifications(work: UnitOfWork, case_no: str, limit: int) -> list[Entry]:
    """The case's events as published for the hall, and each webhook delivery of them (identifiers and states
    only: nothing to mask but the receiver's error text)."""
    n, d, s = t.case_notifications.c, webhook_deliveries.c, webhook_subscriptions.c
    entries = [Entry(as_utc(row["published_at"] or row["at"]), "notification",
                     f"事件通知{'已发布' if row['status'] == 'published' else '待发布'}：{row['trigger']}",
                     {"seq": row["seq"], "trigger": row["trigger"], "to_state": row["to_state"],
                      "status": row["status"]}, links={"event_seq": row["seq"]})
               for row in work.conn.execute(select(t.case_notifications).where(n.case_no == case_no)
                                            .order_by(n.id).limit(limit)).mappings()]
    query = (select(webhook_deliveries, s.owner_id, s.owner_name)
             .join(webhook_subscriptions, s.id == d.subscription_id)
             .where(d.case_no == case_no).order_by(d.id).limit(limit))
    for row in work.conn.execute(query).mappings():
        trigger = row["event"].get("trigger")
        entries.append(Entry(as_utc(row["delivered_at"] or row["created_at"]), "notification",
                             f"推送大厅：{trigger}（{row['status']}）",
                             {"subscription_id": row["subscription_id"], "hall": row["owner_id"],
                              "hall_name": row["owner_name"], "seq": row["seq"], "trigger": trigger,
                              "status": row["status"], "attempts": row["attempts"],
                              "last_status": row["last_status"], "last_error": mask_text(row["last_error"] or "")
                              or None}, links={"webhook_delivery_id": row["id"], "event_seq": row["seq"]}))
    return entries


def _instant(value: Any, otherwise: datetime) -> datetime:
    """An attempt's `at` (ISO-8601 UTC text); a history without one is placed at its letter."""
    try:
        return as_utc(datetime.fromisoformat(str(value)))
    except ValueError:
        return otherwise


def _one(scope: frozenset[str] | None) -> str | None:
    """The sector an audit record names: a sector administrator's own."""
    return next(iter(sorted(scope))) if scope else None


def _jsonable(value: Any) -> Any:
    """An event's data as JSON (dates as ISO text)."""
    return json.loads(json.dumps(value, default=str))
