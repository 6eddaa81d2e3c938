"""Which task a sector's answer is about: a decision lands on its own case, and only there.

A sector's answer — a signed callback, a polled status — carries the sector's reference for a task
(`sector_ref`) and whichever of our identifiers its bundle's mapping reads: the case number (`case_no`), the
task (`task_id`), the idempotency key of the request it answers (`idempotency_key`, case:task:operation, which
names a case and a task). The rule (docs/sectors.md, "Callbacks and polled answers"):

- every identifier the answer carries must name the one task it would change; a reference we know names
  its task, and a polled answer names the task it was asked about;
- a reference nobody holds yet is bound only to a task at that sector that has no reference, in the case its
  case number names (the callback that overtakes the submit's answer);
- anything else changes nothing: `AnswerMismatch`, saying what names what.

Plain Python: the caller looks the reference up and stores what changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.domain.case import Case, Task

IDENTIFIERS = ("case_no", "task_id", "idempotency_key")  # besides sector_ref, what an answer may carry
MAX_SHOWN = 80  # characters of an identifier a message repeats: a hostile one is cut, never echoed whole


class AnswerMismatch(Exception):
    """A sector's answer whose identifiers do not all name the task it would change; it changes nothing."""


@dataclass(frozen=True)
class Claim:
    """One identifier of an answer and the case and/or task it names (None: says nothing of that)."""

    field: str
    value: str
    case_no: str | None
    task_id: str | None

    def about(self, case_no: str, task_id: str) -> bool:
        return self.case_no in (None, case_no) and self.task_id in (None, task_id)

    def names(self) -> str:
        if self.case_no is not None and self.task_id is not None:
            return f"case {self.case_no} task {self.task_id}"
        return f"case {self.case_no}" if self.case_no is not None else f"task {self.task_id}"


def identifier(field: str, value: Any) -> str | None:
    """An identifier as text; None when the answer does not carry it. Only text and whole numbers qualify."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise AnswerMismatch(f"{field} is not an identifier (a {type(value).__name__})")
    return str(value)


def claims(result: Mapping[str, Any]) -> list[Claim]:
    """What the answer's identifiers other than `sector_ref` name."""
    found = []
    for field in IDENTIFIERS:
        value = identifier(field, result.get(field))
        if value is None:
            continue
        if field == "case_no":
            found.append(Claim(field, value, value, None))
        elif field == "task_id":
            found.append(Claim(field, value, None, value))
        else:
            found.append(Claim(field, value, *_key_parts(value)))
    return found


def check_same_task(sector: str, found: list[Claim], case_no: str, task_id: str, *, known_as: str | None,
                    answer_ref: str | None) -> None:
    """Raise unless the answer is about task `task_id` of `case_no` at `sector`, whose reference is `known_as`:
    every identifier names that task, and the answer's own reference (None: it carries none) is that one."""
    wrong = [f"{c.field} {_shown(c.value)} names {c.names()}" for c in found if not c.about(case_no, task_id)]
    if answer_ref is not None and answer_ref != known_as:
        wrong.insert(0, f"sector_ref {_shown(answer_ref)} is another reference")
    if wrong:
        reference = f"its reference {_shown(known_as)}" if known_as is not None else "no reference yet"
        raise AnswerMismatch(f"the answer is about case {case_no} task {task_id} at {sector} ({reference}), but "
                             + "; ".join(wrong))


def reference(result: Mapping[str, Any]) -> str:
    """The sector's reference an answer must carry to be bound to a task."""
    sector_ref = identifier("sector_ref", result.get("sector_ref"))
    if sector_ref is None:
        raise AnswerMismatch("the answer carries no sector_ref")
    return sector_ref


def no_such_case(sector_ref: str, case_no: str) -> AnswerMismatch:
    return AnswerMismatch(f"sector_ref {_shown(sector_ref)} is not a reference we know, and case {_shown(case_no)} "
                          "does not exist")


def case_to_bind(sector_ref: str, found: list[Claim]) -> str:
    """A reference nobody holds: the one case the answer's identifiers name, where it may be bound."""
    cases = {c.case_no for c in found if c.case_no is not None}
    if len(cases) != 1:
        why = "names no case" if not cases else "names more than one case: " + ", ".join(sorted(cases))
        raise AnswerMismatch(f"sector_ref {_shown(sector_ref)} is not a reference we know, and the answer {why}")
    return cases.pop()


def task_to_bind(case: Case, sector: str, sector_ref: str, found: list[Claim]) -> Task:
    """The one task of `case` at `sector` that has no reference yet (or has this one: it was bound meanwhile)
    and that every identifier names."""
    at_sector = [t for t in case.tasks if t.sector == sector]
    open_ = [t for t in at_sector if t.sector_ref in (None, sector_ref) and all(c.about(case.case_no, t.task_id)
                                                                                   for c in found)]
    if len(open_) == 1:
        return open_[0]
    where = f"sector_ref {_shown(sector_ref)} is not a reference we know, and case {case.case_no}"
    if not at_sector:
        raise AnswerMismatch(f"{where} has no task at {sector}")
    if not open_:
        held = ", ".join(f"task {t.task_id} has {_shown(t.sector_ref)}" for t in at_sector)
        raise AnswerMismatch(f"{where} has no task at {sector} without a reference that the answer names ({held})")
    raise AnswerMismatch(f"{where} has {len(open_)} tasks at {sector} without a reference: name the task")


def _key_parts(key: str) -> tuple[str | None, str | None]:
    """case:task:operation (and :r<round> after a correction), as `idempotency_key` builds them."""
    parts = key.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise AnswerMismatch(f"idempotency_key {_shown(key)} is not one of our keys (case:task:operation)")
    return parts[0], parts[1]


def _shown(value: str | None) -> str:
    return repr(value if value is None or len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…")
