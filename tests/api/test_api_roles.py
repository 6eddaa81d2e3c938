"""Every /v1 route declares its roles and refuses callers without a valid key; submission's channel rule.

Which role may call which route is the role matrix's job (tests/api/test_role_matrix.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from tests.support.gateways import SOCIAL_SECURITY_AGENCY
from tests.support.routes import admitted_roles, v1_routes

H, W, C, I = Role.HALL_CLIENT, Role.WINDOW, Role.CLERK, Role.ISSUING_WINDOW
APPLICATION = {"matter_code": "12150200MB1A00020M3000720001000",
               "applicant": {"name": "李秀英", "id_number": "150203198503120039"}}


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


@pytest.fixture
def app(gateway: Gateway) -> FastAPI:
    return create_app(gateway)


def headers_of(gateway: Gateway, role: Role) -> dict[str, str]:
    scope = {Role.CLERK: {"department": SOCIAL_SECURITY_AGENCY}, Role.SECTOR_ADMIN: {"sector": "social_security"}}
    _, key = gateway.keys.issue(f"test {role}", [role], **scope.get(role, {}))
    return {"Authorization": f"Bearer {key}"}


def test_every_v1_route_declares_its_roles(app: FastAPI) -> None:
    undeclared = [f"{sorted(r.methods)} {r.path}" for r in v1_routes(app) if not list(admitted_roles(r.dependant))]
    assert undeclared == []
    for route in v1_routes(app):
        assert all(roles and roles <= set(Role) for roles in admitted_roles(route.dependant)), route.path


@pytest.mark.parametrize("credentials", [{}, {"Authorization": "Bearer yw_not-a-key"}, {"X-API-Key": "nonsense"}])
def test_every_v1_route_refuses_a_caller_without_a_valid_key(app: FastAPI, credentials: dict[str, str]) -> None:
    client = TestClient(app, headers=credentials)
    for route in v1_routes(app):
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in route.methods:
            answer = client.request(method, path, json={} if method in ("POST", "PUT", "PATCH") else None)
            assert answer.status_code == 401, f"{method} {path}: {answer.status_code} {answer.text}"
            assert answer.json()["type"] == "urn:yiwang:problem:not-authenticated", f"{method} {path}"
            assert answer.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("role", "channel", "status"), [
    (H, "online_pc", 404), (H, "mobile", 404), (H, "city_window", 403),
    (W, "city_window", 404), (W, "village_agency", 404), (W, "online_pc", 403),
    (C, "online_pc", 403), (I, "city_window", 403), (Role.OPERATOR, "online_pc", 403),
])
def test_submission_admits_the_hall_online_and_windows_at_windows(app: FastAPI, gateway: Gateway, role: Role,
                                                                  channel: str, status: int) -> None:
    body = {**APPLICATION, "matter_code": "12150200MB1A00020M3999999999999", "channel": channel,
            "agent": {"name": "张代办", "id_number": "150203199001010010"}}
    answer = TestClient(app, headers=headers_of(gateway, role)).post("/v1/cases", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["type"] == "urn:yiwang:problem:" + ("unknown-matter" if status == 404 else "forbidden")
