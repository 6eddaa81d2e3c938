"""Notifications to the hall: webhook subscriptions, signed deliveries in order per case, retries, the topic.

A real HTTP receiver (a stdlib ThreadingHTTPServer on an ephemeral loopback port, allowed through
`webhook_insecure_hosts`) checks every request's HMAC signature and timestamp as a hall would. The jobs run
through the gateway's own scheduler (`gateway.transport.scheduler.run_due()`), as a dispatcher's loop runs them.
Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.notifications.hall import EXCHANGE, CaseEventFanOut, WebhookPolicy, WebhookSender
from gateway.persistence.notification_tables import webhook_deliveries, webhook_subscriptions
from gateway.persistence.tables import case_notifications
from tests.support.gateways import COMPLETE_APPLICATION, Keys
from tests.support.receiver import LOOPBACK, Received, Receiver, receiver  # noqa: F401 - `receiver`: fixture

EVENT_KEYS = {"event_id", "case_no", "seq", "trigger", "from_state", "to_state", "matter_code", "at"}
PERSONAL = [COMPLETE_APPLICATION["applicant"][k] for k in ("id_number", "phone", "name")]
PROBLEM = "urn:yiwang:problem:"


@dataclass
class Hall:
    gateway: Gateway
    client: TestClient  # the hall's identity
    other: TestClient  # another hall identity

    def subscribe(self, receiver: Receiver, path: str, events: list[str] | None = None) -> dict[str, Any]:
        answer = self.client.post("/v1/webhooks", json={"url": receiver.url(path), "events": events or ["*"],
                                                        "description": f"test {path}"})
        assert answer.status_code == 201, answer.text
        receiver.secrets[path] = answer.json()["secret"]
        return answer.json()  # type: ignore[no-any-return]

    def open_case(self, withdraw: bool = True) -> str:
        """A case with five events (submit, accept, withdraw, task_cancelled, close), or two (submit, accept)."""
        answer = self.client.post("/v1/cases", json=COMPLETE_APPLICATION)
        assert answer.status_code == 201, answer.text
        case_no: str = answer.json()["case_no"]
        if withdraw:
            assert self.client.post(f"/v1/cases/{case_no}/withdraw", json={"reason": "test"}).status_code == 200
        return case_no

    def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        answer = self.client.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 500})
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]  # type: ignore[no-any-return]

    def pump(self, until: Callable[[], bool], timeout_s: float = 20) -> None:
        """Run the scheduled jobs (fan-out, webhooks, ...) as a dispatcher's loop does, until `until()`."""
        deadline = time.monotonic() + timeout_s
        while not until():
            assert time.monotonic() < deadline, "the notifications did not arrive in time"
            self.gateway.scheduler.run_due()
            time.sleep(0.005)

    def count(self, table: Any, *where: Any) -> int:
        with self.gateway.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


@pytest.fixture
def make_hall(make_gateway: Callable[..., Gateway]) -> Callable[..., Hall]:
    def make(**overrides: Any) -> Hall:
        settings = {"notify_interval_ms": 10, "webhook_backoff_ms": 50, "webhook_timeout_ms": 3000,
                    "webhook_insecure_hosts": frozenset({LOOPBACK}), **overrides}
        gateway = make_gateway(**settings)
        app = create_app(gateway)
        return Hall(gateway, TestClient(app, headers=Keys.of(gateway, Role.HALL_CLIENT, name="hall")),
                    TestClient(app, headers=Keys.of(gateway, Role.HALL_CLIENT, name="another hall")))

    return make


