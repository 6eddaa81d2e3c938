"""The typed-text rule (gateway.domain.text), its pydantic form (gateway.http.text_fields) and a form's check
(gateway.catalogue.forms): what is kept, what is refused and why, and that anything kept travels in XML and JSON."""

from __future__ import annotations

import json
import unicodedata
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from pydantic import BaseModel, Field, ValidationError

from gateway.catalogue.forms import checked_form, unchecked_formats
from gateway.domain.text import (
    Refusal,
    UndeliverableText,
    optional_text,
    typed_text,
    typed_values,
    undeliverable,
)
from gateway.http.text_fields import typed, typed_json

EVERY_CODE_POINT = st.characters(min_codepoint=0, max_codepoint=0x10FFFF)  # surrogates included
TEXTS = st.text(EVERY_CODE_POINT, max_size=40) | st.text(st.sampled_from(
    "王建国 \t\n\r\x00\x07\x1b\x7f\x85\x9b\u00ad\u180e\u200b\u200c\u200d\u202e\u2028\u3000\ud800\ue000\ufeff\ufffe\uffff"),
    max_size=12)


def kept(text: str, multiline: bool = False) -> str | None:
    try:
        return typed_text(text, "字段", multiline=multiline)
    except UndeliverableText:
        return None


def xml_round_trip(text: str) -> str:
    element = etree.Element("value")
    element.text = text  # lxml refuses what XML 1.0 cannot carry (ValueError)
    parsed = etree.fromstring(etree.tostring(element, encoding="UTF-8"))
    return parsed.text or ""


# --- properties ---------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(TEXTS, st.booleans())
def test_whatever_is_kept_travels_unchanged_in_xml_1_0_and_json(text: str, multiline: bool) -> None:
    result = kept(text, multiline)
    if result is None:
        return
    assert xml_round_trip(result) == result
    assert json.loads(json.dumps(result, ensure_ascii=False).encode("utf-8")) == result


@settings(max_examples=400, deadline=None)
@given(TEXTS, st.booleans())
def test_what_xml_cannot_carry_is_never_kept(text: str, multiline: bool) -> None:
    try:
        xml_round_trip(unicodedata.normalize("NFC", text).strip())
    except ValueError:
        assert kept(text, multiline) is None


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.booleans())
def test_a_kept_text_is_nfc_trimmed_and_kept_again_as_it_is(text: str, multiline: bool) -> None:
    result = kept(text, multiline)
    if result is None:
        return
    assert result and result == result.strip() and unicodedata.is_normalized("NFC", result)
    assert kept(result, multiline) == result
    if not multiline:
        assert not {"\n", "\r", "\t"} & set(result)


# --- examples -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "says"), [
    ("王\x07建国", "第2个字符（U+0007）是控制字符，无法传送给部门系统"),
    ("王\x9b建国", "（U+009B）是控制字符"),
    ("王建\ud800国", "（U+D800）是不成对的代理码位"),
    ("包头\ufffe", "（U+FFFE）是Unicode 非字符"),
    ("包头\U0001ffff市", "（U+1FFFF）是Unicode 非字符"),
    ("包头\ufdd0市", "（U+FDD0）是Unicode 非字符"),
    ("\u202e国建王", "第1个字符（U+202E）是不可见的格式控制字符"),
    ("王\u2066建国", "（U+2066）是不可见的格式控制字符"),
    ("王\ufeff建国", "（U+FEFF）是不可见的格式控制字符"),
    ("王\u00ad建国", "（U+00AD）是不可见的格式控制字符"),
    ("王\U000e0041建国", "（U+E0041）是不可见的格式控制字符"),
    ("王建国\n王建军", "（U+000A）是换行符或制表符，此项只能填一行"),
    ("王\u2028建国", "（U+2028）是Unicode 行或段落分隔符"),
    (" \u3000\t", "不能为空"),
])
def test_refusals_name_the_field_the_position_and_the_code_point(text: str, says: str) -> None:
    with pytest.raises(UndeliverableText) as refused:
        typed_text(text, "申请人姓名")
    assert str(refused.value).startswith("申请人姓名") and says in str(refused.value)
    assert refused.value.field == "申请人姓名"


