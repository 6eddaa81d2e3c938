"""Texts a person typed — names, addresses, reasons, form fields: the one rule for what the gateway keeps.

Whatever the gateway keeps of such a text it may have to hand to any sector system, in XML as often as in
JSON. So a text is normalised — Unicode NFC, whitespace around it trimmed — and refused, with a Chinese
message naming the field, the position and the code point, when it holds:

- a control character (Unicode Cc): C0 (which XML 1.0 cannot carry at all), DEL and C1. One-line texts
  (names, numbers, addresses) refuse tab and line breaks too; multi-line texts (reasons, opinions, form
  fields) keep them, CR LF and CR made LF as every XML parser reads them anyway. The Unicode line and
  paragraph separators (U+2028, U+2029) are refused in both: no keyboard types them;
- a lone surrogate (XML 1.0 cannot carry it, nor UTF-8);
- a non-character: U+FDD0–U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF, …);
- an invisible format character (Cf) that hides or reorders text — bidi embeddings, overrides and isolates,
  zero-width space, byte-order mark, soft hyphen, tags, interlinear annotation — except the few that
  scripts need: ZWNJ and ZWJ (Indic and Arabic scripts, emoji) and U+180E, the Mongolian vowel separator
  (Mongolian script is official in Inner Mongolia);
- nothing at all, where a text is required. An optional text left blank counts as not given.

Kept as typed: private-use characters (older systems still encode rare characters of names there) and code
points this Python's Unicode tables do not assign yet (newer CJK extensions of GB 18030-2022).

Plain Python. The HTTP boundary (`gateway.http.text_fields`), the case service (form values), the operators'
desk and the webhook subscriptions use it; nothing checks texts another way.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The only format characters (Cf) a typed text may hold: scripts cannot be written without them.
SCRIPT_FORMAT_CHARACTERS = frozenset({"\u200c", "\u200d", "\u180e"})  # ZWNJ, ZWJ, Mongolian vowel separator
_UNDELIVERABLE = "，无法传送给部门系统"
LINE_BREAKS = frozenset({"\n", "\r", "\t"})  # tab and line breaks: kept by multi-line texts only


class UndeliverableText(ValueError):
    """A typed text the gateway refuses. `str()` is the whole message in Chinese; `field` names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}{problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class Refusal:
    """One refused text inside a JSON value (a form): where it is and why."""

    path: tuple[str | int, ...]
    message: str


def typed_text(value: str, field: str, *, multiline: bool = False) -> str:
    """The text as it is kept: NFC, trimmed; UndeliverableText when it is blank or holds what cannot be
    delivered. `field` is the field's name as a person reads it (申请人姓名)."""
    text = normalised(value, multiline)
    if not text:
        raise UndeliverableText(field, "不能为空")
    problem = undeliverable(text, multiline)
    if problem is not None:
        raise UndeliverableText(field, problem)
    return text


def optional_text(value: str | None, field: str, *, multiline: bool = False) -> str | None:
    """Like `typed_text`, but a text that is absent or blank is None: not given."""
    if value is None or not normalised(value, multiline):
        return None
    return typed_text(value, field, multiline=multiline)


def normalised(value: str, multiline: bool = False) -> str:
    text = unicodedata.normalize("NFC", value).strip()
    return text.replace("\r\n", "\n").replace("\r", "\n") if multiline else text


def undeliverable(text: str, multiline: bool = False) -> str | None:
    """Why `text` cannot be delivered (the first character at fault), or None."""
    for position, char in enumerate(text, start=1):
        kind = _fault(char, multiline)
        if kind is not None:
            return f"第{position}个字符（U+{ord(char):04X}）是{kind}"
    return None


def _fault(char: str, multiline: bool) -> str | None:
    if char.isprintable():
        return None  # the common case, and fast: printable excludes every category refused below
    if char in LINE_BREAKS:
        return None if multiline else "换行符或制表符，此项只能填一行"
    category = unicodedata.category(char)
    if category in ("Zl", "Zp"):  # no keyboard types them; JavaScript before ES2019 broke on them in strings
        return "Unicode 行或段落分隔符，请用普通换行"
    if category == "Cc":
        return "控制字符" + _UNDELIVERABLE
    if category == "Cs":
        return "不成对的代理码位" + _UNDELIVERABLE
    if _is_noncharacter(char):
        return "Unicode 非字符" + _UNDELIVERABLE
    if category == "Cf" and char not in SCRIPT_FORMAT_CHARACTERS:
        return "不可见的格式控制字符" + _UNDELIVERABLE
    return None  # spaces, private use, unassigned, and the format characters scripts need


def _is_noncharacter(char: str) -> bool:
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def typed_values(value: Any, what: str, titles: Mapping[str, str] | None = None, path: tuple[str | int, ...] = ()
                 ) -> tuple[Any, list[Refusal]]:
    """Every string in a JSON value (`what`: a form, a query's parameters) as `typed_text` keeps it —
    multi-line, since a form field may be — and every refusal with its path. Keys are checked, not
    changed: they are field names, not what a person typed. `titles` name top-level keys in messages."""
    names = titles or {}
    if isinstance(value, str):
        label = names.get(str(path[0]), "/".join(map(str, path))) if path else ""
        try:
            return typed_text(value, f"{what}“{label}”" if label else what, multiline=True), []
        except UndeliverableText as refused:
            return value, [Refusal(path, str(refused))]
    refusals: list[Refusal] = []
    if isinstance(value, Mapping):
        kept: dict[str, Any] = {}
        for key, item in value.items():
            problem = undeliverable(str(key))
            if problem is not None:
                refusals.append(Refusal((*path, key), f"{what}的字段名{problem}"))
            kept[key], inner = typed_values(item, what, names, (*path, key))
            refusals.extend(inner)
        return kept, refusals
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            kept_item, inner = typed_values(item, what, names, (*path, index))
            items.append(kept_item)
            refusals.extend(inner)
        return items, refusals
    return value, refusals
