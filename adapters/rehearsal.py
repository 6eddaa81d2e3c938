"""Rehearsal files (adapters/BUNDLE-FORMAT.md "Rehearsal files"): the sample cases and queries a sector team
ships with its bundle, each with the outcome the team expects.

- `read_rehearsal(bundle)` reads and checks the file the descriptor names (`rehearsal:`) against this
  module's schema and against the bundle (its operations and queries, earlier items named by `from_item`),
  and returns the items; `RehearsalInvalid` lists every problem as `file:line: field: message`.
- `judge(item, answer)` says whether one answer is what the item expects: the reasons it is not (empty: passed).

Plain data and checks, no I/O beyond reading the file: running the items against a sector is the gateway's
(`gateway.sectors.rehearsals`). Imports `adapters.descriptor` and `mappings` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from adapters.descriptor import Bundle
from mappings.positions import Positions, YamlProblem, load_yaml
from mappings.validate import Problem

__all__ = ["Answer", "RehearsalInvalid", "RehearsalItem", "judge", "read_rehearsal"]

CASE_OPERATIONS = ("submit_case", "query_status", "cancel_case")  # a named query is the other kind of item
FAILURES = ("transport", "timeout", "sector_fault", "mapping", "validation", "auth")  # adapters.FailureClass

_EXPECTED_VALUE = {"oneOf": [
    {"type": ["string", "number", "boolean", "null"]},
    {"type": "object", "required": ["pattern"], "additionalProperties": False,
     "properties": {"pattern": {"type": "string", "minLength": 1}}},
]}
SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["items"],
    "additionalProperties": False,
    "properties": {"items": {"type": "array", "minItems": 1, "items": {
        "type": "object",
        "required": ["name", "operation", "expect"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "operation": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            "case": {"type": "object", "required": ["case_no", "matter_code", "applicant"]},
            "task": {"type": "object"},
            "sector_ref": {"oneOf": [
                {"type": "string", "minLength": 1},
                {"type": "object", "required": ["from_item"], "additionalProperties": False,
                 "properties": {"from_item": {"type": "string", "minLength": 1}}},
            ]},
            "params": {"type": "object"},
            "expect": {"oneOf": [
                {"type": "object", "required": ["outcome"], "additionalProperties": False, "properties": {
                    "outcome": {"const": "accepted"},
                    "result": {"type": "object", "additionalProperties": _EXPECTED_VALUE}}},
                {"type": "object", "required": ["outcome"], "additionalProperties": False, "properties": {
                    "outcome": {"const": "refused"},
                    "failure": {"enum": list(FAILURES)},
                    "code": {"type": ["string", "integer"]}}},
            ]},
        },
    }}},
}


class RehearsalInvalid(ValueError):
    """A rehearsal file that cannot be used; `problems` says every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class RehearsalItem:
    """One sample: what to send (`operation` with `case`, `sector_ref` or `params`) and what should come back."""

    name: str
    operation: str
    expect: Mapping[str, Any]  # {"outcome": "accepted", "result": {...}} | {"outcome": "refused", ...}
    case: Mapping[str, Any] | None = None
    task: Mapping[str, Any] | None = None
    sector_ref: str | None = None  # a literal reference …
    from_item: str | None = None  # … or the one an earlier submit_case item got back
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_query(self) -> bool:
        return self.operation not in CASE_OPERATIONS


@dataclass(frozen=True)
class Answer:
    """What the sector said to one item: a canonical result, or a classified refusal (and its business code)."""

    result: Mapping[str, Any] | None = None
    failure: str | None = None
    code: str | None = None
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.failure is None


def read_rehearsal(bundle: Bundle) -> tuple[RehearsalItem, ...]:
    """The bundle's rehearsal items (none without a `rehearsal:` file); `RehearsalInvalid` on any problem."""
    if bundle.rehearsal is None:
        return ()
    name = bundle.relative(bundle.rehearsal)
    try:
        doc, positions = load_yaml(bundle.rehearsal.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RehearsalInvalid([Problem(name, None, "", f"cannot read: {exc.strerror or exc}")]) from exc
    except YamlProblem as exc:
        raise RehearsalInvalid([Problem(name, exc.line, "", exc.message)]) from exc
    where = _Where(name, positions)
    problems = [where.problem(list(e.absolute_path), _worded(e))
                for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc)]
    if not problems:
        problems = list(_bundle_problems(doc["items"], bundle, where))
    if problems:
        raise RehearsalInvalid(sorted(set(problems), key=lambda p: (p.line or 0, p.field)))
    return tuple(_item(spec) for spec in doc["items"])


