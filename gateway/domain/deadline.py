"""The deadline clock of a case: acceptance first (5 working days), then promised completion.

A deadline can stop — while the applicant supplements, or a special procedure (hearing, expert
review) runs — and resumes later, extended by the time it stood still. E-supervision (电子监察)
warns before the deadline and flags it after; each once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum

from gateway.domain.calendar import WorkingCalendar
from gateway.domain.matter import TimeLimit, TimeUnit

ACCEPTANCE_LIMIT = TimeLimit(5, TimeUnit.WORKING_DAYS)  # unnotified missing materials: deemed accepted


class DeadlineKind(StrEnum):
    ACCEPTANCE = "acceptance"  # the window must accept, refuse or request a supplement by then
    COMPLETION = "completion"  # 承诺办结时限


@dataclass(frozen=True)
class Deadline:
    kind: DeadlineKind
    due: date
    unit: TimeUnit
    paused_on: date | None = None
    warned: bool = False
    overdue: bool = False

    @classmethod
    def start(cls, kind: DeadlineKind, today: date, limit: TimeLimit, calendar: WorkingCalendar) -> Deadline:
        return cls(kind, add(calendar, today, limit.value, limit.unit), limit.unit)

    @property
    def running(self) -> bool:
        return self.paused_on is None

    def pause(self, today: date) -> Deadline:
        return self if self.paused_on else replace(self, paused_on=today)

    def resume(self, today: date, calendar: WorkingCalendar) -> Deadline:
        """Extend the due date by the days that passed while stopped (the day it stopped counts as used)."""
        if self.paused_on is None:
            return self
        lost = count(calendar, self.paused_on, today, self.unit)
        return replace(self, due=add(calendar, self.due, lost, self.unit), paused_on=None)

    def needs_warning(self, today: date, calendar: WorkingCalendar, warn_days: int) -> bool:
        return self.running and not self.warned and today <= self.due and count(
            calendar, today, self.due, self.unit) <= warn_days

    def is_overdue(self, today: date) -> bool:
        return self.running and not self.overdue and today > self.due


def add(calendar: WorkingCalendar, start: date, days: int, unit: TimeUnit) -> date:
    if unit is TimeUnit.WORKING_DAYS:
        return calendar.add_working_days(start, days)
    return start + timedelta(days=days)


def count(calendar: WorkingCalendar, after: date, until: date, unit: TimeUnit) -> int:
    """Days in (after, until] of the unit: how much of a limit that stretch uses up."""
    if unit is TimeUnit.WORKING_DAYS:
        return calendar.count_working_days(after, until)
    return max((until - after).days, 0)
