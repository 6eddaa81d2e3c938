"""JSON as the gateway takes it from outside — hall and operator bodies, sector callbacks, bundle files.

`loads` reads like `json.loads` but refuses, with `JsonRefused` (a ValueError):

- text that is not UTF-8 (RFC 8259 §8.1): `json.loads` on bytes would guess UTF-16/32, and bytes in GBK
  often decode as UTF-8 all the same — into other characters, stored and sent on without a word;
- an object naming one key twice (`DuplicateKey`, with the line and column of the second): Python keeps
  the last value silently, so what a signature, a log or another reader saw is not what we acted on;
- `NaN`/`Infinity` (not JSON) and numbers beyond what a float or an int can hold (`1e400`, 5 000 digits).

Malformed text still raises `json.JSONDecodeError`, and absurd nesting `RecursionError`, as `json.loads`.
A clean document costs one pass of the C parser; only a refused one is read again to say where.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import math
from typing import Any

UTF8_BOM = "\ufeff"  # RFC 8259 lets a reader ignore it; older clients still send one


class JsonRefused(ValueError):
    """JSON the gateway does not accept; `line` and `column` are 1-based, None where unknown."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line} column {column}: {message}")
        self.message, self.line, self.column = message, line, column


class NotUtf8(JsonRefused):
    """Bytes that are not UTF-8 text."""


class DuplicateKey(JsonRefused):
    """An object with a key twice. `key` is for messages to whoever wrote the file (a bundle's author);
    answers to a request must not echo it (it may be personal data)."""

    def __init__(self, key: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(f"duplicate key {key!r}", line, column)
        self.key = key


class NumberOutOfRange(JsonRefused):
    """NaN, Infinity, or a number too large for a float or an int."""


def loads(data: str | bytes | bytearray) -> Any:
    """The document in `data`; `JsonRefused` for what the module docstring lists."""
    text = _utf8(data) if isinstance(data, bytes | bytearray) else data
    text = text.removeprefix(UTF8_BOM)
    try:
        return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant, parse_float=_finite)
    except _Repeated:
        raise _locate(text) from None
    except (JsonRefused, json.JSONDecodeError):  # said already; only a bare ValueError is left to name
        raise
    except ValueError as exc:  # int() past its digit limit: the only other ValueError the parser raises
        raise NumberOutOfRange(f"a number too large to read ({exc})") from None


def _utf8(data: bytes | bytearray) -> str:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8(f"not UTF-8 text (byte {exc.start} cannot start or continue a character)") from None


class _Repeated(Exception):
    """Raised by the fast pass; the slow pass then finds where."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _Repeated
    return found


def _no_constant(name: str) -> Any:
    raise NumberOutOfRange(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NumberOutOfRange("a number beyond the range of a float")
    return value


def _locate(text: str) -> DuplicateKey:
    """The first repeated key, with its position: the pure-Python parser, told where each value starts
    and ends, finds each key between the end of the value before it and its own value."""
    decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)
    # parse_object and scan_once are the decoder's undocumented hooks, absent from typeshed: the ignores.
    decoder.parse_object = _checked_object  # type: ignore[attr-defined]  # the C scanner would ignore it
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        decoder.decode(text)
    except DuplicateKey as found:
        return found
    except RecursionError:  # the Python parser nests deeper per level than the C one did
        pass
    return DuplicateKey("?")  # not reached: the fast pass saw a repeated key


def _checked_object(s_and_end: tuple[str, int], strict: bool, scan_once: Any, object_hook: Any,
                    object_pairs_hook: Any, memo: Any = None, *_: Any) -> tuple[dict[str, Any], int]:
    text, start = s_and_end
    value_spans: list[tuple[int, int]] = []

    def scan_value(string: str, at: int) -> tuple[Any, int]:
        value, end = scan_once(string, at)
        value_spans.append((at, end))
        return value, end

    # JSONObject is the standard library's own object parser: public in `json.decoder` but undocumented, so
    # typeshed leaves it out.
    pairs, end = json.decoder.JSONObject(  # type: ignore[attr-defined]
        s_and_end, strict, scan_value, None, list, memo)
    seen: set[str] = set()
    key_from = start
    for (key, _value), (_at, value_end) in zip(pairs, value_spans, strict=True):
        if key in seen:
            position = text.index('"', key_from)  # only blanks and a comma lie before a key
            line = text.count("\n", 0, position) + 1
            raise DuplicateKey(key, line, position - text.rfind("\n", 0, position))
        seen.add(key)
        key_from = value_end
    return dict(pairs), end
