"""The dead-letter desk's actions as an identity takes them, each with its own audit record: one function per
action, called alike by every door (the API, ops/api.py; the console) so none holds logic the other lacks.

The desk (ops/dead_letters.py) does the work; this module adds who may (a sector administrator acts for their
own sector only: `scope_of`, `visible`) and the record the middleware's cannot hold — the reason, the filter,
the mapping, the outcome (`audit`). The CLI is audited by its root (gateway/cli/audit.py) and calls the desk.

The doors share what turns their input into the desk's terms, too: `letter_filter` (a filter form or query, in
Beijing time, scoped to the caller), `required` (a reason), `causes_page` (one page of the causes), and
`continue_in_background` (a run started by a request carries on in a thread).

The CSV export (`export_csv`) is counted and bounded before it starts (MAX_EXPORT rows, else BadInput: narrow
the filter), audited (who, filter, count), masked always, UTF-8 with a BOM (Excel reads the Chinese), times in
Beijing, and safe to open in a spreadsheet: a cell starting with = + - @ tab or CR is prefixed with '.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from gateway.audit.ledger import Ledger
from gateway.cases.views import event_view
from gateway.domain.case import CaseEvent
from gateway.domain.clock import SHANGHAI, as_utc, instants_as_beijing_text
from gateway.domain.roles import UNMASKED_ONLY, Identity, NotAllowed, Role, may_unmask
from gateway.observability.logs import mask_text, mask_value
from gateway.persistence.keyset import Keyset, Slice
from gateway.persistence.repository import DeadLetter
from gateway.persistence.tables import MAX_ROW_ID
from ops.causes import Cause
from ops.dead_letters import (
    REASON_REQUIRED,
    BadInput,
    DeadLetterDesk,
    DeadLetterFilter,
    Discarded,
    ReasonRequired,
    ReplayPlan,
    ReplayRun,
    ReplayRunNotFound,
)

__all__ = ["CAUSES", "EXPORT_COLUMNS", "MAX_EXPORT", "FilterFields", "audit", "cancel_replay", "causes_page",
           "continue_in_background", "csv_lines", "discard_many", "discard_one", "event_shown", "export_csv",
           "from_beijing", "letter_view",
           "letter_filter", "plan_discard", "plan_replay", "read_unmasked", "replay_one", "required", "scope_of",
           "start_replay", "visible"]

log = structlog.get_logger("yiwang.ops.letters")

MAX_EXPORT = 100_000  # rows of one CSV export
SAMPLE = 20  # dead letters a dry run shows
# Personal parts of a letter an unmasked read shows (its timeline too): named in the read's audit record.
PERSONAL_PARTS = ("error_message", "canonical_payload", "rendered_request", "last_response", "history",
                  "replay_reason", "discard_reason")
EXPORT_COLUMNS = ("id", "case_no", "sector", "operation", "error_class", "cause", "error_message", "attempts",
                  "deliveries", "bundle_version", "status", "created_at", "replayed_at", "replayed_by",
                  "replay_run_id", "discarded_at", "discarded_by", "case_outcome", "superseded_at")
BOM = "\ufeff"
# Causes, the largest first, then the one whose oldest letter is older (a group's oldest letter names it alone):
# (MAX_ROW_ID - count, sample id), for a key of ints that grows along the list (a cursor holds no long text).
CAUSES = Keyset("dead-letter-causes", (int, int))
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _as_is(value: Any) -> Any:
    return value


def letter_view(letter: DeadLetter, masked: bool = True, encode: Callable[[Any], Any] = _as_is) -> dict[str, Any]:
    """A letter as the API (`encode`: JSON-ready) and the console show it: its personal parts masked unless `masked`
    is False. Kept in UTC: each attempt's `at`, and the canonical message's instants (`case.accepted_at`); the
    request as rendered and the sector's answer are shown as they went and came, byte for byte."""
    view: dict[str, Any] = encode({f.name: getattr(letter, f.name) for f in fields(letter)})
    view.update({part: instants_as_beijing_text(view[part]) for part in ("history", "canonical_payload")})
    if masked:
        view.update({part: mask_value(view.get(part)) for part in PERSONAL_PARTS})
    return view


def event_shown(event: CaseEvent, masked: bool, encode: Callable[[Any], Any] = _as_is) -> dict[str, Any]:
    """A case event beside a letter: masked as /v1/cases/{case_no}/events shows it, or whole."""
    view = event_view(event)
    return view if masked else {**view, "reason": event.reason, "data": encode(dict(event.data))}


def actor_of(identity: Identity) -> str:
    return f"identity:{identity.id}"


def audit(ledger: Ledger, identity: Identity, action: str, subject: str, detail: dict[str, Any], outcome: str,
          sector: str | None = None, case_no: str | None = None) -> None:
    """The action's own record: what the middleware's cannot hold (reason, filter, counts)."""
    ledger.audit(actor_of(identity), action, subject, {"name": identity.name, **detail}, sector or identity.sector,
                 outcome=outcome, case_no=case_no)


