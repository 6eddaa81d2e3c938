"""`mappings.strict_json`: JSON as the gateway takes it from outside (issue 14).

The HTTP answers built on it are in tests/api/test_hostile_input.py, bundle files in
tests/unit/test_bundle_validation.py; here the reader itself: where it says a repeated key is, and what it
refuses that `json.loads` takes.
"""

from __future__ import annotations

import json

import pytest

from mappings.strict_json import DuplicateKey, NotUtf8, NumberOutOfRange, loads


@pytest.mark.parametrize(("text", "key", "line", "column"), [
    ('{"a": 1, "a": 2}', "a", 1, 10),
    ('{"a": 1,\n  "b": {"c": [1, {"d": 1,\n      "d" : 2}]}}', "d", 3, 7),
    ('[{"x": 1}, {"y": 1, "y": 1}]', "y", 1, 21),
    ('{"a\\"b": 1, "a\\"b": 2}', 'a"b', 1, 13),  # an escaped quote inside the key
    ('{"\\u0061": 1, "a": 2}', "a", 1, 15),  # the same key written two ways
    ('{"k": {"a": 1}, "k": {"a": 2}}', "k", 1, 17),  # equal values do not make it right
], ids=["flat", "nested", "in-a-list", "escaped-quote", "escaped-letter", "objects"])
def test_a_repeated_key_is_found_where_it_is_written(text: str, key: str, line: int, column: int) -> None:
    with pytest.raises(DuplicateKey) as caught:
        loads(text)
    assert (caught.value.key, caught.value.line, caught.value.column) == (key, line, column)


def test_json_it_takes_reads_as_json_loads_reads_it() -> None:
    text = '\ufeff{"名字": "王建国", "n": [1, 2.5, -3e2, true, null, {"a": {}}], "e": "\\u00e9"}'
    assert loads(text.encode("utf-8")) == json.loads(text.removeprefix("\ufeff"))


@pytest.mark.parametrize("data", ['{"a": 1}'.encode("utf-16"), '"名"'.encode("gbk"), b'"\xff"'],
                         ids=["utf-16", "gbk", "stray-byte"])
def test_bytes_that_are_not_utf8_are_refused(data: bytes) -> None:
    with pytest.raises(NotUtf8):
        loads(data)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "1e400", "-1e400", "9" * 5000])
def test_numbers_json_cannot_carry_are_refused(text: str) -> None:
    with pytest.raises(NumberOutOfRange):
        loads(text)


def test_malformed_json_is_still_a_json_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads('{"a": 1,}')
