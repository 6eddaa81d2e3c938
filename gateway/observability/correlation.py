"""Correlation ids: one id follows a piece of work from the hall's request to the sector and back.

The API takes the caller's `X-Correlation-Id` (or makes one) and echoes it; every log line written while
serving the request carries it (`structlog.contextvars`). An outbox message written meanwhile stores it
(`outbox.correlation_id`), the dispatcher binds it again around the delivery, whichever process and
transport delivers, and the adapters send it to the sector as `X-Correlation-Id`. Work the scheduler
starts (the clock, notifications, retention) gets a fresh id per job run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from gateway.observability.logs import mask_text

HEADER = "X-Correlation-Id"
KEY = "correlation_id"  # the name in log lines and in contextvars
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def well_formed(value: str | None) -> bool:
    """1–64 characters of [A-Za-z0-9._:-], and nothing the logs would mask: an id that looks like a phone
    number would be masked in the logs, and then it would no longer correlate anything."""
    return value is not None and _WELL_FORMED.fullmatch(value) is not None and mask_text(value) == value


def new_correlation_id() -> str:
    while not well_formed(fresh := uuid.uuid4().hex):  # rare: eleven hex digits that read as a phone number
        pass
    return fresh


def current_correlation_id() -> str | None:
    """The id bound for the work in hand, if any (stored with outbox messages written meanwhile)."""
    value = structlog.contextvars.get_contextvars().get(KEY)
    return value if isinstance(value, str) else None


@contextmanager
def correlated(correlation_id: str | None = None, **names: Any) -> Iterator[str]:
    """Bind a correlation id (the one given when well formed, else a fresh one) and `names` for the log
    lines written inside; yields the id. What was bound before is bound again afterwards."""
    bound = correlation_id if correlation_id and well_formed(correlation_id) else new_correlation_id()
    before = structlog.contextvars.get_contextvars()
    structlog.contextvars.bind_contextvars(**{KEY: bound}, **names)
    try:
        yield bound
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**before)


def bind_case_no(case_no: str) -> None:
    """Name the case in the log lines still to come in this request or job."""
    structlog.contextvars.bind_contextvars(case_no=case_no)


#END