def by_case(requests: list[Received]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {}
    for r in requests:
        seqs.setdefault(r.event["case_no"], []).append(r.event["seq"])
    return seqs


# --- subscriptions ----------------------------------------------------------------------------------------


def test_subscriptions_are_the_callers_own_and_bad_ones_are_refused(make_hall: Callable[..., Hall],
                                                                    receiver: Receiver) -> None:
    hall = make_hall()
    created = hall.subscribe(receiver, "/mine", ["approve", "accept", "accept"])
    assert created["id"].startswith("wh_") and created["secret"].startswith("whsec_")
    assert created["events"] == ["accept", "approve"] and created["active"] is True
    listed = hall.client.get("/v1/webhooks").json()["items"]
    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]
    with hall.gateway.engine.connect() as conn:  # the secret rests sealed
        stored = conn.execute(select(webhook_subscriptions.c.secret)).scalar_one()
    assert stored.startswith("yw1.") and created["secret"] not in stored

    # Another identity neither sees nor touches it: 404, as for an id that never was.
    assert hall.other.get("/v1/webhooks").json()["items"] == []
    for answer in (hall.other.get(f"/v1/webhooks/{created['id']}/deliveries"),
                   hall.other.delete(f"/v1/webhooks/{created['id']}"),
                   hall.client.delete("/v1/webhooks/wh_000000000000")):
        assert answer.status_code == 404 and answer.json()["type"] == PROBLEM + "unknown-webhook", answer.text
    assert hall.client.get("/v1/webhooks").json()["items"][0]["active"] is True

    public = "https://93.184.216.34/hook"  # a public address: accepted (nothing is sent on subscribing)
    refused = {
        "http://93.184.216.34/hook": "https",  # plain http to a host not listed as insecure
        "https://10.1.2.3/hook": "私有",
        "https://169.254.169.254/latest/meta-data": "私有",  # the cloud metadata address
        "https://[::1]/hook": "私有",
        "https://localhost/hook": "私有",  # a name for loopback, not the listed 127.0.0.1
        "https://[::ffff:10.0.0.1]/hook": "私有",
        "ftp://93.184.216.34/hook": "https",
        "https://user:pw@93.184.216.34/hook": "用户名或密码",
        "https://no-such-host.invalid/hook": "无法解析",
        "https://93.184.216.34/a b": "空白",
        "https://93.184.216.34:99999/hook": "不是合法的 URL",
    }
    for url, why in refused.items():
        answer = hall.client.post("/v1/webhooks", json={"url": url, "events": ["*"]})
        assert answer.status_code == 422 and answer.json()["type"] == PROBLEM + "invalid-webhook", (url, answer.text)
        assert why in answer.json()["detail"], (url, answer.json()["detail"])
        assert url not in answer.text  # the caller's input is not echoed
    for body in ({"url": public, "events": ["bogus"]}, {"url": public, "events": ["*"], "description": "a\x00b"}):
        answer = hall.client.post("/v1/webhooks", json=body)
        assert answer.status_code == 422 and answer.json()["type"] == PROBLEM + "invalid-webhook", answer.text
    for body in ({"url": public, "events": []}, {"url": public}, {"url": public, "events": ["*"], "x": 1}):
        answer = hall.client.post("/v1/webhooks", json=body)
        assert answer.status_code == 422 and answer.json()["type"] == PROBLEM + "invalid-request", answer.text
    assert hall.count(webhook_subscriptions) == 1  # nothing stored by any of them
    assert hall.client.post("/v1/webhooks", json={"url": public, "events": ["*", "accept"]}).json()["events"] == ["*"]

    deleted = hall.client.delete(f"/v1/webhooks/{created['id']}")
    assert deleted.status_code == 200 and deleted.json()["active"] is False and deleted.json()["deactivated_at"]
    assert hall.client.delete(f"/v1/webhooks/{created['id']}").json()["active"] is False  # again: the same
    window = TestClient(hall.client.app, headers=Keys.of(hall.gateway, Role.WINDOW))
    assert window.post("/v1/webhooks", json={"url": public, "events": ["*"]}).status_code == 403

    # Subscribing and deleting are in the audit log, by whom and with what outcome.
    audited = [(r.action, r.subject, r.outcome) for r in hall.gateway.ledger.records(Filters(AUDIT), 1000)
               if "/v1/webhooks" in r.action]
    assert ("POST /v1/webhooks", None, "201 ok") in audited
    assert ("DELETE /v1/webhooks/{webhook_id}", f"webhook_id={created['id']}", "200 ok") in audited


