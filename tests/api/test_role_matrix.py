"""The role matrix (tests/data/role_matrix.csv) walked against the running app, cell by cell.

Every route × every role (and no key at all) is one real request. The matrix is hand-written data:
a route missing from it, a row naming no route, a role without a column, or any unexpected allow or
deny fails. Routes added later (certificates, audit, dead letters) are picked up from the app itself.
The second part sends sector A's administrator at sector B's objects through every sector route.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from tests.support.gateways import SOCIAL_SECURITY_AGENCY

MATRIX = Path(__file__).parents[1] / "data" / "role_matrix.csv"
PROBLEM = "application/problem+json"
ANONYMOUS = "anonymous"
COLUMNS = [ANONYMOUS, *(str(r) for r in Role)]
VERDICTS = {"allow", "deny", "own"}
OWN_SECTOR, OTHER_SECTOR = "social_security", "housing_fund"
# Path parameters: real values where access control looks at them (the sector admin's own sector),
# harmless ones elsewhere (nothing of that id exists: an admitted caller gets 404/409/422, not 403).
PATH_VALUES = {"sector": OWN_SECTOR, "version": "1", "code": "NOPE", "case_no": "NOPE", "task_id": "1",
               "kind": "acceptance_receipt", "ref": "NOPE", "name": "matrix-cert",
               "identity_id": "id_nobody", "approval_id": "ap_nobody",
               "webhook_id": "wh_nobody"}
Route = tuple[str, str]  # (method, path template)
CERTIFICATES = "/v1/certificates"


def load_matrix() -> dict[Route, dict[str, str]]:
    lines = [line for line in MATRIX.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    reader = csv.DictReader(lines)
    assert reader.fieldnames == ["method", "path", *COLUMNS], "the matrix needs one column per role, in Role order"
    matrix: dict[Route, dict[str, str]] = {}
    for row in reader:
        route = (row.pop("method"), row.pop("path"))
        assert route not in matrix, f"{route} appears twice in the matrix"
        assert set(row.values()) <= VERDICTS, f"{route}: verdicts are allow, deny or own"
        matrix[route] = row
    return matrix


def served_routes(app: FastAPI) -> dict[Route, APIRoute]:
    """Every API route the app serves (FastAPI ≥ 0.165 keeps included routers nested)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes holds the included routes themselves
        flat: list[Any] = [r for r in app.routes if isinstance(r, APIRoute)]
    else:
        flat = [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]
    return {(method, r.path): r for r in flat for method in r.methods}


def url(path: str, **values: str) -> str:
    given = {**PATH_VALUES, **values}
    return re.sub(r"\{(\w+)[^}]*\}", lambda m: given.get(m.group(1), "1"), path)


def call(client: TestClient, method: str, path: str) -> Any:
    return client.request(method, path, json={} if method in ("POST", "PUT", "PATCH") else None)


def clients(app: FastAPI, gateway: Gateway, sector: str = OWN_SECTOR) -> dict[str, TestClient]:
    """A client per matrix column: no key, and one identity per role (scoped ones scoped)."""
    scope = {Role.CLERK: {"department": SOCIAL_SECURITY_AGENCY}, Role.SECTOR_ADMIN: {"sector": sector}}
    made = {ANONYMOUS: TestClient(app)}
    for role in Role:
        _, key = gateway.keys.issue(f"matrix {role}", [role], **scope.get(role, {}))
        made[str(role)] = TestClient(app, headers={"Authorization": f"Bearer {key}"})
    return made


def certificate_of(app: FastAPI, gateway: Gateway, name: str, sector: str) -> None:
    """A certificate-store entry owned by `sector` (a key and CSR), so sector-scoped routes meet a real object."""
    if ("POST", CERTIFICATES + "/{name}/csr") not in served_routes(app):
        return
    security_admin = clients(app, gateway)[str(Role.SECURITY_ADMIN)]
    made = security_admin.post(f"{CERTIFICATES}/{name}/csr", json={"subject": {"common_name": name},
                                                                      "sector": sector})
    assert made.status_code == 201, made.text