@pytest.mark.parametrize(("text", "kept_as"), [
    ("  Zoe\u0301 Ma\u3000", "Zo\u00e9 Ma"),  # NFC composes é; the ideographic space is trimmed
    ("\u182e\u1823\u1829\u182d\u180e\u1820", None),  # Mongolian with its vowel separator (U+180E)
    ("\U0001f468\u200d\U0001f469\u200d\U0001f467", None),  # an emoji family: ZWJ between
    ("\u0915\u094d\u200c\u0937", None),  # Devanagari with ZWNJ
    ("王\ue000明", None),  # a rare character of a name in private use (older systems)
    ("王\U00031350明", None),  # CJK Extension H (Unicode 15): unassigned for this Python, kept as typed
    ("王\u00a0建国", None),  # a no-break space inside
])
def test_what_people_write_is_kept(text: str, kept_as: str | None) -> None:
    assert typed_text(text, "姓名") == (kept_as or text)


def test_a_multi_line_text_keeps_its_lines_with_lf_only() -> None:
    assert typed_text(" 第一条\r\n第二条\r第三条\t说明 ", "理由", multiline=True) == "第一条\n第二条\n第三条\t说明"
    with pytest.raises(UndeliverableText, match="控制字符"):
        typed_text("第一条\x0b第二条", "理由", multiline=True)


def test_an_optional_text_left_blank_is_not_given() -> None:
    assert optional_text(None, "住址") is None and optional_text(" \t ", "住址") is None
    assert optional_text(" 包头 ", "住址") == "包头"
    with pytest.raises(UndeliverableText):
        optional_text("包\x00头", "住址")


def test_undeliverable_says_nothing_about_a_good_text() -> None:
    assert undeliverable("包头市昆都仑区") is None


def test_every_string_of_a_json_value_is_kept_and_every_refusal_placed() -> None:
    form = {"name": " 王小明 ", "family": ["李\x00华", {"relation": " 父子 "}], "months": 36, "ok": True,
            "bad\x07key": 1}
    kept_form, refusals = typed_values(form, "申请表", {"family": "家庭成员"})
    assert kept_form == {**form, "name": "王小明", "family": ["李\x00华", {"relation": "父子"}]}
    assert refusals == [
        Refusal(("family", 0), "申请表“家庭成员”第2个字符（U+0000）是控制字符，无法传送给部门系统"),
        Refusal(("bad\x07key",), "申请表的字段名第4个字符（U+0007）是控制字符，无法传送给部门系统"),
    ]


# --- the pydantic form, as the HTTP models use it ---------------------------------------------------------


class Person(BaseModel):
    name: Annotated[str, typed("申请人姓名")] = Field(min_length=1, max_length=4)
    address: Annotated[str | None, typed("住址", blank=None)] = None
    reason: Annotated[str, typed("理由", multiline=True, blank="")] = ""
    params: Annotated[dict[str, Any], typed_json("查询参数")] = Field(default_factory=dict)


def test_the_field_type_keeps_the_text_before_its_own_constraints() -> None:
    person = Person(name=" 王建国\u3000", address="   ", reason=" 第一行\r\n第二行 ", params={"id": " 1 "})
    assert (person.name, person.address, person.reason, person.params) == ("王建国", None, "第一行\n第二行", {"id": "1"})
    assert Person(name="王建国", reason="   ").reason == ""