# --- delivery ---------------------------------------------------------------------------------------------


def test_every_case_event_arrives_signed_in_seq_order_per_case(make_hall: Callable[..., Hall],
                                                               receiver: Receiver) -> None:
    hall = make_hall()
    everything = hall.subscribe(receiver, "/all")
    hall.subscribe(receiver, "/accepts", ["accept"])
    cases = [hall.open_case() for _ in range(3)]
    hall.pump(lambda: len(receiver.delivered("/all")) == 15 and len(receiver.delivered("/accepts")) == 3)

    assert by_case(receiver.on("/all")) == {c: [1, 2, 3, 4, 5] for c in cases}
    assert [r.event["trigger"] for r in receiver.on("/all") if r.event["case_no"] == cases[0]] == \
        ["submit", "accept", "withdraw", "task_cancelled", "close"]
    assert sorted(r.event["case_no"] for r in receiver.on("/accepts")) == sorted(cases)
    assert {r.event["trigger"] for r in receiver.on("/accepts")} == {"accept"}
    for r in receiver.requests:
        assert r.signed, r.headers  # HMAC over "<timestamp>.<body>" with the subscription's secret, timestamp fresh
        assert r.headers["content-type"] == "application/json"
        assert r.headers["yiwang-event-id"] == r.event["event_id"] == f"{r.event['case_no']}:{r.event['seq']}"
        assert set(r.event) == EVENT_KEYS
        assert r.event["matter_code"] == COMPLETE_APPLICATION["matter_code"]
        text = r.body.decode()
        assert not [p for p in PERSONAL if p in text], text  # identifiers and states only
    assert len(receiver.requests) == 18  # each once

    shown = hall.deliveries(everything["id"])
    assert len(shown) == 15 and shown[0]["id"] > shown[-1]["id"]  # newest first
    assert {(d["status"], d["attempts"], d["last_status"], d["last_error"]) for d in shown} == \
        {("delivered", 1, 200, None)}
    # Without a broker configured, every notification is published once fanned out.
    assert hall.count(case_notifications, case_notifications.c.status == "pending") == 0


def test_a_failing_receiver_holds_back_that_case_only_then_all_arrive_in_order(
        make_hall: Callable[..., Hall], receiver: Receiver) -> None:
    backoff_ms = 100
    hall = make_hall(webhook_backoff_ms=backoff_ms)
    hook = hall.subscribe(receiver, "/hook")
    troubled, fine = hall.open_case(withdraw=False), hall.open_case(withdraw=False)
    receiver.answer = lambda path, event, nth: 500 if event["case_no"] == troubled and nth < 3 else 200
    hall.client.post(f"/v1/cases/{troubled}/withdraw", json={"reason": "test"})
    hall.client.post(f"/v1/cases/{fine}/withdraw", json={"reason": "test"})
    hall.pump(lambda: len(receiver.delivered("/hook")) == 10)

    requests = receiver.on("/hook")
    theirs = [r for r in requests if r.event["case_no"] == troubled]
    assert [(r.event["seq"], r.status) for r in theirs] == \
        [(1, 500), (1, 500), (1, 500), (1, 200), (2, 200), (3, 200), (4, 200), (5, 200)]  # the later ones waited
    gaps_ms = [(b.at - a.at) * 1000 for a, b in zip(theirs, theirs[1:4])]
    for attempt, gap in enumerate(gaps_ms):  # backoff × 2^attempt, jitter only ever adds
        assert gap >= backoff_ms * 2 ** attempt * 0.95, gaps_ms
    others = [r for r in requests if r.event["case_no"] == fine]
    assert [r.event["seq"] for r in others] == [1, 2, 3, 4, 5]
    assert others[-1].at < theirs[3].at  # the other case was not held up
    first = next(d for d in hall.deliveries(hook["id"]) if d["case_no"] == troubled and d["seq"] == 1)
    assert (first["status"], first["attempts"], first["last_status"]) == ("delivered", 4, 200)


