"""A dead letter's *cause*: its error text with what differs from letter to letter taken out.

Thousands of letters dead of one fault differ only in their case numbers, keys, times and counts
("connect to 10.0.3.7:8443 timed out after 30001 ms"). `normalise(message)` replaces those with placeholders
(`<case_no>`, `<key>`, `<uuid>`, `<time>`, `<addr>`, `<id_number>`, `<phone>`, `<id>` for hex ids, `<n>` for
any other number), collapses whitespace and bounds the length, so such letters share one text; different
words stay different texts. `cause_key(error_class, sector, message)` is what is stored with each dead letter
(`dead_letters.cause`, written with the letter): `sector/error_class: text`, so the key alone names one group
(an operator replays or discards "this cause" without also naming its sector and class).

A cause holds no ID or phone number (they are placeholders), so it rests plain, unlike the sealed error text,
and the operators' text search reads it. Lives in the domain because the repository writes it with the
letter (the gateway never imports ops); `ops.causes` is the desk's face of it.
"""

from __future__ import annotations

import re

MAX_CAUSE = 200  # characters of a stored cause (the column's width)
ELLIPSIS = "…"

# Edges: not inside an ASCII word. (`\b` is Unicode-aware: "办件1137…" has no word edge before the digits.)
_S, _E = r"(?<![0-9A-Za-z_])", r"(?![0-9A-Za-z_])"
_HEX = "[0-9a-fA-F]"
# Order matters: the widest shapes first, so a case number is not taken for a run of numbers.
_SHAPES = (
    # An idempotency key: case number, task, operation, round (gateway.persistence.repository.idempotency_key).
    (_S + r"[0-9A-Z]{20,}\d{14}:[\w.-]+:[\w.-]+(?::r\d+)?" + _E, "<key>"),
    (_S + r"[0-9A-Z]{20,}\d{14}" + _E, "<case_no>"),  # implementation code + date + daily sequence
    (_S + f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}" + _E, "<uuid>"),
    # ISO 8601 and the plain forms people read: 2026-12-08T10:00:00.123+08:00, 2026-12-08 10:00, 10:00:05
    (_S + r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?", "<time>"),
    (_S + r"\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?" + _E, "<time>"),
    (_S + r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?" + _E, "<addr>"),  # IPv4, with or without its port
    (_S + r"\d{17}[\dXx]" + _E, "<id_number>"),  # a resident ID number (18 characters)
    (r"(?<!\d)1[3-9]\d{9}(?!\d)", "<phone>"),  # a mainland mobile number
    # A hexadecimal id: 0x…, or at least 8 hex digits holding both a digit and a letter
    (_S + f"0x{_HEX}+" + _E, "<id>"),
    (_S + f"(?={_HEX}*\\d)(?={_HEX}*[a-fA-F]){_HEX}{{8,}}" + _E, "<id>"),
    # Any other run of digits, a decimal point kept inside it (30001, 1.5, 503): letters and words stay.
    (r"\d+(?:\.\d+)?", "<n>"),
)
_PLACEHOLDERS = tuple((re.compile(pattern), placeholder) for pattern, placeholder in _SHAPES)
_SPACE = re.compile(r"\s+")


def normalise(message: str) -> str:
    """The error text with case numbers, keys, ids, times, addresses and numbers as placeholders, whitespace
    collapsed, at most MAX_CAUSE characters."""
    text = message
    for pattern, placeholder in _PLACEHOLDERS:
        text = pattern.sub(placeholder, text)
    return bounded(_SPACE.sub(" ", text).strip())


def cause_key(error_class: str, sector: str, message: str) -> str:
    """What `dead_letters.cause` holds: `sector/error_class: normalised text`, bounded."""
    return bounded(f"{sector}/{error_class}: {normalise(message)}")


def bounded(text: str) -> str:
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - len(ELLIPSIS)] + ELLIPSIS
