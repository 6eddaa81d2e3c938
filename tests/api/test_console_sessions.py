"""The console's sign-in and sessions: a key for a server-side session, cookies hardened, CSRF on every change,
timeouts, lockout, sign-out, revocation — on both databases, through the app as served."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.audit.ledger import Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import FixedClock
from gateway.domain.roles import Role
from gateway.persistence.identity_tables import console_sessions
from gateway.security.sessions import session_hash
from ops.console import CSP
from tests.support.console import FORM_TOKEN, csrf_of, key_of, sign_in
from tests.support.gateways import PINNED


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(PINNED)


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], clock: FixedClock) -> Gateway:
    return make_gateway(clock=clock, console_lockout_failures=3)


@pytest.fixture
def client(gateway: Gateway) -> TestClient:
    return TestClient(create_app(gateway))


def test_a_page_without_a_session_sends_the_browser_to_sign_in_and_back(client: TestClient) -> None:
    answer = client.get("/console?since=x", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in?next=%2Fconsole%3Fsince%3Dx"


def test_signing_in_with_a_key_opens_a_new_hardened_session(client: TestClient, gateway: Gateway) -> None:
    key = key_of(gateway, Role.OPERATOR)
    first_csrf = sign_in(client, key)
    first = client.cookies.get("yiwang_console")
    page = client.get("/console")
    assert page.status_code == 200 and "概览" in page.text and "值班员" in page.text
    form = client.get("/console/sign-in")
    answer = client.post("/console/sign-in", data={"form_token": FORM_TOKEN.search(form.text)[1],  # type: ignore[index]
                                                   "key": key}, follow_redirects=False)
    set_cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie and "Path=/console" in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP from a client that is not the TLS terminator
    assert client.cookies.get("yiwang_console") != first, "a sign-in always makes a new session id"
    assert csrf_of(client.get("/console").text) != first_csrf
    assert answer.headers["location"] == "/console"


def test_console_answers_carry_a_strict_content_security_policy(client: TestClient) -> None:
    answer = client.get("/console/sign-in")
    assert answer.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"


def test_the_terminators_forwarded_scheme_makes_the_cookie_secure_only_from_its_address(
        make_gateway: Callable[..., Gateway]) -> None:
    trusted = make_gateway(tls_proxies=frozenset({"testclient"}))
    for gateway, secure in ((trusted, True), (make_gateway(), False)):
        client = TestClient(create_app(gateway))
        form = client.get("/console/sign-in", headers={"x-forwarded-proto": "https"})
        answer = client.post("/console/sign-in", headers={"x-forwarded-proto": "https"}, follow_redirects=False,
                             data={"form_token": FORM_TOKEN.search(form.text)[1],  # type: ignore[index]
                                   "key": key_of(gateway, Role.OPERATOR)})
        assert ("Secure" in answer.headers["set-cookie"]) is secure


def test_a_role_the_console_is_not_for_gets_a_page_saying_so_and_no_session(client: TestClient,
                                                                            gateway: Gateway) -> None:
    form = client.get("/console/sign-in")
    answer = client.post("/console/sign-in", data={"form_token": FORM_TOKEN.search(form.text)[1],  # type: ignore[index]
                                                   "key": key_of(gateway, Role.HALL_CLIENT)})
    assert answer.status_code == 403 and "控制台不对该角色开放" in answer.text
    assert "yiwang_console" not in client.cookies


def test_roles_changed_after_sign_in_count_at_once(client: TestClient, gateway: Gateway) -> None:
    identity, key = gateway.keys.issue("值班员", [Role.OPERATOR])
    sign_in(client, key)
    gateway.keys.change(identity.id, [Role.HALL_CLIENT])
    answer = client.get("/console")
    assert answer.status_code == 403 and "控制台不对该角色开放" in answer.text


def test_a_forged_sign_in_form_is_refused(client: TestClient, gateway: Gateway) -> None:
    client.get("/console/sign-in")
    answer = client.post("/console/sign-in", data={"form_token": "forged", "key": key_of(gateway, Role.OPERATOR)})
    assert answer.status_code == 403 and "yiwang_console" not in client.cookies


def test_repeated_failures_lock_the_address_out_even_for_a_right_key(client: TestClient, gateway: Gateway,
                                                                     clock: FixedClock) -> None:
    def attempt(key: str) -> int:
        form = client.get("/console/sign-in")
        return client.post("/console/sign-in", follow_redirects=False,
                           data={"form_token": FORM_TOKEN.search(form.text)[1], "key": key}).status_code  # type: ignore[index]

    assert [attempt("yw_wrong") for _ in range(3)] == [401, 401, 401]
    good = key_of(gateway, Role.OPERATOR)
    assert attempt(good) == 429
    clock.advance(timedelta(minutes=16))
    assert attempt(good) == 303
    records = [r.action for r in gateway.ledger.records(Filters(kind="audit"), limit=100)]
    assert records.count("console sign-in failed") == 3 and "console sign-in refused" in records


def test_sessions_end_when_idle_and_when_too_old(client: TestClient, gateway: Gateway, clock: FixedClock) -> None:
    sign_in(client, key_of(gateway, Role.OPERATOR))
    clock.advance(timedelta(minutes=29))
    assert client.get("/console", follow_redirects=False).status_code == 200  # used: the idle timer restarts
    clock.advance(timedelta(minutes=29))
    assert client.get("/console", follow_redirects=False).status_code == 200
    clock.advance(timedelta(minutes=31))
    assert client.get("/console", follow_redirects=False).status_code == 303  # idle too long
    sign_in(client, key_of(gateway, Role.OPERATOR))
    for _ in range(17):  # busy all along, but 8 hours is the most a session lives
        clock.advance(timedelta(minutes=29))
        client.get("/console", follow_redirects=False)
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_on_every_node(make_gateway: Callable[..., Gateway], gateway: Gateway,
                                                 client: TestClient) -> None:
    csrf = sign_in(client, key_of(gateway, Role.OPERATOR))
    cookie = client.cookies.get("yiwang_console")
    other_node = TestClient(create_app(gateway))  # another app on the same database
    other_node.cookies.set("yiwang_console", cookie or "", path="/console")
    assert other_node.get("/console", follow_redirects=False).status_code == 200
    assert client.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert other_node.get("/console", follow_redirects=False).status_code == 303


def test_revoking_the_identity_ends_its_sessions(client: TestClient, gateway: Gateway) -> None:
    identity, key = gateway.keys.issue("值班员", [Role.OPERATOR])
    sign_in(client, key)
    cookie = client.cookies.get("yiwang_console") or ""
    gateway.keys.revoke(identity.id)
    with gateway.engine.connect() as conn:
        ended = conn.execute(select(console_sessions.c.ended_why)
                             .where(console_sessions.c.id_hash == session_hash(cookie))).scalar_one()
    assert ended == "revoked"
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_a_change_without_the_csrf_token_or_with_anothers_is_refused(client: TestClient, gateway: Gateway) -> None:
    other = TestClient(create_app(gateway))
    others_csrf = sign_in(other, key_of(gateway, Role.OPERATOR, name="另一人"))
    sign_in(client, key_of(gateway, Role.OPERATOR))
    assert client.post("/console/sign-out", follow_redirects=False).status_code == 403
    assert client.post("/console/sign-out", data={"csrf": others_csrf}, follow_redirects=False).status_code == 403
    refused = client.post("/console/sign-out", headers={"origin": "https://evil.example", "x-csrf-token": "x"})
    assert refused.status_code == 403 and "urn:yiwang:problem:csrf" in refused.text
    assert client.get("/console", follow_redirects=False).status_code == 200  # still signed in


def test_a_session_cookie_belongs_to_its_own_identity_not_to_an_api_key(client: TestClient, gateway: Gateway) -> None:
    """An API key on a console request is ignored: only the session says who is signed in."""
    operator = {"Authorization": f"Bearer {key_of(gateway, Role.OPERATOR)}"}
    assert client.get("/console", headers=operator, follow_redirects=False).status_code == 303
    other = TestClient(create_app(gateway))
    sign_in(other, key_of(gateway, Role.AUDITOR, name="审计员"))
    client.cookies.set("yiwang_console", other.cookies.get("yiwang_console") or "", path="/console")
    assert "审计员" in client.get("/console", headers=operator).text  # whose session it is, whatever the key