def scope_of(identity: Identity, sector: str | None = None) -> frozenset[str] | None:
    """The sectors the caller acts for: None (all) for operators, their own for a sector administrator —
    who is refused a filter naming another sector."""
    if identity.has(Role.OPERATOR):
        return None
    if sector is not None and sector != identity.sector:
        raise NotAllowed(f"不是部门 {sector} 的管理员")
    return frozenset({identity.sector}) if identity.sector else frozenset()


def visible(identity: Identity, run: ReplayRun) -> bool:
    """Operators see every run; a sector administrator the runs confined to their own sector."""
    if identity.has(Role.OPERATOR):
        return True
    named = {run.filter.get("sector"), *(run.filter.get("sectors") or ())} - {None}
    return bool(named) and named <= {identity.sector}


class FilterFields(Protocol):
    """Which dead letters, as a door takes them in (the API's query or body, the console's form)."""

    sector: str | None
    version: str | None
    matter: str | None
    case_no: str | None
    error_class: str | None
    since: datetime | None
    until: datetime | None
    min_attempts: int | None
    max_attempts: int | None
    correlation_id: str | None
    cause: str | None
    text: str | None


def from_beijing(value: datetime | None) -> datetime | None:
    """An instant as people give it, in UTC: times without a zone are Beijing time."""
    if value is None:
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=SHANGHAI)).astimezone(UTC)


def letter_filter(identity: Identity, given: FilterFields, status: str | None = "dead",
                  ids: Iterable[int] | None = None) -> DeadLetterFilter:
    """The desk's filter for what a door was given, confined to the caller's sectors (`scope_of`)."""
    chosen = frozenset(ids or ())
    return DeadLetterFilter(
        sector=given.sector, sectors=scope_of(identity, given.sector), bundle_version=given.version,
        matter_code=given.matter, case_no=given.case_no, error_class=given.error_class,
        created_from=from_beijing(given.since), created_to=from_beijing(given.until),
        min_attempts=given.min_attempts, max_attempts=given.max_attempts,
        correlation_id=given.correlation_id, cause=given.cause, text=given.text,
        status=status,  # type: ignore[arg-type]  # checked by the doors' Literal
        ids=chosen or None)


def required(reason: str) -> str:
    """A reason, stripped; ReasonRequired when blank."""
    if not reason.strip():
        raise ReasonRequired(REASON_REQUIRED)
    return reason.strip()


def causes_page(desk: DeadLetterDesk, chosen: DeadLetterFilter, cursor: str | None,
                limit: int) -> tuple[Slice[Cause], int]:
    """One page of the matching letters' causes (after `cursor`, a CAUSES cursor) and how many causes in all."""
    causes = desk.causes(chosen)
    return CAUSES.seek(causes, _cause_key, CAUSES.decode(cursor), limit), len(causes)


def _cause_key(cause: Cause) -> tuple[int, int]:
    return MAX_ROW_ID - cause.count, cause.sample_id


def continue_in_background(desk: DeadLetterDesk, run_id: int) -> None:
    """Start working through the run now; the scheduled job `replay-runs` finishes it if this process cannot
    (two continuing at once never send a message twice: the desk's batches are conditional updates)."""
    def work() -> None:
        try:
            desk.continue_replay(run_id)
        except Exception:  # noqa: BLE001 - the run stays unfinished and the scheduled job takes it up
            log.exception("replay run interrupted; the scheduled job will continue it", run_id=run_id)

    threading.Thread(target=work, name=f"replay-run-{run_id}", daemon=True).start()


# --- one letter ---------------------------------------------------------------------------------------------


def read_unmasked(desk: DeadLetterDesk, ledger: Ledger, identity: Identity, dead_letter_id: int) -> DeadLetter:
    """The letter, for a reader who may see it plain: audited before it is answered (when the audit log cannot
    take the record, nothing is shown)."""
    letter = desk.get(dead_letter_id, scope_of(identity))
    if not may_unmask(identity, letter.sector):
        raise NotAllowed(UNMASKED_ONLY)
    audit(ledger, identity, "read unmasked dead letter", f"dead_letter:{letter.id}",
          {"fields": [*PERSONAL_PARTS, "timeline"]}, "shown", letter.sector, letter.case_no)
    return letter


def replay_one(desk: DeadLetterDesk, ledger: Ledger, identity: Identity, dead_letter_id: int, *, reason: str,
               mapping: str = "active") -> DeadLetter:
    letter = desk.replay(dead_letter_id, by=actor_of(identity), reason=reason, mapping=mapping,
                         scope=scope_of(identity))
    audit(ledger, identity, "ops replay dead letter", f"dead_letter:{letter.id}",
          {"reason": reason, "mapping": mapping, "idempotency_key": letter.idempotency_key},
          "replayed", letter.sector, letter.case_no)
    return letter


