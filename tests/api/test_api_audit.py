"""The logs through the running gateway: deliveries and callbacks leave sent/received records, every change
through /v1 and every admin command is audited, and who may read what (auditor, operator, sector admins)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from typer.testing import CliRunner

from adapters.simulators.public_security import PublicSecuritySimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.audit.ledger import AUDIT, MESSAGE, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.bootstrap.serving import serve_in_thread
from gateway.cli.common import NOT_FOUND
from gateway.domain.roles import Role
from tests.support.gateways import COMPLETE_APPLICATION, Keys, drain
from tests.support.simulators import eventually

PERSON = COMPLETE_APPLICATION["applicant"]["id_number"]
ID_CARD_RENEWAL = "11150203MB0E00080E4000114002000"  # 居民身份证换领: public security, decided by callback


class World:
    def __init__(self, gateway: Gateway, url: str) -> None:
        self.gateway, self.url, self.keys = gateway, url, Keys.issue(gateway)

    def client(self, *roles: Role, **scope: str) -> httpx.Client:
        _, key = self.gateway.keys.issue(f"test {roles[0]}", list(roles), **scope)
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def submit(self, body: dict[str, Any]) -> str:
        with httpx.Client(base_url=self.url, headers=self.keys.window, timeout=30) as window:
            answer = window.post("/v1/cases", json={**body, "channel": "city_window"})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["case_no"])

    def state(self, case_no: str) -> str:
        return str(self.gateway.service.get(case_no).state)


@pytest.fixture
def world(make_gateway: Callable[..., Gateway]) -> Iterator[World]:
    with ExitStack() as stack:
        social = stack.enter_context(SocialSecuritySimulator(decision_delay_ms=50))
        police = stack.enter_context(PublicSecuritySimulator(decision_delay_ms=50))
        gateway = make_gateway(bundles=("social_security", "public_security"),
                               sector_endpoints={"social_security": social.url, "public_security": police.url})
        url = stack.enter_context(serve_in_thread(create_app(gateway)))
        police.callback_url = f"{url}/callbacks/public_security"
        yield World(gateway, url)


def messages(world: World, **filters: Any) -> list[tuple[str | None, str, str | None, str | None]]:
    records = world.gateway.ledger.records(Filters(MESSAGE, **filters), 1000)
    return [(r.sector, r.action, r.subject, r.outcome) for r in records]


def test_a_delivery_is_logged_sent_and_received_with_sealed_bodies(world: World) -> None:
    case_no = world.submit(COMPLETE_APPLICATION)
    drain(world.gateway, lambda: world.state(case_no) == "approved")
    logged = messages(world, case_no=case_no)
    assert logged[:2] == [("social_security", "sent", "submit_case", "sent"),
                          ("social_security", "received", "submit_case", "ok")]
    assert ("social_security", "received", "query_status", "ok") in logged
    with world.gateway.engine.connect() as conn:
        raw = "".join(str(tuple(r)) for r in conn.exec_driver_sql("SELECT * FROM ledger_records"))
    assert PERSON not in raw
    sent = world.gateway.ledger.records(Filters(MESSAGE, case_no=case_no))[0]
    assert PERSON in str(world.gateway.ledger.open_body(sent))  # the rendered SubmitCase request


def test_a_callback_is_logged_as_received(world: World) -> None:
    body = {"matter_code": ID_CARD_RENEWAL, "applicant": {"name": "王建国", "id_number": PERSON},
            "materials": [{"name": "居民户口簿"}, {"name": "原居民身份证"}]}
    case_no = world.submit(body)
    drain(world.gateway, lambda: world.state(case_no) == "approved")
    assert ("public_security", "received", "callback", "ok") in messages(world, sector="public_security")
    forged = httpx.post(f"{world.url}/callbacks/public_security", json={"JG": "TY"},
                        headers={"X-Ca-Key": "ga-callback", "X-Ca-Timestamp": "0", "X-Ca-Nonce": "n",
                                 "X-Ca-Signature": "AAAA"})
    assert forged.status_code == 401
    assert messages(world, sector="public_security")[-1] == ("public_security", "received", "callback", "rejected")


def test_every_change_through_v1_is_audited_with_identity_route_and_outcome(world: World) -> None:
    case_no = world.submit(COMPLETE_APPLICATION)
    with world.client(Role.HALL_CLIENT) as hall:
        refused = hall.post(f"/v1/cases/{case_no}/accept", json={})  # the hall may not accept
        hall.get(f"/v1/cases/{case_no}")  # reading changes nothing: not audited
    assert refused.status_code == 403
    refusal_recorded = ("POST /v1/cases/{case_no}/accept", f"case_no={case_no}", "403 refused", case_no)

    def seen_now() -> list[tuple[str, str | None, str | None, str | None]]:
        return [(r.action, r.subject, r.outcome, r.case_no) for r in world.gateway.ledger.records(Filters(AUDIT))]

    # The trail writes a record once the answer has gone (AuditTrail's `finally`): under load the client can
    # read before that write commits, so wait for it, briefly.
    eventually(lambda: refusal_recorded in seen_now(), timeout=5.0)
    records = world.gateway.ledger.records(Filters(AUDIT))
    seen = [(r.action, r.subject, r.outcome, r.case_no) for r in records]
    assert ("POST /v1/cases", None, "201 ok", None) in seen
    assert ("POST /v1/cases/{case_no}/accept", f"case_no={case_no}", "403 refused", case_no) in seen
    assert not any(r.action.startswith("GET") for r in records)
    refusal = next(r for r in records if r.outcome == "403 refused")
    assert refusal.actor.startswith("identity:id_")  # named even though refused


def test_the_auditor_lists_filters_pages_and_verifies_but_changes_nothing(world: World) -> None:
    world.submit(COMPLETE_APPLICATION)
    world.submit(COMPLETE_APPLICATION)
    with world.client(Role.AUDITOR) as auditor:
        first = auditor.get("/v1/audit", params={"action": "POST /v1/cases", "limit": 1}).json()
        second = auditor.get("/v1/audit", params={"action": "POST /v1/cases", "limit": 1,
                                                  "cursor": first["next_cursor"]}).json()
        assert [i["action"] for i in first["items"] + second["items"]] == ["POST /v1/cases"] * 2
        assert second["next_cursor"] is None and first["total"] is None  # the log is not counted
        assert first["items"][0]["id"] < second["items"][0]["id"]
        assert first["items"][0]["detail"]["status"] == 201
        later = auditor.get("/v1/audit", params={"since": "2999-01-01T00:00"}).json()
        assert later["items"] == []
        world.gateway.ledger.audit("identity:test", "sector filter", "one", None, "housing_fund", case_no="C-1")
        world.gateway.ledger.audit("identity:test", "sector filter", "two", None, "social_security", case_no="C-2")
        for params, subjects in (({"sector": "housing_fund"}, ["one"]), ({"case_no": "C-2"}, ["two"]),
                                 ({"sector": "housing_fund", "case_no": "C-2"}, [])):
            items = auditor.get("/v1/audit", params={"action": "sector filter", **params}).json()["items"]
            assert [i["subject"] for i in items] == subjects, params
        verified = auditor.get("/v1/audit/verify").json()
        assert verified["intact"] is True and verified["records"] >= 2
        assert auditor.get("/v1/messages").status_code == 403
        assert auditor.post("/v1/cases", json=COMPLETE_APPLICATION).status_code == 403
        assert auditor.get("/v1/audit", params={"limit": 0}).status_code == 422
    with world.client(Role.OPERATOR) as operator:
        assert operator.get("/v1/audit").status_code == 403
        assert operator.get("/v1/messages", params={"direction": "sideways"}).status_code == 422


def test_message_bodies_are_masked_and_an_unmasked_read_is_audited(world: World) -> None:
    case_no = world.submit(COMPLETE_APPLICATION)
    drain(world.gateway, lambda: world.state(case_no) == "approved")
    sent = world.gateway.ledger.records(Filters(MESSAGE, case_no=case_no))[0]
    with world.client(Role.OPERATOR) as operator:
        listed = operator.get("/v1/messages", params={"case_no": case_no}).json()["items"]
        masked = operator.get(f"/v1/messages/{sent.id}").json()
        plain = operator.get(f"/v1/messages/{sent.id}", params={"unmasked": "true"}).json()
        missing = operator.get("/v1/messages/999999")
    assert listed[0]["id"] == sent.id and "body" not in listed[0]
    assert masked["masked"] and PERSON not in str(masked["body"]) and "1502**********0039" in str(masked["body"])
    assert not plain["masked"] and PERSON in str(plain["body"])
    assert missing.status_code == 404 and missing.json()["type"] == "urn:yiwang:problem:message-not-found"
    reads = world.gateway.ledger.records(Filters(AUDIT, action="read unmasked message"))
    assert [(r.subject, r.sector, r.case_no) for r in reads] == [(f"message:{sent.id}", "social_security", case_no)]


def test_a_sector_admin_sees_only_their_own_sector(world: World) -> None:
    case_no = world.submit(COMPLETE_APPLICATION)
    drain(world.gateway, lambda: world.state(case_no) == "approved")
    social = world.gateway.ledger.records(Filters(MESSAGE, sector="social_security"))[0]
    with world.client(Role.SECTOR_ADMIN, sector="public_security") as police_admin:
        assert police_admin.get("/v1/messages").json()["items"] == []
        assert police_admin.get("/v1/messages", params={"sector": "social_security"}).status_code == 403
        assert police_admin.get(f"/v1/messages/{social.id}").status_code == 403
        assert police_admin.get(f"/v1/messages/{social.id}", params={"unmasked": "true"}).status_code == 403
    with world.client(Role.SECTOR_ADMIN, sector="social_security") as social_admin:
        own = social_admin.get("/v1/messages").json()["items"]
        assert own and {i["sector"] for i in own} == {"social_security"}
        assert PERSON not in str(social_admin.get(f"/v1/messages/{social.id}").json())
        plain = social_admin.get(f"/v1/messages/{social.id}", params={"unmasked": "true"})
        assert plain.status_code == 200 and plain.json()["masked"] is False  # their own sector's: audited
    [read] = world.gateway.ledger.records(Filters(AUDIT, action="read unmasked message"))
    assert read.subject == f"message:{social.id}"


def test_admin_commands_at_the_command_line_are_audited(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        request: pytest.FixtureRequest) -> None:
    from gateway.bootstrap.cli import app

    # The commands configure logging onto CliRunner's stderr, closed after each run: restore it after the test.
    saved = structlog.get_config()
    request.addfinalizer(lambda: structlog.configure(**saved))
    monkeypatch.setenv("YIWANG_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("YIWANG_DATABASE_URL", db_url)
    runner = CliRunner()
    issued = runner.invoke(app, ["keys", "issue", "--name", "审计员", "--role", "auditor"])
    assert issued.exit_code == 0, issued.output
    assert runner.invoke(app, ["keys", "revoke", "id_nobody"]).exit_code == NOT_FOUND
    assert runner.invoke(app, ["keys", "list"]).exit_code == 0
    listed = runner.invoke(app, ["audit", "list"])
    assert listed.exit_code == 0
    assert "keys issue" in listed.output and "id_nobody" in listed.output and "exit 3" in listed.output
    assert "keys list" not in listed.output
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0 and "intact" in verified.output
