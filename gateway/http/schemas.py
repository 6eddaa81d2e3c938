"""Response schemas more than one router answers with (a router never imports another: what two share
lives here). Their class names are their OpenAPI component names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class EventOut(BaseModel):
    seq: int
    at: str
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
    at: str


class DeliveryOut(BaseModel):
    id: int
    case_no: str
    seq: int
    event: CaseEventOut
    status: str = Field(description="pending | delivered | failed | cancelled")
    attempts: int
    next_at: datetime
    last_status: int | None = Field(description="the receiver's last HTTP status; null: no answer")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
