"""What a named query takes: its declared parameter contract, checked at registration and at every call, and
the parameters its mapping reads, for the gateway's OpenAPI document.

A bundle declares a named query by its mapping file (`queries: {name: file}`); the caller's parameters arrive
as the canonical message `{"query": {...}, "request_id": "..."}`, and the mapping reads them with
`from: query.<name>` (in `request` or, for REST, in `http` path, query and header fields).

The mapping's `parameters:` block is the query's contract (adapters/BUNDLE-FORMAT.md, "Query parameters"):
name -> {type, required, pattern, max_length, enum, description}. `declared_parameters` reads it,
`contract_problems` checks it against the mapping's reads at registration (a read of an undeclared parameter
is a problem, a declared one never read a warning), `parameter_errors` checks a caller's parameters against it
before anything is sent. A mapping without the block keeps the contract derived from its reads (`reads`):
required unless every rule reading one is `optional`; a scalar when read whole, an object when the mapping
reads inside it, a list when a `for_each` walks it; registration warns that it declares none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from mappings import CompiledMapping
from mappings.engine import RuleInfo, describe
from mappings.validate import MappingFile, Problem

QUERY_ROOT = "query"
PARAMETERS = "parameters"  # the mapping file's top-level key holding the contract
TYPES = ("string", "integer", "number", "boolean", "date")
_KEYS = frozenset({"type", "required", "pattern", "max_length", "enum", "description"})
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def is_id_number(text: str) -> bool:
    """A citizen identity number in GB 11643 form: 17 ASCII digits and the MOD 11-2 check character
    (gateway/domain/codes.py has the same rule; mappings and adapters cannot import the gateway)."""
    if len(text) != 18 or not (text[:17].isascii() and text[:17].isdigit()):
        return False
    return _ID_CHECK[sum(int(c) * w for c, w in zip(text[:17], _ID_WEIGHTS, strict=True)) % 11] == text[17].upper()


@dataclass(frozen=True)
class NamedPattern:
    """A pattern a contract may name instead of writing a regex: its shape for documents, its full check."""

    regex: str
    meaning: str
    check: Any  # Callable[[str], bool]


NAMED_PATTERNS: Mapping[str, NamedPattern] = {
    "id_number": NamedPattern(r"^[0-9]{17}[0-9Xx]$", "居民身份证号码（GB 11643，含校验码）", is_id_number),
}


@dataclass(frozen=True)
class QueryParameter:
    """One parameter of a named query: declared (type, pattern…) or only derived from the mapping's reads."""

    name: str
    required: bool
    shape: str  # "scalar" | "object" | "list"
    sector_fields: tuple[str, ...]  # where the sector's request takes it ("zjhm", "path_params.idCardNo")
    type: str | None = None  # declared: one of TYPES; None: derived only
    pattern: str | None = None  # a regex or a NAMED_PATTERNS name
    max_length: int | None = None
    enum: tuple[Any, ...] | None = None
    note: str | None = None  # the declared description

    @property
    def description(self) -> str:
        sent = "送往部门字段 " + "、".join(f"`{f}`" for f in self.sector_fields) if self.sector_fields else ""
        return "；".join(t for t in (self.note, sent) if t)

    @property
    def regex(self) -> str | None:
        named = NAMED_PATTERNS.get(self.pattern or "")
        return named.regex if named else self.pattern


# --------------------------------------------------------------------------- derived from the mapping's reads


def query_parameters(mapping: CompiledMapping) -> tuple[QueryParameter, ...]:
    """The parameters a named query's compiled mapping reads, by name."""
    return tuple(_parameter(name, rules) for name, rules in sorted(reads(mapping).items()))


def reads(mapping: CompiledMapping) -> dict[str, list[RuleInfo]]:
    """The mapping's rules reading each `query.<name>`."""
    found: dict[str, list[RuleInfo]] = {}
    for rule in describe(mapping):
        if _reads_a_parameter(rule):
            found.setdefault(rule.source[1], []).append(rule)  # type: ignore[index]  # checked just above
    return found


