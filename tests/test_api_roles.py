"""Who may call what: every /v1 route declares its roles, refuses anonymous callers, and admits exactly its roles."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from gateway.app import Gateway, create_app
from gateway.auth import Role
from tests.conftest import SOCIAL_SECURITY_AGENCY

H, W, C, I = Role.HALL_CLIENT, Role.WINDOW, Role.CLERK, Role.ISSUING_WINDOW
READERS = {H, W, C, I, Role.OPERATOR}
NO_CASE = "/v1/cases/NOPE"
APPLICATION = {"matter_code": "12150200MB1A00020M3000720001000",
               "applicant": {"name": "李秀英", "id_number": "150203198503120039"}}
CERTIFICATE = {"name": "住房公积金提取到账通知", "number": "GJJ-1", "issuer": "包头市住房公积金管理中心"}

# (method, path, body, roles admitted, the status an admitted role gets: the case does not exist)
CASE_ACTIONS: list[tuple[str, str, dict[str, Any] | None, set[Role], int]] = [
    ("POST", "/v1/cases/lookup", {"id_number": "150203198503120039"}, {H, W}, 200),
    ("GET", NO_CASE, None, READERS, 404),
    ("GET", f"{NO_CASE}/events", None, READERS, 404),
    ("GET", f"{NO_CASE}/documents/acceptance_receipt", None, {H, W, I}, 404),
    ("POST", f"{NO_CASE}/supplement", {"materials": [{"name": "购房发票"}]}, {H, W}, 404),
    ("POST", f"{NO_CASE}/withdraw", {}, {H, W}, 404),
    ("POST", f"{NO_CASE}/evaluation", {"level": "satisfied", "channel": "pc"}, {H, W}, 404),
    ("POST", f"{NO_CASE}/accept", {}, {W}, 404),
    ("POST", f"{NO_CASE}/not-accept", {"reason": "不属于受理范围"}, {W}, 404),
    ("POST", f"{NO_CASE}/supplement-request", {"missing": ["购房发票"]}, {W}, 404),
    ("POST", f"{NO_CASE}/tasks/1/decision", {"decision": "approved"}, {C}, 404),
    ("POST", f"{NO_CASE}/suspend", {"procedure": "hearing", "reason": "听证"}, {C}, 404),
    ("POST", f"{NO_CASE}/resume", {}, {C}, 404),
    ("POST", f"{NO_CASE}/certificate", CERTIFICATE, {I}, 404),
    ("POST", f"{NO_CASE}/delivery", {"method": "pickup"}, {I}, 404),
]


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


@pytest.fixture
def app(gateway: Gateway) -> FastAPI:
    return create_app(gateway)


def v1_routes(app: FastAPI) -> list[Any]:
    """The app's API routes under /v1, as served (FastAPI ≥ 0.165 keeps included routers nested)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes holds the included routes themselves
        flat: list[Any] = [r for r in app.routes if isinstance(r, APIRoute)]
    else:
        flat = [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]
    routes = [r for r in flat if r.path.startswith("/v1/")]
    assert len(routes) >= 20  # cases, case actions, catalogue, materials
    return routes


def admitted_roles(dependant: Dependant) -> Iterator[frozenset[Role]]:
    """The roles of every `require()` among a route's dependencies, however deep."""
    for dependency in dependant.dependencies:
        roles = getattr(dependency.call, "admitted_roles", None)
        if roles is not None:
            yield roles
        yield from admitted_roles(dependency)


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


def test_case_actions_admit_exactly_their_roles(app: FastAPI, gateway: Gateway) -> None:
    clients = {role: TestClient(app, headers=headers_of(gateway, role)) for role in Role}
    wrong = []
    for method, path, body, admitted, status in CASE_ACTIONS:
        for role, client in clients.items():
            answer = client.request(method, path, json=body)
            expected = (status, None) if role in admitted else (403, "urn:yiwang:problem:forbidden")
            got = (answer.status_code, answer.json().get("type") if role not in admitted else None)
            if got != expected:
                wrong.append(f"{role} {method} {path}: {answer.status_code} {answer.text[:120]}")
    assert wrong == []


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