@pytest.mark.parametrize(("fields", "loc", "says"), [
    ({"name": "王\x07"}, ("name",), "申请人姓名第2个字符"),
    ({"name": "  "}, ("name",), "申请人姓名不能为空"),
    ({"name": "王", "address": "包\u202e头"}, ("address",), "住址第2个字符"),
    ({"name": "王", "params": {"id_number": "1\x00"}}, ("params",), "查询参数“id_number”第2个字符"),
])
def test_a_refusal_is_a_text_refused_error_naming_the_field(fields: dict[str, Any], loc: tuple[str, ...],
                                                            says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Person(**fields)
    [error] = refused.value.errors()
    assert (error["type"], error["loc"]) == ("text_refused", loc) and says in error["msg"]


def test_a_value_that_is_no_text_is_left_to_the_fields_own_type() -> None:
    with pytest.raises(ValidationError) as refused:
        Person(name=42)  # type: ignore[arg-type]
    assert refused.value.errors()[0]["type"] == "string_type"


# --- a form: its texts, then its schema with formats enforced ------------------------------------------------


SCHEMA = {"type": "object", "required": ["day", "at"], "additionalProperties": False, "properties": {
    "day": {"type": "string", "format": "date", "title": "退休日期"},
    "at": {"type": "string", "format": "date-time", "title": "预约时间"},
    "account": {"type": "string", "pattern": "^[0-9]{12,19}$", "title": "收款账号"},
    "months": {"type": "integer", "minimum": 12},
}}


@pytest.mark.parametrize(("form", "expected"), [
    ({"day": "2026-02-30", "at": "2026-12-01T09:30:00+08:00"}, [(("day",), "“退休日期”不是有效的日期（如 2026-10-31）")]),
    ({"day": "2026-12-01", "at": "2026-12-01 09:30"}, [(("at",), "“预约时间”不是有效的日期时间（如 2026-12-01T09:30:00+08:00）")]),
    ({"day": "2026-12-01", "at": "2026-12-01T09:30:00Z", "account": "6222 0212"},
     [(("account",), "“收款账号”的格式不符合要求")]),
    ({"day": "2026-12-01", "at": "2026-12-01T09:30:00Z", "months": 3}, [(("months",), "“months”不能小于 12")]),
    ({"day": "2026-12-01", "at": "2026-12-01T09:30:00Z", "months": "36"}, [(("months",), "“months”应为整数")]),
    ({"at": "2026-12-01T09:30:00Z", "extra": "x"}, [(("day",), "“退休日期”是必填项"),
                                                   (("extra",), "申请表没有“extra”这一项")]),
])
def test_a_forms_problems_are_told_in_chinese_by_field_without_its_value(
        form: dict[str, Any], expected: list[tuple[tuple[Any, ...], str]]) -> None:
    _, problems = checked_form(SCHEMA, form)
    assert [(p.path, p.message) for p in problems] == expected


def test_a_forms_texts_are_kept_before_the_schema_judges_them() -> None:
    kept_form, problems = checked_form(SCHEMA, {"day": " 2026-12-01 ", "at": "2026-12-01T09:30:00+08:00\n"})
    assert problems == [] and kept_form == {"day": "2026-12-01", "at": "2026-12-01T09:30:00+08:00"}
    _, refused = checked_form(SCHEMA, {"day": "2026-12-01", "at": "  "})
    assert [(p.path, p.message) for p in refused] == [(("at",), "申请表“预约时间”不能为空")]


def test_a_matter_without_a_form_still_has_its_texts_kept() -> None:
    assert checked_form({}, {"note": " 备注 "}) == ({"note": "备注"}, [])


def test_formats_the_gateway_cannot_check_are_found_wherever_declared() -> None:
    schema = {"type": "object", "properties": {
        "format": {"type": "string", "format": "date"},  # a field named "format" is no keyword
        "site": {"type": "string", "format": "uri"},
        "hosts": {"type": "array", "items": {"type": "string", "format": "hostname"}},
        "code": {"enum": [{"format": "nonsense"}]},  # data, not a schema
    }, "$defs": {"d": {"format": "duration"}}}
    assert unchecked_formats(schema) == ["duration", "hostname", "uri"]
    assert unchecked_formats(SCHEMA) == []