def discard_one(desk: DeadLetterDesk, ledger: Ledger, identity: Identity, dead_letter_id: int, *, reason: str,
                case_outcome: str) -> DeadLetter:
    letter = desk.discard_one(dead_letter_id, by=actor_of(identity), reason=reason, case_outcome=case_outcome)
    audit(ledger, identity, "ops discard dead letter", f"dead_letter:{letter.id}",
          {"reason": reason, "case_outcome": case_outcome}, "discarded", letter.sector, letter.case_no)
    return letter


# --- many ---------------------------------------------------------------------------------------------------


def plan_replay(desk: DeadLetterDesk, ledger: Ledger, identity: Identity, chosen: DeadLetterFilter) -> ReplayPlan:
    plan = desk.plan(chosen)
    audit(ledger, identity, "ops replay dry run", "dead_letters", {"filter": chosen.public()},
          f"{plan.count} would be replayed")
    return plan


def start_replay(desk: DeadLetterDesk, ledger: Ledger, identity: Identity, chosen: DeadLetterFilter, *,
                 reason: str, mapping: str = "active") -> ReplayRun:
    """Record the run and freeze its letters; the caller sees to its continuing (a thread, the scheduled job)."""
    run = desk.start_replay(chosen, by=actor_of(identity), reason=reason, mapping=mapping)
    audit(ledger, identity, "ops replay many", f"replay_run:{run.id}",
          {"filter": chosen.public(), "reason": reason, "mapping": mapping},
          f"run {run.id} started: {run.total} to replay")
    return run


def cancel_replay(desk: DeadLetterDesk, ledger: Ledger, identity: Identity, run_id: int, *,
                  reason: str) -> tuple[ReplayRun, int]:
    """Cancel a running bulk replay (ops.dead_letters.DeadLetterDesk.cancel_replay). A sector administrator
    cancels only runs they started themselves; another sector's run is as unknown as one that never was."""
    run = desk.run(run_id)
    if not visible(identity, run):
        raise ReplayRunNotFound(run_id)
    if not identity.has(Role.OPERATOR) and run.requested_by != actor_of(identity):
        raise NotAllowed("部门系统管理员只能取消自己发起的批量重放")
    run, released = desk.cancel_replay(run_id, by=actor_of(identity), reason=reason)
    audit(ledger, identity, "ops cancel replay", f"replay_run:{run.id}", {"reason": reason, "filter": run.filter},
          f"run {run.id} cancelled: {run.replayed} replayed, {released} released of {run.total}")
    return run, released


def plan_discard(desk: DeadLetterDesk, ledger: Ledger, identity: Identity, chosen: DeadLetterFilter) -> ReplayPlan:
    """Every dead letter matching (a replay's plan leaves out those it could not send): how many, the first."""
    first = desk.page(chosen, sort="created_at", limit=SAMPLE)
    audit(ledger, identity, "ops discard dry run", "dead_letters", {"filter": chosen.public()},
          f"{first.total} would be discarded")
    return ReplayPlan(first.total, first.items)


def discard_many(desk: DeadLetterDesk, ledger: Ledger, identity: Identity, chosen: DeadLetterFilter, *,
                 reason: str, case_outcome: str) -> Discarded:
    done = desk.discard(chosen, by=actor_of(identity), reason=reason, case_outcome=case_outcome)
    audit(ledger, identity, "ops discard many", "dead_letters",
          {"filter": chosen.public(), "reason": reason, "case_outcome": case_outcome},
          f"{done.count} discarded, {len(done.kept)} kept")
    return done


# --- the CSV export -----------------------------------------------------------------------------------------


def bounded_count(desk: DeadLetterDesk, chosen: DeadLetterFilter) -> int:
    """How many an export of `chosen` writes; BadInput (nothing read) above MAX_EXPORT."""
    count = desk.count(chosen)
    if count > MAX_EXPORT:
        raise BadInput(f"符合条件的死信有 {count} 条，超过导出上限 {MAX_EXPORT} 条：请缩小筛选范围")
    return count


def export_csv(desk: DeadLetterDesk, ledger: Ledger, identity: Identity, chosen: DeadLetterFilter) -> Iterator[str]:
    """The matching letters as CSV text, line by line (the BOM first), counted, bounded and audited before the
    first line: a refused export (too many) writes nothing and records nothing."""
    count = bounded_count(desk, chosen)
    audit(ledger, identity, "ops export dead letters", "dead_letters", {"filter": chosen.public()},
          f"{count} exported")
    return csv_lines(desk.letters(chosen))


def csv_lines(letters: Iterable[DeadLetter]) -> Iterator[str]:
    """The CSV text: a BOM and the header, then one line per letter, personal data masked."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(cells: Iterable[Any]) -> str:
        writer.writerow(cells)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield BOM + line(EXPORT_COLUMNS)
    for letter in letters:
        yield line(_cell(name, getattr(letter, name)) for name in EXPORT_COLUMNS)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name.endswith("_at"):
        return f"{as_utc(value).astimezone(SHANGHAI):%Y-%m-%d %H:%M:%S}"  # Beijing time, as the column says
    text = mask_text(str(value)) if name == "error_message" else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text  # a spreadsheet would run it as a formula
