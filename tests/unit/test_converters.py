"""Converters (mappings/converters.py): each one's documented example, their refusals, chains, the standard code
tables, round trips (Hypothesis), and that BUNDLE-FORMAT.md's "Converters" section lists every one of them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings import CONVERTERS, MappingError, compile_mapping
from mappings.converters import CONVERTER_SPECS, SPECS, ConverterSpec
from mappings.standard_tables import STANDARD_TABLES

BUNDLE_FORMAT = Path(__file__).resolve().parents[2] / "adapters" / "BUNDLE-FORMAT.md"


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_each_converter_gives_its_documented_example(spec: ConverterSpec) -> None:
    given_value, expected = spec.example
    assert CONVERTERS[spec.name](given_value) == expected


def test_the_registry_has_each_name_once() -> None:
    assert len(CONVERTER_SPECS) == len(SPECS) and set(CONVERTERS) == set(CONVERTER_SPECS)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("epoch_s_to_iso_utc", "0", "1970-01-01T00:00:00Z"),
        ("epoch_s_to_iso_utc", -1, "1969-12-31T23:59:59Z"),
        ("iso_utc_to_epoch_s", "2024-01-02T15:30:00.999+08:00", 1704180600),  # below a second: dropped
        ("compact_utc_to_iso_utc", "20241231160000", "2024-12-31T16:00:00Z"),
        ("iso_utc_to_utc_datetime", "2024-12-31T16:00:00Z", "2024-12-31 16:00:00"),
        ("date_iso", "2024-03-04T15:59:59Z", "2024-03-04"),  # 23:59:59 in Beijing
        ("date_compact", "2024-03-04T16:00:00Z", "20240305"),  # midnight in Beijing
        ("compact_date_to_iso", 20080229, "2008-02-29"),
        ("fen_to_yuan", 5, "0.05"),
        ("fen_to_yuan", "-100", "-1.00"),
        ("fen_to_yuan", 7.0, "0.07"),
        ("fen_to_yuan", 10**40 + 1, "1" + "0" * 38 + ".01"),  # beyond Decimal's default 28 digits: still exact
        ("yuan_to_fen", "1" + "0" * 38 + ".01", 10**40 + 1),
        ("yuan_to_fen", 123.45, 12345),  # a JSON float, read by its shortest text
        ("yuan_to_fen", Decimal("0.1"), 10),
        ("yuan_to_fen", "-0.50", -50),
        ("yuan_to_fen", 3, 300),
        ("gbk_text", "张丽华 No.1", "张丽华 No.1"),
        ("text_to_gb18030_hex", "刘䶮", "C1F5FE9F"),  # GB18030 carries what GBK cannot
        ("gb18030_hex_to_text", "c1f5fe9f", "刘䶮"),
        ("gb18030_base64_to_text", "wfX+nw==", "刘䶮"),
    ],
)
def test_converters(name: str, value: Any, expected: Any) -> None:
    assert CONVERTERS[name](value) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("epoch_s_to_iso_utc", 1704180600.5),  # a fraction of a second: ms is its own converter
        ("epoch_s_to_iso_utc", True),
        ("iso_utc_to_epoch_s", "2024-01-02T07:30:00"),  # naive: ambiguous
        ("compact_utc_to_iso_utc", "2024-12-31 16:00:00"),
        ("compact_utc_to_iso_utc", "２０２４１２３１１６００００"),  # full-width digits are not yyyyMMddHHmmss
        ("utc_datetime_to_iso_utc", "2024-12-31T16:00:00"),
        ("iso_utc_to_utc_datetime", "2024-12-31 16:00:00"),  # naive
        ("date_iso", "2024-03-04T17:00:00"),  # a naive instant has no Beijing date
        ("compact_date_to_iso", "20080230"),
        ("compact_date_to_iso", "2008-02-29"),
        ("fen_to_yuan", 1.5),  # half a fen
        ("fen_to_yuan", "1.00"),
        ("fen_to_yuan", "1_000"),  # int() would read it
        ("fen_to_yuan", False),
        ("yuan_to_fen", "1.001"),  # a fraction of a fen: refused, not rounded
        ("yuan_to_fen", 0.1 + 0.2),  # 0.30000000000000004: not an amount anyone meant
        ("yuan_to_fen", "NaN"),
        ("yuan_to_fen", "1e3"),
        ("yuan_to_fen", "¥12.00"),
        ("yuan_to_fen", True),
        ("gbk_text", "刘䶮"),
        ("gb18030_hex_to_text", "ZZ"),
        ("gb18030_hex_to_text", "FF"),  # not a GB18030 byte sequence
        ("gb18030_base64_to_text", "王"),
    ],
)
def test_converters_refuse_bad_values(name: str, value: Any) -> None:
    with pytest.raises(ValueError):
        CONVERTERS[name](value)


def test_a_rare_character_in_a_name_is_a_mapping_error_at_render_not_a_question_mark() -> None:
    mapping = compile_mapping({"operation": "Op", "request": {"sqrxm": {"from": "name", "convert": "gbk_text"}}})
    assert mapping.render_request({"name": "王小明"}) == {"sqrxm": "王小明"}
    with pytest.raises(MappingError) as caught:
        mapping.render_request({"name": "刘䶮"})
    assert str(caught.value) == (
        "<mapping>: request.sqrxm: gbk_text cannot convert '刘䶮': '䶮' (U+4DAE) cannot be carried in GBK: "
        "a GBK system would store '?' instead"
    )


# ------------------------------------------------------------------ chains


def one_rule(rule: dict[str, Any], code_tables: dict[str, Any] | None = None) -> Any:
    doc = {"operation": "Op", "request": {"x": rule}} | ({"code_tables": code_tables} if code_tables else {})
    return compile_mapping(doc)


def test_converters_chain_in_order_then_the_code_table() -> None:
    # GBK bytes for a GBK system: check the text, then encode it (GBK is GB18030's two-byte part).
    mapping = one_rule({"from": "name", "convert": ["gbk_text", "text_to_gb18030_hex"]})
    assert mapping.render_request({"name": "王"}) == {"x": "CDF5"}
    # A date from an epoch in milliseconds: the instant, then its Beijing date, then a code.
    mapping = one_rule({"from": "t", "convert": ["epoch_ms_to_iso_utc", "date_compact"], "code_table": "d"},
                       {"d": {"20240305": "day five"}})  # fmt: skip
    assert mapping.render_request({"t": 1709571600000}) == {"x": "day five"}  # 2024-03-04T17:00Z


def test_a_failing_step_of_a_chain_is_named_with_the_value_it_got() -> None:
    mapping = one_rule({"from": "t", "convert": ["epoch_ms_to_iso_utc", "compact_date_to_iso"]})
    with pytest.raises(MappingError, match=r"request\.x: compact_date_to_iso cannot convert '1970-01-01T00:00:00Z'"):
        mapping.render_request({"t": 0})


@pytest.mark.parametrize("convert", [[], [1], {"a": "str"}, 7, ["str", None]])
def test_a_malformed_convert_is_refused_when_the_mapping_compiles(convert: Any) -> None:
    with pytest.raises(MappingError, match=r"^<mapping>: request\.x\.convert: expected a converter's name or a list"):
        one_rule({"from": "a", "convert": convert})


# ------------------------------------------------------------------ standard code tables


def test_a_standard_table_is_named_without_copying_it() -> None:
    mapping = one_rule({"from": "case.applicant.id_type", "code_table": "std.id_type_to_bank"})
    assert mapping.render_request({"case": {"applicant": {"id_type": "111"}}}) == {"x": "0"}
    assert mapping.render_request({"case": {"applicant": {"id_type": "516"}}}) == {"x": "5"}
    with pytest.raises(MappingError, match=r"code '154' is not in code table 'std.id_type_to_bank'"):
        mapping.render_request({"case": {"applicant": {"id_type": "154"}}})  # 居住证: no bank code, no guess


@pytest.mark.parametrize(("forward", "back"), [("std.id_type_name", "std.id_type_from_name"),
                                               ("std.id_type_to_bank", "std.id_type_from_bank")])
def test_each_standard_table_reads_back_through_its_reverse(forward: str, back: str) -> None:
    assert {STANDARD_TABLES[back][value]: value for value in STANDARD_TABLES[forward].values()} == dict(
        STANDARD_TABLES[forward]
    )
    assert STANDARD_TABLES["std.id_type_name"]["111"] == "居民身份证"


def test_the_std_prefix_is_reserved_and_an_unknown_standard_table_lists_the_known_ones() -> None:
    with pytest.raises(MappingError, match=r"code_tables\.std\.mine: the prefix 'std\.' is reserved"):
        one_rule({"from": "a", "code_table": "std.mine"}, {"std.mine": {"1": "one"}})
    with pytest.raises(MappingError, match=r"unknown code table 'std\.id_types' \(standard: std\.id_type_from_bank, "):
        one_rule({"from": "a", "code_table": "std.id_types"})


# ------------------------------------------------------------------ round trips

INSTANTS = st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC))


@given(st.integers(-(6 * 10**10), 2 * 10**11))  # years 69 to 8307: what datetime holds
def test_epoch_seconds_round_trip(seconds: int) -> None:
    assert CONVERTERS["iso_utc_to_epoch_s"](CONVERTERS["epoch_s_to_iso_utc"](seconds)) == seconds


@given(st.integers(-(6 * 10**13), 2 * 10**14))
def test_epoch_milliseconds_round_trip(millis: int) -> None:
    assert CONVERTERS["iso_utc_to_epoch_ms"](CONVERTERS["epoch_ms_to_iso_utc"](millis)) == millis


@given(INSTANTS, st.sampled_from([("iso_utc_to_beijing_datetime", "beijing_datetime_to_iso_utc"),
                                  ("datetime_compact_shanghai", "compact_shanghai_to_iso_utc"),
                                  ("iso_utc_to_utc_datetime", "utc_datetime_to_iso_utc"),
                                  ("iso_utc_to_compact_utc", "compact_utc_to_iso_utc")]))
def test_wall_clock_texts_round_trip_to_the_second(instant: datetime, pair: tuple[str, str]) -> None:
    there, back = pair
    whole = instant.replace(microsecond=0)
    iso = whole.isoformat().replace("+00:00", "Z")
    assert CONVERTERS[back](CONVERTERS[there](iso)) == iso
    assert CONVERTERS[back](CONVERTERS[there](instant.isoformat())) == iso  # wall clocks keep whole seconds


@given(INSTANTS)
def test_beijing_wall_clock_is_utc_plus_eight(instant: datetime) -> None:
    shown = CONVERTERS["iso_utc_to_beijing_datetime"](instant.isoformat())
    assert datetime.fromisoformat(shown) - instant.replace(tzinfo=None, microsecond=0) == timedelta(hours=8)


@given(st.integers(-(10**40), 10**40))
def test_fen_and_yuan_round_trip_exactly(fen: int) -> None:
    yuan = CONVERTERS["fen_to_yuan"](fen)
    assert re.fullmatch(r"-?[0-9]+\.[0-9]{2}", yuan)
    assert CONVERTERS["yuan_to_fen"](yuan) == fen
    assert int(yuan.replace(".", "")) == fen  # the same digits, the point two places from the right


@given(st.text())
def test_gb18030_texts_round_trip(text: str) -> None:
    assert CONVERTERS["gb18030_hex_to_text"](CONVERTERS["text_to_gb18030_hex"](text)) == text
    assert CONVERTERS["gb18030_base64_to_text"](CONVERTERS["text_to_gb18030_base64"](text)) == text


# ------------------------------------------------------------------ the documentation keeps up


def converters_section() -> str:
    text = BUNDLE_FORMAT.read_text(encoding="utf-8")
    section = text.split("\n## Converters\n", 1)[1]
    return section.split("\n## ", 1)[0]


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_bundle_format_lists_every_converter_with_its_example(spec: ConverterSpec) -> None:
    lines = [line for line in converters_section().splitlines() if line.startswith(f"| `{spec.name}` |")]
    assert len(lines) == 1, f"BUNDLE-FORMAT.md, Converters: no row for `{spec.name}`"
    assert repr(spec.example[1]) in lines[0] or str(spec.example[1]) in lines[0]


def test_bundle_format_lists_every_standard_table() -> None:
    section = converters_section()
    assert [name for name in STANDARD_TABLES if f"`{name}`" not in section] == []
