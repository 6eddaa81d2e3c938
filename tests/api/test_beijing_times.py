"""One time format leaves the gateway (issue 16): every instant in an HTTP answer, and in the case events the
hall receives by webhook, is Beijing time with its offset (`gateway.domain.clock.beijing_text`), whatever zone
it was stored in (UTC) or sent in (any RFC 3339 offset).

The walk reads the main endpoints of every audience after a gateway has done a little of everything (a case
accepted, a submission dead at a failing sector, a bulk replay, a webhook delivered, a certificate imported, a
bundle tested) and asserts each string in the answers that is an instant ends with `+08:00`. It also asserts
that each endpoint it names answered with at least one instant, so an endpoint that stops showing its times is
noticed rather than passing for want of any.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import beijing_text
from gateway.domain.roles import Role
from tests.support.cases import outbox_statuses
from tests.support.gateways import COMPLETE_APPLICATION, Keys, drain, pump
from tests.support.receiver import LOOPBACK, Receiver, receiver  # noqa: F401 - `receiver` is a fixture

# An instant as ISO 8601 text: a date, `T`, a time, and a zone or none. A date alone is a day, not an instant.
INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")
BEIJING = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+08:00")


def instants(value: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    """(JSON path, text) of every string in `value` that is an instant."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from instants(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from instants(item, f"{where}[{i}]")
    elif isinstance(value, str) and INSTANT.fullmatch(value):
        yield where, value


def shown_by_the_gateway(answer: Any) -> Any:
    """The answer without what it quotes of a sector's exchange as it went and came, byte for byte."""
    if isinstance(answer, dict):
        return {k: v for k, v in answer.items() if k not in ("rendered_request", "last_response")}
    return answer


def not_beijing(value: Any) -> list[tuple[str, str]]:
    return [(where, text) for where, text in instants(value) if not BEIJING.fullmatch(text)]


def test_the_instant_finder_tells_instants_from_days_and_other_text() -> None:
    found = dict(instants({"at": "2026-11-24T02:00:00+00:00", "day": "2026-11-24", "name": "王建国",
                           "list": ["2026-11-24T10:00:00.000+08:00", "2026-11-24T02:00:00Z", 3]}))
    assert found == {"$.at": "2026-11-24T02:00:00+00:00", "$.list[0]": "2026-11-24T10:00:00.000+08:00",
                     "$.list[1]": "2026-11-24T02:00:00Z"}
    assert [text for _, text in not_beijing(found)] == ["2026-11-24T02:00:00+00:00", "2026-11-24T02:00:00Z"]


@pytest.fixture
def busy(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator,
         receiver: Receiver) -> Iterator[tuple[Gateway, dict[str, TestClient], dict[str, Any]]]:  # noqa: F811
    """A gateway that has done a little of everything, a client per role, and what the test needs to name."""
    gateway = make_gateway(sector_endpoints={"social_security": simulator.url}, retry_attempts=1,
                           notify_interval_ms=10, webhook_backoff_ms=10,
                           webhook_insecure_hosts=frozenset({LOOPBACK}))
    app = create_app(gateway)

    def client(role: Role, **scope: str) -> TestClient:
        return TestClient(app, headers=Keys.of(gateway, role, name=f"walk {role}", **scope))

    clients = {"hall": client(Role.HALL_CLIENT), "operator": client(Role.OPERATOR),
               "auditor": client(Role.AUDITOR), "security": client(Role.SECURITY_ADMIN),
               "system": client(Role.SYSTEM_ADMIN), "catalogue": client(Role.CATALOGUE_ADMIN),
               "sector": client(Role.SECTOR_ADMIN, sector="social_security")}
    hall = clients["hall"]
    hook = hall.post("/v1/webhooks", json={"url": receiver.url("/hook"), "events": ["*"]})
    assert hook.status_code == 201, hook.text
    receiver.secrets["/hook"] = hook.json()["secret"]

    simulator.set_fault("fail")
    answer = hall.post("/v1/cases", json=COMPLETE_APPLICATION)
    assert answer.status_code == 201, answer.text
    case_no = answer.json()["case_no"]
    drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")])
    pump(gateway, lambda: len(receiver.delivered("/hook")) >= 2)  # submit, accept
    simulator.set_fault(None)

    operator = clients["operator"]
    letter_id = operator.get("/v1/ops/dead-letters").json()["items"][0]["id"]
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    run = operator.post("/v1/ops/replays", json={"filter": {"since": since}, "reason": "sector back (INC-1)"})
    assert run.status_code == 202, run.text
    tested = clients["system"].post(f"/v1/adapters/social_security/versions/"
                                    f"{gateway.bundles.versions('social_security')[0].version}/test")
    assert tested.status_code == 200, tested.text
    csr = clients["security"].post("/v1/certificates/walk-client/csr",
                                   json={"subject": {"common_name": "walk"}, "algorithm": "ec-p256"})
    assert csr.status_code == 201, csr.text
    yield gateway, clients, {"case_no": case_no, "letter_id": letter_id, "webhook_id": hook.json()["id"],
                             "run_id": run.json()["id"]}
    for c in clients.values():
        c.close()


