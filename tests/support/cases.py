"""Submitting a case and reading how far it got: the helpers delivery tests share."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.bootstrap.app import Gateway, create_app
from gateway.persistence import tables as t
from tests.support.gateways import COMPLETE_APPLICATION, Keys


def submit(gateway: Gateway, body: dict[str, Any] = COMPLETE_APPLICATION) -> str:
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as hall:
        answer = hall.post("/v1/cases", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_no"])


def state(gateway: Gateway, case_no: str) -> str:
    return str(gateway.service.get(case_no).state)


def outbox_statuses(gateway: Gateway, case_no: str | None = None) -> list[tuple[str, str]]:
    """(operation, status) of each outbox message, oldest first: every case's, or `case_no`'s."""
    query = select(t.outbox).order_by(t.outbox.c.id)
    if case_no is not None:
        query = query.where(t.outbox.c.case_no == case_no)
    with gateway.engine.connect() as conn:
        return [(r.operation, r.status) for r in conn.execute(query)]