@dataclass(frozen=True)
class _Where:
    file: str
    positions: Positions

    def problem(self, path: Sequence[Any], message: str) -> Problem:
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        return Problem(self.file, self.positions.line(path), dotted, message)


def _worded(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and list(error.absolute_path)[-1:] == ["expect"]:
        return "expected {outcome: accepted, result: {field: value | {pattern: …}}} or " \
               "{outcome: refused, failure: …, code: …}"
    if error.validator == "oneOf":
        return "expected a text, or {from_item: …} / {pattern: …}"
    return error.message


def _bundle_problems(items: Sequence[Mapping[str, Any]], bundle: Bundle, where: _Where) -> Iterator[Problem]:
    """What the schema cannot say: operations the bundle has, what each needs, earlier items, valid patterns."""
    known = [o for o in bundle.operations if o != "callback"] + list(bundle.queries)
    submitted: set[str] = set()
    names: set[str] = set()
    for index, spec in enumerate(items):
        at = ["items", index]
        operation = spec["operation"]
        if spec["name"] in names:
            yield where.problem([*at, "name"], f"{spec['name']!r} is the name of an earlier item")
        names.add(spec["name"])
        if operation not in known:
            yield where.problem([*at, "operation"], f"the bundle has no {operation!r} (has: {', '.join(known)})")
        needs = {"submit_case": "case", "query_status": "sector_ref", "cancel_case": "sector_ref"}.get(operation)
        if needs is not None and needs not in spec:
            yield where.problem([*at, needs], f"required for {operation}")
        source = spec.get("sector_ref")
        if isinstance(source, Mapping) and source["from_item"] not in submitted:
            yield where.problem([*at, "sector_ref", "from_item"],
                                f"{source['from_item']!r} is not an earlier submit_case item")
        for key, expected in (spec["expect"].get("result") or {}).items():
            if isinstance(expected, Mapping) and not _compiles(expected["pattern"]):
                yield where.problem([*at, "expect", "result", key, "pattern"], "not a regular expression")
        if operation == "submit_case":
            submitted.add(spec["name"])


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _item(spec: Mapping[str, Any]) -> RehearsalItem:
    source = spec.get("sector_ref")
    return RehearsalItem(
        name=spec["name"], operation=spec["operation"], expect=spec["expect"], case=spec.get("case"),
        task=spec.get("task"), sector_ref=source if isinstance(source, str) else None,
        from_item=source["from_item"] if isinstance(source, Mapping) else None, params=spec.get("params") or {})


def judge(item: RehearsalItem, answer: Answer) -> list[str]:
    """Why `answer` is not what `item` expects; empty when it is."""
    expect = item.expect
    if expect["outcome"] == "accepted":
        if not answer.accepted:
            return [f"expected accepted, the sector refused: {answer.failure}: {answer.message}"]
        return [reason for key, wanted in (expect.get("result") or {}).items()
                if (reason := _field_differs(key, wanted, answer.result or {}))]
    if answer.accepted:
        return ["expected refused, the sector accepted"]
    reasons = []
    if "failure" in expect and expect["failure"] != answer.failure:
        reasons.append(f"expected failure {expect['failure']}, got {answer.failure}: {answer.message}")
    if "code" in expect and str(expect["code"]) != answer.code:
        reasons.append(f"expected business code {expect['code']}, got {answer.code or 'none'}")
    return reasons


def _field_differs(key: str, wanted: Any, result: Mapping[str, Any]) -> str | None:
    """`key` may be dotted (a.b) into a nested result; a pattern must match the whole value's text."""
    value: Any = result
    for step in key.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return f"{key}: missing from the result"
        value = value[step]
    if isinstance(wanted, Mapping):
        text = "" if value is None else str(value)
        matched = re.fullmatch(wanted["pattern"], text)
        return None if matched else f"{key}: {text!r} does not match {wanted['pattern']!r}"
    return None if value == wanted else f"{key}: expected {wanted!r}, got {value!r}"