def test_after_the_last_attempt_a_delivery_fails_and_the_case_goes_on(make_hall: Callable[..., Hall],
                                                                      receiver: Receiver) -> None:
    hall = make_hall(webhook_max_attempts=3, webhook_backoff_ms=20)
    hook = hall.subscribe(receiver, "/hook")
    nobody = hall.client.post("/v1/webhooks", json={"url": f"http://{LOOPBACK}:9/gone", "events": ["submit"]}).json()
    receiver.answer = lambda path, event, nth: 500 if event["seq"] == 1 else 200
    case_no = hall.open_case()
    hall.pump(lambda: len(receiver.delivered("/hook")) == 4
              and all(d["status"] == "failed" for d in hall.deliveries(nobody["id"])))

    assert [(r.event["seq"], r.status) for r in receiver.on("/hook")] == \
        [(1, 500), (1, 500), (1, 500), (2, 200), (3, 200), (4, 200), (5, 200)]
    shown = {d["seq"]: d for d in hall.deliveries(hook["id"])}
    assert (shown[1]["status"], shown[1]["attempts"], shown[1]["last_status"]) == ("failed", 3, 500)
    assert shown[1]["last_error"].startswith("HTTP 500")
    assert {shown[s]["status"] for s in (2, 3, 4, 5)} == {"delivered"}
    unreachable = hall.deliveries(nobody["id"])  # no answer at all: a transport error, counted the same way
    assert [(d["case_no"], d["status"], d["attempts"], d["last_status"]) for d in unreachable] == \
        [(case_no, "failed", 3, None)]
    assert "ConnectError" in unreachable[0]["last_error"]


def test_a_deleted_subscription_gets_nothing_more(make_hall: Callable[..., Hall], receiver: Receiver) -> None:
    hall = make_hall(webhook_backoff_ms=20, webhook_max_attempts=1000)
    hook = hall.subscribe(receiver, "/hook")
    receiver.answer = lambda path, event, nth: 503  # the hall is down: deliveries stay pending, retried
    first = hall.open_case(withdraw=False)
    hall.pump(lambda: len(receiver.on("/hook")) >= 3)
    assert hall.client.delete(f"/v1/webhooks/{hook['id']}").status_code == 200
    tried = len(receiver.on("/hook"))

    receiver.answer = lambda path, event, nth: 200
    hall.client.post(f"/v1/cases/{first}/withdraw", json={"reason": "test"})
    hall.open_case()
    hall.pump(lambda: hall.count(case_notifications, case_notifications.c.status == "pending") == 0)
    deadline = time.monotonic() + 0.5  # a while of retry intervals: nothing may come
    while time.monotonic() < deadline:
        hall.gateway.scheduler.run_due()
        time.sleep(0.01)
    assert len(receiver.on("/hook")) == tried
    shown = hall.deliveries(hook["id"])
    assert [(d["case_no"], d["seq"], d["status"]) for d in shown] == [(first, 2, "cancelled"), (first, 1, "cancelled")]


def test_the_address_is_checked_again_before_every_request(make_hall: Callable[..., Hall],
                                                           receiver: Receiver) -> None:
    """A URL allowed when it was subscribed (loopback, then listed as insecure) is not called once the
    policy no longer allows it: the check is made per request, not trusted from the subscription."""
    hall = make_hall()
    hook = hall.subscribe(receiver, "/hook")
    hall.open_case(withdraw=False)
    CaseEventFanOut(hall.gateway.engine, hall.gateway.service.clock).run()
    strict = WebhookSender(hall.gateway.engine, hall.gateway.sealer, hall.gateway.service.clock,
                           WebhookPolicy(max_attempts=1))
    assert strict.run() == 2  # two requests "made": both refused before any connection
    assert receiver.requests == []
    shown = hall.deliveries(hook["id"])
    assert {(d["status"], d["last_status"]) for d in shown} == {("failed", None)}
    assert all(d["last_error"].startswith("WebhookRefused") for d in shown)


# --- the topic exchange -----------------------------------------------------------------------------------


