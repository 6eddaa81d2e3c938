"""Reads the working-day calendar file (gateway/data/calendar.yaml by default)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml

from gateway.config import DEFAULT_CALENDAR
from gateway.domain.calendar import WorkingCalendar


class CalendarError(ValueError):
    pass


def load_calendar(path: Path = DEFAULT_CALENDAR) -> WorkingCalendar:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        calendar = WorkingCalendar(
            covers_from=_date(document["covers_from"]),
            covers_to=_date(document["covers_to"]),
            holidays=frozenset(_date(d) for d in document.get("holidays") or []),
            workdays=frozenset(_date(d) for d in document.get("workdays") or []),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise CalendarError(f"{path}: not a usable calendar: {exc}") from exc
    outside = [d for d in calendar.holidays | calendar.workdays if not calendar.covers(d)]
    if outside:
        raise CalendarError(f"{path}: dates outside covers_from..covers_to: {sorted(outside)[:3]}")
    return calendar


def _date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
