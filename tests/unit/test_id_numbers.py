"""ID numbers in GB 11643 form (gateway.domain.codes): which ID types have that form, the birth date they
carry — real, not in the future, at most 120 years back — and the green channel reading age from the same date."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain import lifecycle
from gateway.domain.codes import (
    birth_date,
    id_number_check_char,
    id_number_problem,
    in_gb11643_form,
    is_valid_id_number,
    years_before,
)

TODAY = date(2026, 11, 24)


def number(birth: date | str, region: str = "150203", sequence: str = "003", first: str = "") -> str:
    body = first + region + (birth if isinstance(birth, str) else f"{birth:%Y%m%d}") + sequence
    return body + id_number_check_char(body)


@pytest.mark.parametrize(("id_type", "value", "form"), [
    ("111", number("19850312"), True),  # 居民身份证
    ("112", number("19850312"), True),  # 临时居民身份证
    ("154", number("19850312", "810000"), True),  # 居住证, also a Hong Kong resident's
    ("553", number("19850312", "15840", first="9"), True),  # 外国人永久居留身份证, 2023 form
    ("553", "USA150203850312", False),  # the 2017 card: 3 letters and 12 digits
    ("414", "E12345678", False),  # 普通护照
    ("516", "H1234567801", False),  # 港澳居民来往内地通行证
])
def test_which_numbers_take_gb11643_form(id_type: str, value: str, form: bool) -> None:
    assert in_gb11643_form(id_type, value) is form
    assert (birth_date(id_type, value) == date(1985, 3, 12)) is form


@pytest.mark.parametrize(("value", "says"), [
    (number("19850312")[:-1] + "0", "校验不通过"),
    (number("19850312")[:17], "校验不通过"),
    ("\u00b9" + number("19850312")[1:], "校验不通过"),  # a superscript one: isdigit() but no int()
    ("\uff11" + number("19850312")[1:], "校验不通过"),  # a full-width one
    (number("19850229"), "不是真实的日期"),
    (number("20260230"), "不是真实的日期"),
    (number("19851300"), "不是真实的日期"),
    (number("20261125"), "晚于今天"),
    (number("19061123"), "早于 120 年前"),
])
def test_a_resident_id_number_is_refused_with_what_is_wrong(value: str, says: str) -> None:
    problem = id_number_problem("111", value, TODAY)
    assert problem is not None and says in problem and problem.startswith("证件号码")


def test_the_limits_themselves_are_accepted_and_other_types_are_not_judged() -> None:
    for birth in (date(1906, 11, 24), TODAY, date(1988, 2, 29)):
        assert id_number_problem("111", number(birth), TODAY) is None
    assert id_number_problem("111", number("19850312", sequence="008").lower(), TODAY) is None  # x for X
    assert id_number_problem("414", "anything at all", TODAY) is None
    assert id_number_problem("553", "USA150203850312", TODAY) is None


@settings(max_examples=300, deadline=None)
@given(st.dates(min_value=date(1850, 1, 1), max_value=date(2100, 12, 31)),
       st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 12, 31)))
def test_a_birth_date_is_accepted_exactly_between_120_years_ago_and_today(birth: date, today: date) -> None:
    accepted = id_number_problem("111", number(birth), today) is None
    assert accepted is (years_before(today, 120) <= birth <= today)


def test_years_before_a_29_february_is_the_28th() -> None:
    assert years_before(date(2028, 2, 29), 121) == date(1907, 2, 28)
    assert years_before(date(2028, 2, 29), 120) == date(1908, 2, 29)
    assert years_before(date(2026, 11, 24), 120) == date(1906, 11, 24)


def test_the_green_channel_reads_age_from_every_number_in_gb11643_form() -> None:
    sixty = years_before(TODAY, 60)
    for id_type, value in (("111", number(sixty)), ("112", number(sixty)), ("154", number(sixty, "830000")),
                           ("553", number(sixty, "15840", first="9"))):
        assert lifecycle.green_channel([], id_type, value, TODAY) == ("aged_60_plus",), id_type
    assert lifecycle.green_channel([], "111", number(sixty + timedelta(days=1)), TODAY) == ()
    assert lifecycle.green_channel([], "111", number("19500230"), TODAY) == ()  # no such day: no age
    assert lifecycle.green_channel([], "414", "E1950", TODAY) == ()


def test_the_check_character_still_checks() -> None:
    assert is_valid_id_number("150203198503120039") and not is_valid_id_number("150203198503120038")
