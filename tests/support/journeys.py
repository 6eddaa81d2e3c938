"""A case with a story to tell (ops/journey.py): submitted by the hall under a correlation id of its own, its
submission killed by a social-security outage (a dead letter), replayed once the sector is back, delivered
and decided; the hall told by webhook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi.testclient import TestClient

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.persistence.notification_tables import webhook_deliveries
from tests.support.cases import outbox_statuses
from tests.support.gateways import COMPLETE_APPLICATION, drain, pump
from tests.support.receiver import LOOPBACK, Receiver

ID_NUMBER = COMPLETE_APPLICATION["applicant"]["id_number"]
CORRELATION_ID = "hall-req-journey-1"


@dataclass(frozen=True)
class Story:
    case_no: str
    correlation_id: str
    dead_letter_id: int


def storied_gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Gateway:
    """One attempt per delivery (a dead letter at the first failure), notifications sent at once."""
    return make_gateway(sector_endpoints={"social_security": simulator.url}, retry_attempts=1,
                        notify_interval_ms=10, webhook_insecure_hosts=frozenset({LOOPBACK}))


def tell_story(gateway: Gateway, simulator: SocialSecuritySimulator, receiver: Receiver) -> Story:
    _, key = gateway.keys.issue("journey hall", [Role.HALL_CLIENT])
    with TestClient(create_app(gateway), headers={"Authorization": f"Bearer {key}"}) as hall:
        hook = hall.post("/v1/webhooks", json={"url": receiver.url("/journey"), "events": ["submit"]})
        assert hook.status_code == 201, hook.text
        receiver.secrets["/journey"] = hook.json()["secret"]
        simulator.set_fault("fail")  # the sector's outage
        answer = hall.post("/v1/cases", json=COMPLETE_APPLICATION, headers={"X-Correlation-Id": CORRELATION_ID})
    assert answer.status_code == 201, answer.text
    case_no = str(answer.json()["case_no"])
    drain(gateway, lambda: outbox_statuses(gateway, case_no) == [("submit_case", "dead")])
    [letter] = gateway.service.dead_letters()
    simulator.set_fault(None)  # the sector is back
    gateway.dead_letters.replay(letter.id, by="identity:journey-test", reason="social security is back (INC-9)")
    drain(gateway, lambda: ("submit_case", "done") in outbox_statuses(gateway, case_no)
          and any(e.trigger == "task_started" for e in gateway.service.get(case_no).events))
    pump(gateway, lambda: _delivered(gateway, case_no))
    return Story(case_no, CORRELATION_ID, letter.id)


def _delivered(gateway: Gateway, case_no: str) -> bool:
    with gateway.engine.connect() as conn:
        statuses = conn.execute(webhook_deliveries.select().where(webhook_deliveries.c.case_no == case_no)).all()
    return bool(statuses) and all(row.status == "delivered" for row in statuses)
