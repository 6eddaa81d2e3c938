"""Separation of duties (三员分立): system, security and audit administrators are three identities.

Proved in the key store (issue, change, and authenticate denying a row that breaks the rule however
it was written), the CLI, and the security administrator's identity endpoints.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from gateway.bootstrap.app import Gateway, create_app
from gateway.cli.common import REFUSED
from gateway.cli.keys import make_keys_app
from gateway.domain.clock import SystemClock
from gateway.domain.roles import Role
from gateway.persistence.identity_tables import identities
from gateway.security.api_keys import ApiKeyStore, IdentityError, SeparationOfDuties, hash_key
from tests.support.gateways import Keys

SYS, SEC, AUD, OPS = Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDITOR, Role.OPERATOR
BREACHES = [[SYS, SEC], [SEC, AUD], [SYS, AUD], [OPS, AUD], [OPS, SEC], [SYS, SEC, AUD]]


@pytest.fixture
def store(engine: Engine) -> ApiKeyStore:
    return ApiKeyStore(engine)


# --- the key store -----------------------------------------------------------------------------------


@pytest.mark.parametrize("roles", BREACHES)
def test_no_identity_is_issued_two_duties(store: ApiKeyStore, roles: list[Role]) -> None:
    with pytest.raises(SeparationOfDuties, match="^违反三员分立："):
        store.issue("one person", roles)
    assert store.list() == []


def test_one_duty_with_business_roles_is_fine(store: ApiKeyStore) -> None:
    for roles in ([SYS, OPS], [SEC], [AUD, Role.HALL_CLIENT], [SEC, Role.CATALOGUE_ADMIN]):
        identity, key = store.issue("someone", roles)
        assert store.authenticate(key) == identity


@pytest.mark.parametrize("roles", BREACHES)
def test_no_identity_is_changed_into_two_duties(store: ApiKeyStore, roles: list[Role]) -> None:
    identity, key = store.issue("auditor", [AUD])
    with pytest.raises(SeparationOfDuties):
        store.change(identity.id, roles)
    assert store.authenticate(key) == identity  # unchanged
    assert ApiKeyStore(store._units.engine).authenticate(key) == identity  # in the database too


def test_a_change_takes_effect_at_once_and_keeps_the_key(store: ApiKeyStore) -> None:
    identity, key = store.issue("ops", [OPS])
    changed = store.change(identity.id, [Role.SECTOR_ADMIN], sector="housing_fund")
    assert store.authenticate(key) == changed and changed.roles == {Role.SECTOR_ADMIN}
    assert ApiKeyStore(store._units.engine).authenticate(key) == changed  # another process sees it from the row
    store.revoke(identity.id)
    with pytest.raises(IdentityError, match="吊销"):
        store.change(identity.id, [OPS])


def test_authenticate_denies_a_row_holding_two_duties(engine: Engine, store: ApiKeyStore) -> None:
    """Defence in depth: a row written past the rules (by hand, by an old version) is nobody."""
    raw_key = "yw_written-by-hand-" + "x" * 30
    with engine.begin() as conn:
        conn.execute(insert(identities).values(
            id="id_handwritten", name="root", key_hash=hash_key(raw_key), key_prefix=raw_key[:10],
            roles=[str(SEC), str(AUD)], created_at=SystemClock().now()))
    _, fine_key = store.issue("fine", [AUD])
    assert store.authenticate(raw_key) is None
    assert store.authenticate(fine_key) is not None  # the rest of the map loads as usual
    assert [i.identity.id for i in store.list()][0] == "id_handwritten"  # still listed: a person must fix it


# --- the CLI -----------------------------------------------------------------------------------------


def test_the_cli_refuses_two_duties_readably(store: ApiKeyStore) -> None:
    runner, app = CliRunner(), make_keys_app(lambda: store)
    refused = runner.invoke(app, ["issue", "--name", "x", "--role", "security_admin", "--role", "auditor"])
    assert refused.exit_code == REFUSED and "error: 违反三员分立：auditor、security_admin" in refused.output
    assert "Traceback" not in refused.output and store.list() == []

    issued = runner.invoke(app, ["issue", "--name", "auditor", "--role", "auditor"])
    identity_id = re.search(r"^identity: (id_\w+)$", issued.output, re.M).group(1)  # type: ignore[union-attr]
    changed = runner.invoke(app, ["roles", identity_id, "--role", "auditor", "--role", "system_admin"])
    assert changed.exit_code == REFUSED and "error: 违反三员分立" in changed.output
    changed = runner.invoke(app, ["roles", identity_id, "--role", "security_admin"])
    assert changed.exit_code == 0 and f"{identity_id} (auditor) now holds security_admin" in changed.output


# --- over HTTP: the security administrator -------------------------------------------------------------


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway(bundles=())


@pytest.fixture
def client(gateway: Gateway) -> TestClient:
    return TestClient(create_app(gateway), headers=Keys.of(gateway, SEC, name="security admin"))


def problem(answer: Any, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["type"] == f"urn:yiwang:problem:{slug}", body
    return body


def test_the_security_administrator_issues_lists_changes_and_revokes(client: TestClient, gateway: Gateway) -> None:
    issued = client.post("/v1/identities", json={"name": "window 3", "roles": ["window"]})
    assert issued.status_code == 201, issued.text
    created = issued.json()
    key, identity_id = created.pop("key"), created["id"]
    assert created["roles"] == ["window"] and created["active"] and key.startswith(created["key_prefix"])
    as_window = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/cases/lookup", json={"id_number": "x"}, headers=as_window).status_code == 200

    listed = client.get("/v1/identities")
    assert identity_id in {i["id"] for i in listed.json()["items"]} and key not in listed.text
    assert hash_key(key) not in listed.text
    assert client.get(f"/v1/identities/{identity_id}").json() == created

    changed = client.put(f"/v1/identities/{identity_id}/roles", json={"roles": ["clerk"],
                                                                       "department": "12150200MB1A00010L"})
    assert changed.status_code == 200 and changed.json()["roles"] == ["clerk"]
    refused = client.post("/v1/cases/lookup", json={"id_number": "x"}, headers=as_window)
    problem(refused, 403, "forbidden")  # the window role is gone at once

    revoked = client.post(f"/v1/identities/{identity_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    problem(client.post("/v1/cases/lookup", json={"id_number": "x"}, headers=as_window), 401, "not-authenticated")
    problem(client.post(f"/v1/identities/{identity_id}/revoke"), 409, "identity-revoked")


@pytest.mark.parametrize("roles", [[str(r) for r in b] for b in BREACHES])
def test_no_identity_gets_two_duties_over_http(client: TestClient, gateway: Gateway, roles: list[str]) -> None:
    before = len(gateway.keys.list())
    body = problem(client.post("/v1/identities", json={"name": "root", "roles": roles}), 422, "separation-of-duties")
    assert "违反三员分立" in body["detail"]
    assert len(gateway.keys.list()) == before

    auditor = client.post("/v1/identities", json={"name": "auditor", "roles": ["auditor"]}).json()
    problem(client.put(f"/v1/identities/{auditor['id']}/roles", json={"roles": roles}), 422, "separation-of-duties")
    assert client.get(f"/v1/identities/{auditor['id']}").json()["roles"] == ["auditor"]


def test_the_security_administrator_cannot_change_their_own_roles(gateway: Gateway) -> None:
    admin, key = gateway.keys.issue("security admin", [SEC])
    client = TestClient(create_app(gateway), headers={"Authorization": f"Bearer {key}"})
    for roles in (["security_admin", "catalogue_admin"], ["security_admin", "auditor"], ["operator"]):
        problem(client.put(f"/v1/identities/{admin.id}/roles", json={"roles": roles}), 403, "forbidden")
    assert gateway.keys.authenticate(key) == admin


@pytest.mark.parametrize(("body", "slug"), [
    ({"name": "x", "roles": ["mayor"]}, "invalid-identity"),
    ({"name": "x", "roles": ["clerk"]}, "invalid-identity"),
    ({"name": "x", "roles": []}, "invalid-request"),
    ({"name": "x", "roles": ["window"], "extra": 1}, "invalid-request"),
])
def test_bad_identities_are_422_problems_and_store_nothing(client: TestClient, gateway: Gateway,
                                                           body: dict[str, Any], slug: str) -> None:
    before = len(gateway.keys.list())
    problem(client.post("/v1/identities", json=body), 422, slug)
    assert len(gateway.keys.list()) == before


def test_unknown_identities_are_404(client: TestClient) -> None:
    problem(client.get("/v1/identities/id_nobody"), 404, "unknown-identity")
    problem(client.post("/v1/identities/id_nobody/revoke"), 404, "unknown-identity")
    problem(client.put("/v1/identities/id_nobody/roles", json={"roles": ["window"]}), 404, "unknown-identity")
