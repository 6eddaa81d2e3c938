"""Response schemas more than one router answers with (a router never imports another: what two share
lives here). Their class names are their OpenAPI component names.

Every instant an answer holds is a `BeijingTime`: Beijing time with its offset and milliseconds
(`gateway.domain.clock.beijing_text`), whatever zone it was stored or computed in. Answers built by hand
(dicts) call `beijing_text` themselves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

from gateway.domain.clock import beijing_text

BEIJING_TIME_EXAMPLE = "2026-11-24T10:00:00.000+08:00"
# Serialised as Beijing time in JSON only: Python callers (model_dump) keep the aware datetime.
BeijingTime = Annotated[
    datetime,
    PlainSerializer(beijing_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": [BEIJING_TIME_EXAMPLE],
                    "description": "Beijing time with its offset, e.g. " + BEIJING_TIME_EXAMPLE}),
]


class EventOut(BaseModel):
    """One event of a case's timeline: `at` when the gateway recorded it; `sector_at` when the sector says it
    happened (a department's decision), if it said."""

    seq: int
    at: BeijingTime
    sector_at: BeijingTime | None = Field(
        default=None, description="the sector's own time of what it records (a department's decision), if it said")
    trigger: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    data: dict[str, Any]


class CaseEventOut(BaseModel):
    event_id: str
    case_no: str
    seq: int
    trigger: str
    from_state: str | None
    to_state: str
    matter_code: str
    at: BeijingTime


class DeliveryOut(BaseModel):
    id: int
    case_no: str
    seq: int
    event: CaseEventOut
    status: str = Field(description="pending | delivered | failed | cancelled")
    attempts: int
    next_at: BeijingTime
    last_status: int | None = Field(description="the receiver's last HTTP status; null: no answer")
    last_error: str | None
    created_at: BeijingTime
    delivered_at: BeijingTime | None
