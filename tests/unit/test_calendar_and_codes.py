from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gateway.catalogue.calendar_file import CalendarError, load_calendar
from gateway.domain.codes import is_valid_credit_code, is_valid_id_number, is_valid_implementation_code

CAL = load_calendar()


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (date(2026, 11, 24), 5, date(2026, 12, 1)),  # Tue + 5 working days skips a weekend
        (date(2026, 11, 24), 0, date(2026, 11, 24)),  # on the spot
        (date(2026, 2, 12), 3, date(2026, 2, 24)),  # Spring Festival: 13th, make-up Sat 14th, (15-23 off), 24th
        (date(2026, 9, 30), 1, date(2026, 10, 8)),  # National Day: 1-7 October off (8th is a Thursday)
        (date(2026, 10, 9), 1, date(2026, 10, 10)),  # Saturday 10 October is a make-up working day
    ],
)
def test_working_days_follow_the_published_arrangement(start: date, days: int, expected: date) -> None:
    assert CAL.add_working_days(start, days) == expected


def test_beyond_the_calendar_only_weekends_count_and_it_says_so() -> None:
    end = CAL.add_working_days(date(2026, 12, 30), 3)
    assert end == date(2027, 1, 4)  # 31 Dec, (Jan 1 is a Friday: counted, no data), Jan 1, Jan 4
    assert CAL.beyond_coverage(date(2026, 12, 30), end)
    assert not CAL.beyond_coverage(date(2026, 11, 24), date(2026, 12, 1))


def test_a_calendar_file_with_dates_outside_its_range_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "cal.yaml"
    bad.write_text("covers_from: 2026-01-01\ncovers_to: 2026-12-31\nholidays: [2027-01-01]\n")
    with pytest.raises(CalendarError, match="outside covers_from"):
        load_calendar(bad)


def test_national_code_check_characters() -> None:
    assert is_valid_credit_code("12150200MB1A00010L")
    assert not is_valid_credit_code("12150200MB1A00010M")
    assert is_valid_implementation_code("12150200MB1A00010L3000805001000")
    assert not is_valid_implementation_code("12150200MB1A00010L7000805001000")  # level 7 does not exist
    assert is_valid_id_number("150203198503120039")
    assert is_valid_id_number("15020419901120152x")
    assert not is_valid_id_number("150203198503120038")
    assert not is_valid_id_number("15020319850312003")


@pytest.mark.parametrize("first", ["\u00b9", "\uff11", "\u0661"], ids=["superscript", "full-width", "arabic-indic"])
def test_an_id_number_with_digits_other_than_ascii_is_invalid_not_an_error(first: str) -> None:
    assert not is_valid_id_number(first + "50203198503120039")