def _reads_a_parameter(rule: RuleInfo) -> bool:
    return (rule.section in ("request", "http") and rule.kind in ("from", "for_each") and not rule.for_each
            and rule.source is not None and len(rule.source) >= 2 and rule.source[0] == QUERY_ROOT)


def _parameter(name: str, rules: list[RuleInfo]) -> QueryParameter:
    if any(r.kind == "for_each" and len(r.source or ()) == 2 for r in rules):
        shape = "list"
    elif any(len(r.source or ()) > 2 for r in rules):
        shape = "object"
    else:
        shape = "scalar"
    return QueryParameter(name, not all(r.optional for r in rules), shape,
                          tuple(dict.fromkeys(".".join(r.target) for r in rules)))


# --------------------------------------------------------------------------- the declared contract


def declared_parameters(doc: Mapping[str, Any]) -> tuple[QueryParameter, ...] | None:
    """The mapping document's `parameters:` block as parameters (None: the mapping declares none).
    Assumes `contract_problems` found nothing: registration refuses a malformed block."""
    block = doc.get(PARAMETERS)
    if not isinstance(block, Mapping):
        return None
    return tuple(_declared(str(name), spec if isinstance(spec, Mapping) else {}) for name, spec in block.items())


def _declared(name: str, spec: Mapping[str, Any]) -> QueryParameter:
    enum = spec.get("enum")
    return QueryParameter(name, bool(spec.get("required", True)), "scalar", (), str(spec.get("type", "string")),
                          spec.get("pattern"), spec.get("max_length"), tuple(enum) if enum is not None else None,
                          spec.get("description"))


def query_contract(doc: Mapping[str, Any], mapping: CompiledMapping) -> tuple[tuple[QueryParameter, ...], bool]:
    """The query's parameters as callers see them, and whether they are declared: the declared ones with the
    sector fields their reads fill, or (no `parameters:` block) those derived from the reads."""
    derived = {p.name: p for p in query_parameters(mapping)}
    declared = declared_parameters(doc)
    if declared is None:
        return tuple(derived.values()), False
    return tuple(replace(p, sector_fields=derived[p.name].sector_fields, shape=derived[p.name].shape)
                 if p.name in derived else p for p in declared), True


def contract_problems(mf: MappingFile) -> tuple[list[Problem], list[Problem]]:
    """A query mapping's contract checked against its reads: (problems, warnings)."""
    block = mf.doc.get(PARAMETERS)
    read = reads(mf.compiled)
    if block is None:
        where = ", ".join(f"query.{n}" for n in sorted(read)) or "nothing"
        return [], [mf.problem([], f"declares no {PARAMETERS}: callers' parameters are not checked before the "
                                   f"sector is called (the mapping reads {where})")]
    if not isinstance(block, Mapping):
        return [mf.problem([PARAMETERS], "expected a mapping of parameter name -> {type, required, ...}")], []
    problems = [p for name, spec in block.items() for p in _spec_problems(mf, str(name), spec)]
    for name, rules in sorted(read.items()):
        if name not in block:
            problems += [mf.problem(r.location, f"'query.{name}' is read but not declared in {PARAMETERS}")
                         for r in rules]
    warnings = [mf.problem([PARAMETERS, name], "declared but never read by the mapping: it is checked, then "
                                               "not sent to the sector") for name in block if name not in read]
    warnings += [mf.problem([PARAMETERS, name, "required"], "declared optional, but a rule reading it is not "
                                                            "`optional`: a call without it cannot be sent")
                 for name, spec in block.items() if isinstance(spec, Mapping) and spec.get("required") is False
                 and any(not r.optional for r in read.get(name, ()))]
    return problems, warnings


