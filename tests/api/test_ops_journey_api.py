"""A case's journey over HTTP (ops/api.py on ops/journey.py): `GET /v1/ops/cases/{case_no}/journey` and
`GET /v1/ops/journeys?correlation_id=…`.

Operators read any case's journey; a sector administrator only a case with a message to their sector — another's
is 404 as if it did not exist — and then without what belongs to other sectors. Masked by default;
`unmasked=true` only for who may (`may_unmask`), written to the audit log before it is answered. A correlation
id nobody wrote a message under, and a case that does not exist, are 404 `case-not-found`. A sector's callback is
part of its case's story. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.public_security import CALLBACK_KEY_ID, DEFAULT_SECRET, PublicSecuritySimulator, signed_headers
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.persistence.repository import Failure
from tests.support.gateways import Keys, drain
from tests.support.hostile import PERSON, assert_problem
from tests.support.journeys import ID_NUMBER, Story, storied_gateway, tell_story
from tests.support.receiver import Receiver, receiver  # noqa: F401 - `receiver` is a fixture

OPS = "/v1/ops"
UNMASKED = "read unmasked journey"


@dataclass
class Desk:
    gateway: Gateway
    story: Story
    clients: dict[str, TestClient]
    ids: dict[str, str]

    def journey(self, who: str, case_no: str | None = None, **params: Any) -> Any:
        return self.clients[who].get(f"{OPS}/cases/{case_no or self.story.case_no}/journey", params=params)

    def unmasked_reads(self) -> list[tuple[str, str | None, str | None]]:
        return [(r.actor, r.subject, r.case_no) for r in self.gateway.ledger.records(Filters(AUDIT, action=UNMASKED))]


@pytest.fixture
def desk(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator,
         receiver: Receiver) -> Desk:  # noqa: F811 - the fixture
    gateway = storied_gateway(make_gateway, simulator)
    story = tell_story(gateway, simulator, receiver)
    app = create_app(gateway)
    clients, ids = {}, {}
    callers: list[tuple[str, Role, dict[str, str]]] = [
        ("operator", Role.OPERATOR, {}), ("own", Role.SECTOR_ADMIN, {"sector": "social_security"}),
        ("other", Role.SECTOR_ADMIN, {"sector": "housing_fund"}), ("hall", Role.HALL_CLIENT, {}),
        ("auditor", Role.AUDITOR, {})]
    for name, role, scope in callers:
        identity, key = gateway.keys.issue(name, [role], **scope)
        ids[name] = identity.id
        clients[name] = TestClient(app, headers={"Authorization": f"Bearer {key}"})
    return Desk(gateway, story, clients, ids)


def test_an_operator_reads_the_whole_story_masked(desk: Desk) -> None:
    answer = desk.journey("operator")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["case"]["case_no"], body["masked"], body["truncated"]) == (desk.story.case_no, True, False)
    kinds = [entry["kind"] for entry in body["entries"]]
    assert {"event", "message", "delivery", "attempt", "dead_letter", "notification"} <= set(kinds)
    assert kinds[0] == "event" and all(entry["at"].endswith("+08:00") for entry in body["entries"])  # Beijing time
    [letter] = [e for e in body["entries"] if e["kind"] == "dead_letter" and e["title"].startswith("成为死信")]
    assert letter["links"]["dead_letter_id"] == desk.story.dead_letter_id and letter["sector"] == "social_security"
    assert ID_NUMBER not in answer.text and desk.unmasked_reads() == []

    missing = desk.journey("operator", "NO-SUCH-CASE")
    assert_problem(missing, 404, "case-not-found")
    assert_problem(desk.journey("operator", "x" * 51), 422)


def test_unmasked_is_for_who_may_and_audited_before_it_is_answered(desk: Desk) -> None:
    plain = desk.journey("operator", unmasked="true")
    assert plain.status_code == 200 and plain.json()["masked"] is False
    assert ID_NUMBER in plain.text
    assert desk.unmasked_reads() == [(f"identity:{desk.ids['operator']}", f"case:{desk.story.case_no}",
                                      desk.story.case_no)]
    own = desk.journey("own", unmasked="true")
    assert own.status_code == 200 and ID_NUMBER in own.text
    assert len(desk.unmasked_reads()) == 2
    assert_problem(desk.journey("other", unmasked="true"), 404, "case-not-found")  # absent to them: nothing read
    assert len(desk.unmasked_reads()) == 2

    with audit_log_refusing_records(desk.gateway):  # the audit log cannot take the record: nothing is shown
        operator = desk.clients["operator"]
        refused = TestClient(operator.app, headers=dict(operator.headers), raise_server_exceptions=False).get(
            f"{OPS}/cases/{desk.story.case_no}/journey", params={"unmasked": "true"})
        assert desk.journey("operator").status_code == 200  # a masked read needs no record
    assert refused.status_code == 500 and ID_NUMBER not in refused.text
    assert len(desk.unmasked_reads()) == 2


@contextmanager
def audit_log_refusing_records(gateway: Gateway) -> Iterator[None]:
    """Every new log record refused by the database while the block runs (the log still reads)."""
    sqlite = gateway.engine.dialect.name == "sqlite"
    with gateway.engine.begin() as conn:
        if sqlite:
            conn.exec_driver_sql("CREATE TRIGGER refuse_records BEFORE INSERT ON ledger_records "
                                 "BEGIN SELECT RAISE(ABORT, 'the audit log is down'); END")
        else:
            conn.exec_driver_sql("CREATE FUNCTION refuse_records() RETURNS trigger LANGUAGE plpgsql AS "
                                 "$$ BEGIN RAISE EXCEPTION 'the audit log is down'; END $$")
            conn.exec_driver_sql("CREATE TRIGGER refuse_records BEFORE INSERT ON ledger_records "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse_records()")
    try:
        yield
    finally:
        with gateway.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_records" if sqlite else
                                 "DROP TRIGGER refuse_records ON ledger_records")
            if not sqlite:
                conn.exec_driver_sql("DROP FUNCTION refuse_records()")


def test_a_sector_administrator_sees_their_own_sectors_part_only(desk: Desk) -> None:
    # A letter of another sector about this case (written straight, naming no message of theirs).
    with desk.gateway.service.uow() as uow:
        other_letter = uow.dead_letters.add(None, Failure("timeout", "housing fund timed out", 2),
                                            desk.gateway.service.clock.now(),
                                            about={"case_no": desk.story.case_no, "sector": "housing_fund",
                                                   "operation": "submit_case",
                                                   "idempotency_key": f"{desk.story.case_no}:2:submit_case"})
        uow.commit()

    def letters(who: str) -> set[int]:
        return {e["links"]["dead_letter_id"] for e in desk.journey(who).json()["entries"] if e["kind"] == "dead_letter"}

    assert letters("operator") == {desk.story.dead_letter_id, other_letter}
    assert letters("own") == {desk.story.dead_letter_id}
    own = desk.journey("own").json()
    assert {e["sector"] for e in own["entries"]} <= {"social_security", None}
    assert [t["sector"] for t in own["case"]["tasks"]] == ["social_security"]
    assert_problem(desk.journey("other"), 404, "case-not-found")  # no message of theirs: no case to them
    for who, status in (("hall", 403), ("auditor", 403)):
        assert desk.journey(who).status_code == status
    assert TestClient(desk.clients["operator"].app).get(f"{OPS}/cases/{desk.story.case_no}/journey").status_code == 401


def test_a_correlation_id_finds_its_cases_journey(desk: Desk) -> None:
    found = desk.clients["operator"].get(f"{OPS}/journeys", params={"correlation_id": desk.story.correlation_id})
    assert found.status_code == 200, found.text
    assert found.json() == desk.journey("operator").json()
    assert desk.clients["own"].get(f"{OPS}/journeys", params={"correlation_id": desk.story.correlation_id}
                                   ).status_code == 200
    for who, params in (("operator", {"correlation_id": "nobody-sent-this"}),
                        ("other", {"correlation_id": desk.story.correlation_id})):
        assert_problem(desk.clients[who].get(f"{OPS}/journeys", params=params), 404, "case-not-found")
    for params in ({}, {"correlation_id": ""}, {"correlation_id": "x" * 65}):
        assert_problem(desk.clients["operator"].get(f"{OPS}/journeys", params=params), 422)


# --- a callback is part of the story ------------------------------------------------------------------------

POLICE = "public_security"
ID_CARD_RENEWAL = {"matter_code": "11150203MB0E00080E4000114002000", "channel": "city_window",  # 居民身份证换领
                   "applicant": {"name": "王建国", "id_number": PERSON},
                   "materials": [{"name": "居民户口簿"}, {"name": "原居民身份证"}]}


@pytest.fixture
def police(make_gateway: Callable[..., Gateway]) -> Iterator[tuple[Gateway, TestClient]]:
    with PublicSecuritySimulator(decision_delay_ms=600_000) as sector:  # deciding too late to call back itself
        gateway = make_gateway(bundles=(POLICE,), sector_endpoints={POLICE: sector.url})
        with TestClient(create_app(gateway)) as client:
            yield gateway, client


def test_a_sectors_callback_shows_in_its_cases_journey(police: tuple[Gateway, TestClient]) -> None:
    gateway, client = police
    keys = Keys.issue(gateway)
    case_no = client.post("/v1/cases", json=ID_CARD_RENEWAL, headers=keys.window).json()["case_no"]
    drain(gateway, lambda: bool(gateway.service.get(case_no).tasks[0].sector_ref))
    reference = gateway.service.get(case_no).tasks[0].sector_ref
    notice = {"YWH": reference, "BJBH": case_no, "JG": "TY", "YJ": "准予换领", "SJ": "2026-11-24 10:00:00"}
    body = json.dumps(notice, ensure_ascii=False).encode()
    headers = signed_headers(CALLBACK_KEY_ID, DEFAULT_SECRET, "POST", f"/callbacks/{POLICE}", body)
    called = client.post(f"/callbacks/{POLICE}", content=body, headers={**headers, "Content-Type": "application/json"})
    assert called.json() == {"recorded": True}, called.text

    journey = client.get(f"{OPS}/cases/{case_no}/journey", headers=keys.operator).json()
    [callback] = [e for e in journey["entries"] if e["kind"] == "callback"]
    assert (callback["sector"], callback["detail"]["outcome"]) == (POLICE, "ok")
    assert "准予换领" in json.dumps(callback["detail"]["body"], ensure_ascii=False)
    # Applied, then logged with its outcome: the decision it carried is there before it.
    decided = [i for i, e in enumerate(journey["entries"]) if e["kind"] == "event" and e["title"] == "部门办结"]
    assert decided and decided[0] < journey["entries"].index(callback)