def mismatch(verdict: str, column: str, status: int, problem: str | None, own_status: int) -> str | None:
    """Why this answer breaks the cell's verdict, or None when it keeps it."""
    if status == 500:
        return "a crash"
    if verdict == "own":
        return None if status == own_status else f"a key changed the answer (without one: {own_status})"
    denied = 401 if column == ANONYMOUS else 403
    expected_type = "urn:yiwang:problem:" + ("not-authenticated" if denied == 401 else "forbidden")
    if verdict == "deny":
        return None if (status, problem) == (denied, expected_type) else "should be denied"
    return "should be allowed" if status in (401, 403) else None


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway(bundles=(OWN_SECTOR, OTHER_SECTOR))


@pytest.fixture
def app(gateway: Gateway) -> FastAPI:
    return create_app(gateway)


def test_the_matrix_names_every_route_and_only_routes(app: FastAPI) -> None:
    served, written = set(served_routes(app)), set(load_matrix())
    assert sorted(served - written) == [], "routes missing from tests/data/role_matrix.csv"
    assert sorted(written - served) == [], "matrix rows that name no route"


def test_every_role_gets_exactly_what_the_matrix_says(app: FastAPI, gateway: Gateway) -> None:
    by_column = clients(app, gateway)
    certificate_of(app, gateway, PATH_VALUES["name"], OWN_SECTOR)
    wrong = []
    for (method, path), row in sorted(load_matrix().items()):
        if (method, path) not in served_routes(app):
            continue  # reported by the test above
        target = url(path)
        own_status = call(by_column[ANONYMOUS], method, target).status_code
        for column in COLUMNS:
            answer = call(by_column[column], method, target)
            problem = answer.json().get("type") if answer.headers.get("content-type") == PROBLEM else None
            why = mismatch(row[column], column, answer.status_code, problem, own_status)
            if why:
                wrong.append(f"{column} {method} {target}: {why}: {answer.status_code} {answer.text[:100]}")
    assert wrong == []


def test_a_sector_administrator_reaches_no_other_sectors_objects(app: FastAPI, gateway: Gateway) -> None:
    """Sector A's administrator against sector B's real bundle, through every route that names a sector."""
    other_version = gateway.bundles.versions(OTHER_SECTOR)[0].version
    other_certificate = "their-cert"
    certificate_of(app, gateway, other_certificate, OTHER_SECTOR)
    admin = clients(app, gateway)[str(Role.SECTOR_ADMIN)]
    sector_routes = [(m, p) for (m, p), row in load_matrix().items() if row[str(Role.SECTOR_ADMIN)] == "allow"
                     and ("{sector}" in p or p.startswith(CERTIFICATES + "/{name}"))]
    assert len(sector_routes) >= 6  # versions, test, activate, rollback, retire, preview, certificates…
    bodies = {"preview": {"operation": "submit_case"}, "csr": {"subject": {"common_name": "x"}}}
    wrong = []
    for method, path in sector_routes:
        target = url(path, sector=OTHER_SECTOR, version=other_version, name=other_certificate)
        answer = admin.request(method, target, json=bodies.get(path.rsplit("/", 1)[-1], {})
                               if method != "GET" else None)
        if answer.status_code != 403:
            wrong.append(f"{method} {target}: {answer.status_code} {answer.text[:100]}")
    assert wrong == []
    assert gateway.bundles.versions(OTHER_SECTOR)[0].status == "active"  # nothing changed on B's side
    # Lists show A's own objects only, and asking for B's is refused.
    assert set(admin.get("/v1/adapters").json()) == {OWN_SECTOR}
    assert admin.get(f"/v1/adapters/{OWN_SECTOR}/versions").status_code == 200
    assert admin.get("/v1/messages", params={"sector": OTHER_SECTOR}).status_code == 403
    assert admin.get("/v1/messages", params={"sector": OWN_SECTOR}).status_code == 200


def test_a_sector_administrator_cannot_register_another_sectors_bundle(app: FastAPI, gateway: Gateway) -> None:
    from adapters.registry import default_bundles_dir
    from gateway.sectors.bundle_records import pack_folder

    admin = clients(app, gateway)[str(Role.SECTOR_ADMIN)]
    archive = pack_folder(default_bundles_dir() / OTHER_SECTOR)
    answer = admin.post("/v1/adapters/bundles", content=archive)
    assert answer.status_code == 403 and answer.json()["type"] == "urn:yiwang:problem:forbidden", answer.text