def test_every_instant_in_the_main_answers_is_beijing_time(
        busy: tuple[Gateway, dict[str, TestClient], dict[str, Any]]) -> None:
    gateway, clients, named = busy
    case_no, matter = named["case_no"], COMPLETE_APPLICATION["matter_code"]
    reads = [  # (who, path): each answer shows at least one instant
        ("hall", f"/v1/cases/{case_no}/events"),
        ("hall", f"/v1/cases/{case_no}/documents/acceptance_receipt"),
        ("hall", "/v1/webhooks"),
        ("hall", f"/v1/webhooks/{named['webhook_id']}/deliveries"),
        ("operator", "/v1/ops/dead-letters?status=any"),
        ("operator", f"/v1/ops/dead-letters/{named['letter_id']}"),
        ("operator", "/v1/ops/replays"),
        ("operator", f"/v1/ops/replays/{named['run_id']}"),
        ("auditor", "/v1/audit"),
        ("security", "/v1/identities"),
        ("security", "/v1/certificates"),
        ("security", "/v1/certificates/walk-client"),
        ("system", "/v1/adapters/social_security/versions"),
        ("catalogue", f"/v1/matters/{matter}/versions"),
    ]
    for who, path in reads:
        answer = clients[who].get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert list(instants(answer.json())), f"{path} shows no instant: the walk no longer covers it"
        assert not_beijing(shown_by_the_gateway(answer.json())) == [], path
    for who, path in [("hall", f"/v1/cases/{case_no}"), ("system", "/v1/adapters"), ("auditor", "/v1/audit/verify"),
                      ("operator", "/v1/messages")]:  # instants or not, none in another zone
        answer = clients[who].get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert not_beijing(answer.json()) == [], path
    history = clients["operator"].get(f"/v1/ops/dead-letters/{named['letter_id']}").json()["history"]
    assert history and all(BEIJING.fullmatch(attempt["at"]) for attempt in history)  # stored in UTC


def test_the_case_events_a_webhook_receives_are_in_beijing_time_and_signed(
        busy: tuple[Gateway, dict[str, TestClient], dict[str, Any]], receiver: Receiver) -> None:  # noqa: F811
    gateway, clients, named = busy
    delivered = receiver.delivered("/hook")
    assert [r.event["trigger"] for r in delivered][:2] == ["submit", "accept"]
    for request in delivered:
        assert request.signed  # the signature covers the body as sent, Beijing times and all
        assert BEIJING.fullmatch(request.event["at"]), request.event
        assert datetime.fromisoformat(request.event["at"]).utcoffset() == timedelta(hours=8)
    stored = [e.at.replace(microsecond=e.at.microsecond // 1000 * 1000)  # shown to the millisecond
              for e in gateway.service.get(named["case_no"]).events]
    assert [datetime.fromisoformat(r.event["at"]) for r in delivered[:2]] == stored[:2]  # the same instants


def test_an_event_stored_before_the_change_leaves_in_beijing_time_too(
        busy: tuple[Gateway, dict[str, TestClient], dict[str, Any]], receiver: Receiver) -> None:  # noqa: F811
    """A delivery written by the previous version (its event's `at` in UTC) is sent, and listed, in Beijing time."""
    from sqlalchemy import update

    from gateway.persistence.notification_tables import webhook_deliveries as d

    gateway, clients, named = busy
    with gateway.engine.begin() as conn:
        row = conn.execute(d.select().order_by(d.c.id.desc()).limit(1)).mappings().one()
        old = {**row["event"], "at": "2026-11-24T02:00:00+00:00"}
        conn.execute(update(d).where(d.c.id == row["id"]).values(event=old, status="pending", attempts=0,
                                                                 next_at=datetime.now(UTC) - timedelta(seconds=1)))
    sent_before = len(receiver.on("/hook"))
    pump(gateway, lambda: len(receiver.on("/hook")) > sent_before)
    resent = receiver.on("/hook")[-1]
    assert resent.signed and resent.event["at"] == "2026-11-24T10:00:00.000+08:00"
    listed = clients["hall"].get(f"/v1/webhooks/{named['webhook_id']}/deliveries").json()
    assert not_beijing(listed) == [] and listed["items"][0]["event"]["at"] == "2026-11-24T10:00:00.000+08:00"


def test_inputs_still_take_any_rfc3339_offset(busy: tuple[Gateway, dict[str, TestClient], dict[str, Any]]) -> None:
    _, clients, _ = busy
    operator = clients["operator"]
    all_ids = [x["id"] for x in operator.get("/v1/ops/dead-letters", params={"status": "any"}).json()["items"]]
    later = datetime.now(UTC) + timedelta(hours=1)
    for text in (later.isoformat().replace("+00:00", "Z"), later.astimezone().isoformat(), beijing_text(later)):
        found = operator.get("/v1/ops/dead-letters", params={"status": "any", "until": text})
        assert found.status_code == 200, found.text
        assert [x["id"] for x in found.json()["items"]] == all_ids

