"""A matter's application form (申请表): how a submitted form is checked against the guide's JSON Schema.

Two steps. Every text in the form is kept as `gateway.domain.text` says (NFC, trimmed, blank or
undeliverable refused); then the schema (2020-12) judges the kept form with its `format`s enforced —
date, date-time, time (RFC 3339, through rfc3339-validator), email, ipv4, ipv6, uuid, … — besides its
types, patterns and bounds. A guide may declare only formats this checker checks (`unchecked_formats`,
refused when a guide is validated), so a declared format is always an enforced one.

Problems are told in Chinese, naming the field by its title, and never repeat the value (a form may hold
personal data).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from gateway.domain.text import Refusal, typed_values

FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER
FORMAT_NAMES = {"date": "日期（如 2026-10-31）", "date-time": "日期时间（如 2026-12-01T09:30:00+08:00）",
                "time": "时间（如 09:30:00+08:00）", "email": "电子邮箱地址", "ipv4": "IPv4 地址", "ipv6": "IPv6 地址",
                "uuid": "UUID"}
TYPE_NAMES = {"string": "文本", "integer": "整数", "number": "数字", "boolean": "是或否（true/false）",
              "object": "一组字段", "array": "列表", "null": "空值"}
# Keywords whose value maps names to subschemas: a key there is a field's name, never a keyword.
_NAMED_SUBSCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_DATA = frozenset({"enum", "const", "default", "examples"})  # values, not schemas


def checked_form(schema: Mapping[str, Any], form: Mapping[str, Any]) -> tuple[dict[str, Any], list[Refusal]]:
    """The form as it is kept, and everything wrong with it (nothing: it may be stored)."""
    titles = {name: str(sub.get("title") or name) for name, sub in schema.get("properties", {}).items()
              if isinstance(sub, Mapping)}
    kept, refusals = typed_values(dict(form), "申请表", titles)
    if refusals:
        return dict(form), refusals
    if not schema:
        return kept, []
    validator = Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
    problems = [p for error in validator.iter_errors(kept) for p in _problems(schema, error)]
    return kept, sorted(set(problems), key=lambda p: [str(step) for step in p.path])


def unchecked_formats(schema: Any) -> list[str]:
    """The `format`s a schema declares that the checker cannot check (their packages are not installed)."""
    return sorted({f for f in _formats(schema) if f not in FORMAT_CHECKER.checkers})


def _formats(schema: Any) -> Iterator[str]:
    if isinstance(schema, list):
        for item in schema:
            yield from _formats(item)
    if not isinstance(schema, Mapping):
        return
    if isinstance(schema.get("format"), str):
        yield schema["format"]
    for keyword, value in schema.items():
        if keyword in _NAMED_SUBSCHEMAS and isinstance(value, Mapping):
            yield from _formats(list(value.values()))
        elif keyword not in _DATA and keyword not in _NAMED_SUBSCHEMAS:
            yield from _formats(value)


def _problems(schema: Mapping[str, Any], error: ValidationError) -> Iterator[Refusal]:
    path = tuple(error.path)
    if error.validator == "required":  # names the object; each missing field gets its own problem
        for name in cast(list[str], error.validator_value):  # the schema's `required`: field names
            if isinstance(error.instance, Mapping) and name not in error.instance:
                yield Refusal((*path, name), f"{_label(schema, (*path, name))}是必填项")
        return
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        for name in error.instance:
            if name not in known:
                yield Refusal((*path, name), f"申请表没有“{name}”这一项")
        return
    yield Refusal(path, _label(schema, path) + _what(error))


def _what(error: ValidationError) -> str:
    """What is wrong, without the value."""
    kind, limit = error.validator, error.validator_value
    if kind == "format":
        return f"不是有效的{FORMAT_NAMES.get(str(limit), str(limit))}"
    if kind == "type":
        wanted = limit if isinstance(limit, list) else [limit]
        return "应为" + "或".join(TYPE_NAMES.get(str(t), str(t)) for t in wanted)
    phrases = {"pattern": "的格式不符合要求", "enum": "不是可选的值之一", "const": "不是规定的值",
               "minLength": f"至少应有 {limit} 个字符", "maxLength": f"最多 {limit} 个字符",
               "minimum": f"不能小于 {limit}", "maximum": f"不能大于 {limit}",
               "exclusiveMinimum": f"应大于 {limit}", "exclusiveMaximum": f"应小于 {limit}",
               "minItems": f"至少应有 {limit} 项", "maxItems": f"最多 {limit} 项", "uniqueItems": "不能有重复项",
               "multipleOf": f"应为 {limit} 的倍数"}
    return phrases.get(str(kind), f"不符合申请表的要求（{kind}）")


def _label(schema: Mapping[str, Any], path: tuple[str | int, ...]) -> str:
    """The field at `path` by its title where the schema gives one: “解除劳动关系日期”, “家属/2”."""
    if not path:
        return "申请表"
    node: Any = schema
    for step in path:
        node = (node.get("properties", {}).get(step) if isinstance(step, str) else node.get("items")) \
            if isinstance(node, Mapping) else None
    title = node.get("title") if isinstance(node, Mapping) else None
    if title and all(isinstance(step, str) for step in path):
        return f"“{title}”"
    return "“" + "/".join(str(step) for step in path) + "”"
