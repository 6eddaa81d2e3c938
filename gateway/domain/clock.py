"""Time, as the gateway reckons it (DESIGN.md invariant 10).

Instants are stored in UTC; dates that mean something to people — the day in a case number,
a promised completion date, a working day — are Asia/Shanghai dates. A `Clock` is passed in
so tests can pin time.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, at: datetime) -> None:
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def shanghai_date(instant: datetime) -> date:
    """The calendar date in Beijing time of an aware instant."""
    return instant.astimezone(SHANGHAI).date()


def to_shanghai(instant: datetime) -> datetime:
    return instant.astimezone(SHANGHAI)


def as_utc(instant: datetime) -> datetime:
    """Normalise an instant read back from storage (naive means UTC) to aware UTC."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def beijing_text(instant: datetime) -> str:
    """The one way an instant leaves the gateway (API answers, payloads, CLI output): Beijing time with
    its offset and milliseconds, e.g. `2026-12-07T20:10:00.123+08:00`. Stored instants stay UTC."""
    return as_utc(instant).astimezone(SHANGHAI).isoformat(timespec="milliseconds")


# An instant as ISO 8601 text with a zone (`Z` or an offset): a date alone, or a time without a zone, is not one.
_ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})")


def instants_as_beijing_text(value: Any) -> Any:
    """A JSON-like value (dicts, lists, scalars) with every instant in it — a datetime, or ISO text with a
    zone as stored (`2026-11-24T02:00:00+00:00`) — written as `beijing_text`; everything else unchanged.
    For answers assembled from records kept in UTC by packages that know nothing of the gateway."""
    if isinstance(value, datetime):
        return beijing_text(value)
    if isinstance(value, str) and _ISO_INSTANT.fullmatch(value):
        return beijing_text(datetime.fromisoformat(value))
    if isinstance(value, dict):
        return {key: instants_as_beijing_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [instants_as_beijing_text(item) for item in value]
    return value


def duration_text(seconds: float, units: tuple[str, str, str, str]) -> str:
    """An age in its two largest units — 3d 04h, 2h 05m, 3m 12s, 45s — with `units` naming days, hours, minutes
    and seconds (("d", "h", "m", "s") at the command line, (" 天", " 小时", " 分", " 秒") in the console)."""
    day, hour, minute, second = units
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}{day} {hours:02d}{hour}"
    if hours:
        return f"{hours}{hour} {minutes:02d}{minute}"
    return f"{minutes}{minute} {secs:02d}{second}" if minutes else f"{secs}{second}"