class FlakyBroker:
    """Stands for a broker that once does not confirm a message (the real broker's test is below)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.calls = fail_at, 0
        self.published: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = []

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any] | None = None) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("the broker did not confirm")
        self.published.append((exchange, routing_key, json.loads(body), headers))


def test_a_notification_whose_publish_fails_stays_pending_and_goes_next_run_in_order(
        make_hall: Callable[..., Hall], receiver: Receiver) -> None:
    hall = make_hall()
    hall.subscribe(receiver, "/hook")
    cases = [hall.open_case() for _ in range(2)]  # ten events
    broker = FlakyBroker(fail_at=3)
    connected: list[FlakyBroker] = []

    def connect() -> FlakyBroker:
        connected.append(broker)
        return broker

    fan_out = CaseEventFanOut(hall.gateway.engine, hall.gateway.service.clock, connect)
    with pytest.raises(ConnectionError):
        fan_out.run()
    # The two the broker confirmed are settled, deliveries and all; the third and everything after wait.
    assert hall.count(case_notifications, case_notifications.c.status == "published") == 2
    assert hall.count(webhook_deliveries) == 2
    assert fan_out.run() == 8
    assert len(connected) == 2  # the failed publisher was dropped and a fresh one connected
    events = [(e["case_no"], e["seq"]) for _, _, e, _ in broker.published]
    assert events == [(c, s) for c in cases for s in (1, 2, 3, 4, 5)]  # each once, in order
    exchange, key, event, headers = broker.published[1]
    assert exchange == EXCHANGE == "yiwang.case-events"
    assert key == f"case.{COMPLETE_APPLICATION['matter_code']}.accept"
    assert headers == {"event_id": event["event_id"]} and set(event) == EVENT_KEYS
    assert hall.count(webhook_deliveries) == 10 and fan_out.run() == 0


def test_case_events_reach_the_topic_exchange_with_routing_keys(make_hall: Callable[..., Hall], receiver: Receiver,
                                                                rabbitmq_url: str) -> None:
    """The real broker: queues bound to `yiwang.case-events` get each event once, in order per case, routed
    by matter and trigger; the webhooks are served from the same fan-out."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(EXCHANGE, "topic", durable=True)  # as the gateway declares it
        everything = channel.queue_declare("", exclusive=True).method.queue
        withdrawals = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(everything, EXCHANGE, "case.#")
        channel.queue_bind(withdrawals, EXCHANGE, "case.*.withdraw")

        hall = make_hall(amqp_url=rabbitmq_url)
        hall.subscribe(receiver, "/hook")
        cases = [hall.open_case() for _ in range(2)]
        hall.pump(lambda: hall.count(case_notifications, case_notifications.c.status == "pending") == 0
                  and len(receiver.delivered("/hook")) == 10)

        def drain(queue: str) -> list[tuple[str, dict[str, Any], Any]]:
            got = []
            while (message := channel.basic_get(queue, auto_ack=True))[0] is not None:
                method, properties, body = message
                got.append((method.routing_key, json.loads(body), properties))
            return got

        published = drain(everything)
        assert [(e["case_no"], e["seq"]) for _, e, _ in published] == [(c, s) for c in cases for s in (1, 2, 3, 4, 5)]
        matter = COMPLETE_APPLICATION["matter_code"]
        assert [key for key, _, _ in published[:5]] == [f"case.{matter}.{t}" for t in
                                                         ("submit", "accept", "withdraw", "task_cancelled", "close")]
        for key, event, properties in published:
            assert set(event) == EVENT_KEYS and properties.headers == {"event_id": event["event_id"]}
            assert properties.delivery_mode == 2  # persistent
            assert not [p for p in PERSONAL if p in json.dumps(event, ensure_ascii=False)]
        assert [(e["case_no"], e["trigger"]) for _, e, _ in drain(withdrawals)] == [(c, "withdraw") for c in cases]
        assert by_case(receiver.delivered("/hook")) == {c: [1, 2, 3, 4, 5] for c in cases}
    finally:
        connection.close()
