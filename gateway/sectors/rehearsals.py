"""Rehearsing a bundle version: its rehearsal file's items (`adapters.read_rehearsal`) sent to the sector's test
endpoint, each answer judged against what the sector team expects (`adapters.judge`).

`rehearse(target, items, run, now, messages)` returns the report `BundleStore.record_rehearsal` keeps:
    {"outcome": "passed" | "failed", "at": ISO UTC, "run": str, "passed": n, "total": m, "unreachable": bool,
     "items": [{"name", "operation", "idempotency_key", "passed", "reasons", "request", "answer"}],
               (an item asking about an earlier submit that got no reference is not sent: answer {"skipped": true})
     "cleanup": [{"item", "sector_ref", "cancelled" | "error"}] , "note": str | None}
Rules it keeps:
- every idempotency key starts `rehearsal:` (then the run's id and the item's number), so the sector and our
  message log tell a rehearsal from a case; no gateway case is created or touched;
- what a submit_case item created is cancelled at the end with the sector's reference from its answer, where the
  bundle has cancel_case (unless an item cancelled it already);
- requests and answers are shown with ID and phone numbers masked; an answer's body has credential-like fields
  masked (`shown_body`); a rendered request never holds credentials (kinds render without them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from adapters import Answer, DeliveryError, FailureClass, RegisteredAdapter, RehearsalItem, judge
from gateway.observability.logs import mask_value
from gateway.persistence.bundle_tables import FAILED, PASSED
from gateway.sectors.delivery import MessageLog, jsonable, logged_call

KEY_PREFIX = "rehearsal:"
Shown = Callable[[str], str]  # a sector's answer body as a person may see it (`gateway.sectors.calls.shown_body`)
_UNREACHABLE = (FailureClass.TRANSPORT.value, FailureClass.TIMEOUT.value)


class NoRehearsal(LookupError):
    """The version carries no rehearsal file: nothing to rehearse."""

    def __init__(self, sector: str, version: str) -> None:
        super().__init__(f"{sector} {version} 没有预演文件（bundle.yaml 的 rehearsal）")


def rehearse(target: RegisteredAdapter, items: Sequence[RehearsalItem], *, run: str, now: datetime,
             messages: MessageLog | None, shown_body: Shown) -> dict[str, Any]:
    """Send every item in order, judge each answer, cancel what was created; the report (module docstring)."""
    sent: list[dict[str, Any]] = []
    created: dict[str, tuple[str, Mapping[str, Any]]] = {}  # submit item -> (sector_ref, its canonical message)
    cancelled: set[str] = set()
    for number, item in enumerate(items, start=1):
        if item.from_item is not None and item.from_item not in created:  # its submit failed: nothing to ask about
            sent.append({"name": item.name, "operation": item.operation, "idempotency_key": None, "passed": False,
                         "reasons": [f"not sent: {item.from_item!r} got no sector_ref"], "request": None,
                         "answer": {"skipped": True}})
            continue
        message = _message(item, f"{KEY_PREFIX}{run}:{number}", target, now, created)
        answer, shown = _exchange(target, item.operation, message, messages, shown_body)
        reasons = judge(item, answer)
        if item.operation == "submit_case" and answer.result and answer.result.get("sector_ref"):
            created[item.name] = (str(answer.result["sector_ref"]), message)
        if item.operation == "cancel_case" and answer.accepted:
            cancelled.add(str(message["sector_ref"]))
        sent.append({"name": item.name, "operation": item.operation, "idempotency_key": message["idempotency_key"],
                     "passed": not reasons, "reasons": reasons,
                     "request": _rendered(target, item.operation, message), "answer": shown})
    cleanup, note = _cleanup(target, run, created, cancelled, messages, shown_body)
    passed = sum(1 for s in sent if s["passed"])
    failures = [s["answer"].get("failure") for s in sent if not s["passed"] and "skipped" not in s["answer"]]
    unreachable = bool(failures) and all(f in _UNREACHABLE for f in failures)  # nothing answered wrongly: no answer
    report: dict[str, Any] = mask_value({
        "outcome": PASSED if passed == len(sent) else FAILED, "at": now.isoformat(), "run": run,
        "passed": passed, "total": len(sent), "unreachable": unreachable,
        "items": sent, "cleanup": cleanup, "note": note})
    return report


def _message(item: RehearsalItem, key: str, target: RegisteredAdapter, now: datetime,
             created: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The canonical message of an item (`gateway.sectors.delivery.canonical_message`'s shape; a query's
    `{"query": params}`), with the defaults a sample need not spell out."""
    if item.is_query:
        return {"idempotency_key": key, "query": dict(item.params), "request_id": key}  # as a named query has one
    department = target.bundle.department
    task = {"id": "T1", "department": department.name, "credit_code": department.credit_code, "lead": True}
    sector_ref, case = item.sector_ref, item.case or {}
    if item.from_item is not None:
        sector_ref, submitted = created[item.from_item]
        return {"idempotency_key": key, "sector_ref": sector_ref, "task": submitted["task"],
                "case": submitted["case"]}
    defaults = {"accepted_at": now.isoformat(), "green_channel": False, "materials": [], "form": {}}
    return {"idempotency_key": key, "sector_ref": sector_ref, "task": {**task, **(item.task or {})},
            "case": {**defaults, **case}}


def _exchange(target: RegisteredAdapter, operation: str, message: dict[str, Any], messages: MessageLog | None,
              shown_body: Shown) -> tuple[Answer, dict[str, Any]]:
    """The sector's answer to one message, judged form and shown form."""
    try:
        result = logged_call(messages, target, operation, message, case_no=None)
    except DeliveryError as exc:
        code = exc.business_code
        shown: dict[str, Any] = {"failure": str(exc.failure), "code": code, "message": exc.message}
        if exc.last_response is not None:
            shown |= {"status": exc.last_response.get("status"),
                      "body": shown_body(str(exc.last_response.get("body") or ""))}
        return Answer(failure=str(exc.failure), code=code, message=exc.message), shown
    return Answer(result=result), {"result": jsonable(result)}


def _rendered(target: RegisteredAdapter, operation: str, message: Mapping[str, Any]) -> Any:
    """What the item's message becomes on the wire (without credentials); None if the mapping cannot render it
    (its answer then says why)."""
    try:
        # adapters.contract.Adapter.render names only Operation; kinds render a query's name too.
        return jsonable(target.adapter.render(operation, message))  # type: ignore[arg-type]
    except DeliveryError:
        return None


def _cleanup(target: RegisteredAdapter, run: str, created: Mapping[str, tuple[str, Mapping[str, Any]]],
             cancelled: set[str], messages: MessageLog | None, shown_body: Shown
             ) -> tuple[list[dict[str, Any]], str | None]:
    """Cancel at the sector what the rehearsal created and did not cancel itself."""
    left = {name: made for name, made in created.items() if made[0] not in cancelled}
    if not left:
        return [], None
    if "cancel_case" not in target.bundle.operations:
        return [], f"the bundle has no cancel_case: {len(left)} sample case(s) stay at the sector's test endpoint"
    done = []
    for number, (name, (sector_ref, submitted)) in enumerate(left.items(), start=1):
        message = {**submitted, "idempotency_key": f"{KEY_PREFIX}{run}:cancel:{number}", "sector_ref": sector_ref}
        answer, shown = _exchange(target, "cancel_case", message, messages, shown_body)
        outcome = {"cancelled": (answer.result or {}).get("cancelled", True)} if answer.accepted else shown
        done.append({"item": name, "sector_ref": sector_ref, **outcome})
    return done, None