def _spec_problems(mf: MappingFile, name: str, spec: Any) -> list[Problem]:
    at = [PARAMETERS, name]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return [mf.problem(at, "a parameter name is letters, digits and '_' (not starting with a digit)")]
    if not isinstance(spec, Mapping):
        return [mf.problem(at, "expected {type, required, pattern, max_length, enum, description}")]
    problems = [mf.problem([*at, k], f"unknown key '{k}' (keys: {', '.join(sorted(_KEYS))})")
                for k in spec if k not in _KEYS]
    kind = spec.get("type", "string")
    if kind not in TYPES:
        problems.append(mf.problem([*at, "type"], f"{kind!r} is not a type ({', '.join(TYPES)})"))
    if not isinstance(spec.get("required", True), bool):
        problems.append(mf.problem([*at, "required"], "expected true or false"))
    pattern = spec.get("pattern")
    if pattern is not None:
        problems += _pattern_problems(mf, [*at, "pattern"], pattern, kind)
    max_length = spec.get("max_length")
    if max_length is not None and (type(max_length) is not int or max_length < 1 or kind != "string"):
        problems.append(mf.problem([*at, "max_length"], "a positive whole number, for a string"))
    enum = spec.get("enum")
    if enum is not None and (not isinstance(enum, list) or not enum
                             or (kind in TYPES and any(_type_error(kind, v) for v in enum))):
        problems.append(mf.problem([*at, "enum"], f"expected a non-empty list of {kind} values"))
    if not isinstance(spec.get("description", ""), str):
        problems.append(mf.problem([*at, "description"], "expected a text"))
    return problems


def _pattern_problems(mf: MappingFile, at: list[str], pattern: Any, kind: Any) -> list[Problem]:
    if kind != "string":
        return [mf.problem(at, "a pattern applies to a string parameter")]
    if not isinstance(pattern, str):
        return [mf.problem(at, "expected a regex or a named pattern")]
    if pattern in NAMED_PATTERNS:
        return []
    try:
        re.compile(pattern)
    except re.error as exc:
        named = ", ".join(NAMED_PATTERNS)
        return [mf.problem(at, f"neither a named pattern ({named}) nor a regex: {exc}")]
    return []


# --------------------------------------------------------------------------- at every call


def parameter_errors(declared: Sequence[QueryParameter], params: Mapping[str, Any]) -> list[dict[str, str]]:
    """What is wrong with a caller's parameters under a declared contract: [{"name", "msg"}], empty if nothing."""
    known = {p.name: p for p in declared}
    errors = [{"name": name, "msg": "未声明的参数（可用参数：" + ("、".join(known) or "无") + "）"}
              for name in params if name not in known]
    for p in declared:
        if p.name not in params or params[p.name] is None:
            if p.required:
                errors.append({"name": p.name, "msg": "必填参数缺失"})
            continue
        why = _value_error(p.type or "string", params[p.name], p.pattern, p.max_length, p.enum)
        if why:
            errors.append({"name": p.name, "msg": why})
    return errors


def _value_error(kind: str, value: Any, pattern: str | None, max_length: int | None,
                 enum: Sequence[Any] | None) -> str | None:
    """Why `value` is not a good value of this parameter (in Chinese, for the hall), or None."""
    why = _type_error(kind, value)
    if why is None and enum is not None and value not in enum:
        why = "取值须为 " + "、".join(map(str, enum)) + " 之一"
    if why is None and isinstance(value, str):
        if max_length is not None and len(value) > max_length:
            why = f"长度超过 {max_length} 个字符"
        elif pattern is not None and not _matches(pattern, value):
            named = NAMED_PATTERNS.get(pattern)
            why = f"不是有效的{named.meaning}" if named else f"格式不符合 {pattern}"
    return why


def _type_error(kind: str, value: Any) -> str | None:
    ok = {"string": isinstance(value, str),
          "integer": type(value) is int,
          "number": type(value) in (int, float),
          "boolean": type(value) is bool,
          "date": isinstance(value, str) and _is_date(value)}[kind]
    shown = {"string": "文本", "integer": "整数", "number": "数值", "boolean": "布尔值（true 或 false）",
             "date": "日期（YYYY-MM-DD）"}[kind]
    return None if ok else f"应为{shown}"


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _matches(pattern: str, value: str) -> bool:
    named = NAMED_PATTERNS.get(pattern)
    return bool(named.check(value)) if named else re.fullmatch(pattern, value) is not None
