"""Working days under China's holiday arrangements (调休).

Each year's arrangement is announced in November for the next year, so the data comes from a
file the deployment can update (see `gateway/catalogue/calendar_file.py`); this module only reckons.
Beyond the dates the file covers, only weekends are days off and `beyond_coverage` says so,
so the caller can warn instead of silently trusting a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta


@dataclass(frozen=True)
class WorkingCalendar:
    covers_from: date
    covers_to: date
    holidays: frozenset[date] = field(default_factory=frozenset)  # weekdays that are days off
    workdays: frozenset[date] = field(default_factory=frozenset)  # weekends that are make-up working days

    def covers(self, day: date) -> bool:
        return self.covers_from <= day <= self.covers_to

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def add_working_days(self, start: date, days: int) -> date:
        """The date `days` working days after `start` (the start day itself is not counted).

        Zero days is the same day: an on-the-spot (即办) matter is done the day it is accepted.
        """
        if days < 0:
            raise ValueError("a time limit cannot be negative")
        day = start
        remaining = days
        while remaining:
            day += timedelta(days=1)
            if self.is_working_day(day):
                remaining -= 1
        return day

    def count_working_days(self, after: date, until: date) -> int:
        """Working days in (after, until]; zero when `until` is not later."""
        total, day = 0, after
        while day < until:
            day += timedelta(days=1)
            total += self.is_working_day(day)
        return total

    def beyond_coverage(self, start: date, end: date) -> bool:
        """True when part of [start, end] lies outside the published arrangements."""
        return not (self.covers(start) and self.covers(end))
