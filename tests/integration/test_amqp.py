"""The RabbitMQ transport against a real broker (a virtual host per test) and PostgreSQL.

Cases go hall → outbox → relay (confirmed) → quorum queues → worker → social-security simulator → outcome
stored → ack. The tests stop, break and restart parts of that chain and count what the sector saw.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pika
import pytest
from sqlalchemy import select

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway
from gateway.cases.service import SubmitCase
from gateway.domain.case import Actor, ActorKind, Applicant, SubmittedMaterial
from gateway.persistence import tables as t
from gateway.transport.amqp import (
    DEAD_LETTER_QUEUE,
    DELIVER_EXCHANGE,
    ConfirmedPublisher,
    Envelope,
    queue_name,
)
from gateway.transport.in_process import Dispatcher
from tests.support.broker import broker, eventually, queue_depth, running
from tests.support.gateways import COMPLETE_APPLICATION, activate_shipped
from tests.support.processes import Launch, hall_key, launch, serve  # noqa: F401 - `launch`: the fixture
from tests.support.services import rabbitmq_vhost

pytestmark = [pytest.mark.parametrize("db_url", ["postgres"], indirect=True), pytest.mark.slow]

SECTOR = "social_security"
NAME, ID_NUMBER, PHONE = "王建国", "150203198503120039", "13847100001"
ELDER_ID = "150203195004150037"  # born 1950: the green channel (aged 60+) whatever today is


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A virtual host of each test's own: queues declared with another delivery limit, or messages left
    over by an earlier test, never meet this one."""
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture
def gateway_for(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator,
                amqp_url: str) -> Callable[..., Gateway]:
    def make(**overrides: Any) -> Gateway:
        settings = {"amqp_url": amqp_url, "sector_endpoints": {SECTOR: simulator.url}, "dispatch_idle_ms": 20,
                    **overrides}
        return make_gateway(**settings)
    return make


def submit(gateway: Gateway, count: int = 1, id_number: str = ID_NUMBER) -> list[str]:
    command = SubmitCase(COMPLETE_APPLICATION["matter_code"], Applicant(NAME, "111", id_number, phone=PHONE),
                         tuple(SubmittedMaterial(m["name"]) for m in COMPLETE_APPLICATION["materials"]),
                         COMPLETE_APPLICATION["form"])
    return [str(gateway.service.submit(command, Actor(ActorKind.APPLICANT, "test")).case["case_no"])
            for _ in range(count)]


def outbox(gateway: Gateway) -> list[Any]:
    with gateway.engine.connect() as conn:
        return list(conn.execute(select(t.outbox).order_by(t.outbox.c.id)))


def states(gateway: Gateway, case_nos: list[str]) -> set[str]:
    with gateway.engine.connect() as conn:
        return set(conn.execute(select(t.cases.c.state).where(t.cases.c.case_no.in_(case_nos))).scalars())


def all_settled(gateway: Gateway, case_nos: list[str]) -> bool:
    """Every case decided by the sector and every outbox row done."""
    return states(gateway, case_nos) == {"approved"} and {r.status for r in outbox(gateway)} == {"done"}


def drain_queue(url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Every message now in `queue`, taken off it."""
    taken = []
    with broker(url) as channel:
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, body))


# --- delivery, confirms, copies ------------------------------------------------------------------------


def test_cases_are_delivered_once_over_rabbitmq_and_every_outbox_row_ends_done(
        gateway_for: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> None:
    gateway = gateway_for()
    case_nos = submit(gateway, 20)
    started = time.monotonic()
    with running(gateway) as transport:
        eventually(lambda: all_settled(gateway, case_nos), what="all 20 cases approved over RabbitMQ")
        elapsed = time.monotonic() - started
    assert simulator.counters["cases_created"] == 20
    assert simulator.counters["duplicate_submits"] == 0
    assert transport.consumer.stats.delivered >= 40  # each submit and at least one status poll
    assert transport.relay.published == transport.consumer.stats.delivered + transport.consumer.stats.copies
    print(f"20 cases decided over RabbitMQ in {elapsed:.2f} s ({20 / elapsed:.1f} cases/s with their polls)")


def test_a_row_is_marked_queued_only_after_the_broker_confirmed_it(
        gateway_for: Callable[..., Gateway], amqp_url: str, simulator: SocialSecuritySimulator) -> None:
    gateway = gateway_for()
    submit(gateway, 3)
    with running(gateway, "relay", amqp_url="amqp://guest:guest@127.0.0.1:1/") as transport:  # nothing listens
        time.sleep(1.5)
        assert transport.relay.publisher.connections == 0
    assert [(r.status, r.published_at, r.deliveries) for r in outbox(gateway)] == [("pending", None, 0)] * 3

    # A broker that is there but refuses the messages (a full queue rejecting publishes: a nack, no confirm).
    with broker(amqp_url) as channel:
        channel.exchange_declare(DELIVER_EXCHANGE, "direct", durable=True)
        channel.queue_declare("full", durable=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
        channel.queue_bind("full", DELIVER_EXCHANGE, SECTOR)
    with running(gateway, "relay") as transport:
        eventually(lambda: transport.relay.publisher.connections >= 1, what="the relay connected")
        time.sleep(1.0)
        assert {r.status for r in outbox(gateway)} == {"pending"}
        with broker(amqp_url) as channel:
            channel.queue_delete("full")  # now nothing is bound: the relay declares the sector's queues
        eventually(lambda: {r.status for r in outbox(gateway)} == {"queued"}, what="the rows queued")
    assert queue_depth(amqp_url, queue_name(SECTOR, False)) == 3
    assert all(r.published_at is not None for r in outbox(gateway))
    assert simulator.counters["raw_requests"] == 0  # no consumer ran


def test_a_redelivered_copy_of_a_settled_message_is_acked_without_calling_the_sector(
        gateway_for: Callable[..., Gateway], amqp_url: str, simulator: SocialSecuritySimulator) -> None:
    gateway = gateway_for()
    case_nos = submit(gateway)
    with running(gateway) as transport:
        eventually(lambda: all_settled(gateway, case_nos), what="the case approved")
        calls = simulator.counters["raw_requests"]
        submitted = next(r for r in outbox(gateway) if r.operation == "submit_case")
        copy = Envelope(submitted.id, submitted.case_no, SECTOR, submitted.operation, submitted.idempotency_key)
        publisher = ConfirmedPublisher(amqp_url)
        publisher.publish(DELIVER_EXCHANGE, SECTOR, copy.body(), mandatory=True)
        publisher.close()
        eventually(lambda: transport.consumer.stats.copies >= 1, what="the copy taken")
    assert simulator.counters["raw_requests"] == calls  # the sector was not called again
    assert simulator.counters["submits_received"] == 1
    assert queue_depth(amqp_url, queue_name(SECTOR, False)) == 0  # acknowledged, not handed back
    assert gateway.service.dead_letters() == []


def test_broker_messages_carry_the_outbox_identifiers_and_nothing_personal(
        gateway_for: Callable[..., Gateway], amqp_url: str) -> None:
    gateway = gateway_for()
    submit(gateway, 2)
    submit(gateway, 1, id_number=ELDER_ID)
    with running(gateway, "relay"):  # no consumer: the messages stay in their queues
        eventually(lambda: {r.status for r in outbox(gateway)} == {"queued"}, what="the rows queued")
    messages = drain_queue(amqp_url, queue_name(SECTOR, False)) + drain_queue(amqp_url, queue_name(SECTOR, True))
    assert len(messages) == 3
    rows = {r.id: r for r in outbox(gateway)}
    for properties, body in messages:
        text = body.decode()
        for personal in (NAME, ID_NUMBER, ELDER_ID, PHONE, json.dumps(NAME)[1:-1], ID_NUMBER[-8:], PHONE[-8:]):
            assert personal not in text
        data = json.loads(body)
        row = rows[data["outbox_id"]]
        assert data == {"outbox_id": row.id, "case_no": row.case_no, "sector": SECTOR, "operation": "submit_case",
                        "idempotency_key": row.idempotency_key}
        assert (properties.delivery_mode, properties.content_type) == (2, "application/json")
        assert properties.message_id and set(properties.headers or {}) <= {"x-delivery-count"}  # the broker's


def test_a_newly_activated_sector_is_consumed_without_a_restart(gateway_for: Callable[..., Gateway],
                                                                 amqp_url: str) -> None:
    gateway = gateway_for()
    housing_fund = queue_name("housing_fund", False), queue_name("housing_fund", True)

    def consumers(queue: str) -> int:
        with broker(amqp_url) as channel:
            try:
                return int(channel.queue_declare(queue, passive=True).method.consumer_count)
            except pika.exceptions.ChannelClosedByBroker:  # not declared yet
                return 0

    with running(gateway, "consumer"):
        eventually(lambda: consumers(queue_name(SECTOR, True)) == 1, what="the worker consuming")
        activate_shipped(gateway.bundles, "housing_fund")
        eventually(lambda: all(consumers(q) == 1 for q in housing_fund), what="the new sector consumed")


# --- the green channel --------------------------------------------------------------------------------------


def test_green_cases_overtake_a_backlog_of_ordinary_ones(gateway_for: Callable[..., Gateway]) -> None:
    gateway = gateway_for(worker_concurrency=1)
    ordinary = submit(gateway, 50)
    with running(gateway, "relay"):  # the worker's consumers are stopped: a backlog builds up
        eventually(lambda: len([r for r in outbox(gateway) if r.status == "queued"]) == 50, what="50 queued")
        green = submit(gateway, 3, id_number=ELDER_ID)
        eventually(lambda: len([r for r in outbox(gateway) if r.status == "queued"]) == 53, what="53 queued")
    with running(gateway):
        eventually(lambda: states(gateway, green) == {"approved"}, what="the green cases decided")
    submits = sorted((r for r in outbox(gateway) if r.operation == "submit_case" and r.done_at is not None),
                     key=lambda r: r.done_at)
    order = [r.case_no for r in submits]
    assert all(case_no in order[:6] for case_no in green), [order.index(c) for c in green]
    assert len(order) < len(ordinary)  # the backlog was still there when the green cases were decided


# --- dead letters ---------------------------------------------------------------------------------------------


class CrashingDispatcher(Dispatcher):
    """Handling one message always fails before its outcome is stored (as if the database were down for it)."""

    crash_on: set[int] = set()

    def take_and_deliver(self, outbox_id: int) -> bool:
        if outbox_id in self.crash_on:
            raise RuntimeError("the database went away (test)")
        return super().take_and_deliver(outbox_id)


def test_a_message_that_keeps_failing_and_an_unreadable_one_end_as_dead_letters_in_the_database(
        gateway_for: Callable[..., Gateway], amqp_url: str, simulator: SocialSecuritySimulator) -> None:
    gateway = gateway_for(delivery_limit=2)
    doomed, fine = submit(gateway, 2)
    rows = {r.case_no: r for r in outbox(gateway)}
    crashing = CrashingDispatcher(gateway.service, gateway.registry, gateway.dispatcher.settings,
                                  scheduler=gateway.scheduler)
    crashing.crash_on = {rows[doomed].id}
    gateway.dispatcher = crashing
    with running(gateway) as transport:
        eventually(lambda: len(gateway.service.dead_letters()) == 1, what="the dead letter recorded")
        eventually(lambda: states(gateway, [fine]) == {"approved"}, what="the other case decided")
        publisher = ConfirmedPublisher(amqp_url)
        publisher.publish(DELIVER_EXCHANGE, SECTOR, b"\x00not one of ours <xml/>", mandatory=True)
        publisher.close()
        eventually(lambda: len(gateway.service.dead_letters()) == 2, what="the unreadable one recorded")
        time.sleep(0.5)  # nothing more arrives
        assert transport.consumer.stats.retried == 3  # delivered once, then twice more: the limit
        assert transport.consumer.stats.rejected == 1
    unreadable, failing = gateway.service.dead_letters()
    assert (failing.outbox_id, failing.case_no, failing.error_class) == (rows[doomed].id, doomed, "unhandled")
    assert failing.error_message.startswith("delivery limit reached after 3 deliveries from yiwang.deliver.")
    assert failing.canonical_payload["outbox_id"] == rows[doomed].id
    assert {r.status for r in outbox(gateway) if r.case_no == doomed} == {"dead"}
    assert (unreadable.outbox_id, unreadable.case_no, unreadable.error_class) == (None, "", "unhandled")
    assert unreadable.error_message.startswith("rejected as unreadable")
    assert unreadable.canonical_payload == "\x00not one of ours <xml/>"
    assert queue_depth(amqp_url, DEAD_LETTER_QUEUE) == 0
    assert simulator.counters["cases_created"] == 1  # the doomed case never reached the sector


# --- heartbeats, reconnects, stopping -----------------------------------------------------------------------


def test_a_slow_sector_call_does_not_starve_the_heartbeats(gateway_for: Callable[..., Gateway],
                                                          simulator: SocialSecuritySimulator) -> None:
    gateway = gateway_for(amqp_heartbeat_s=1)
    simulator.set_fault("slow", count=1, slow_ms=4000)
    case_nos = submit(gateway)
    with running(gateway) as transport:
        eventually(lambda: all_settled(gateway, case_nos), what="the case approved")
        assert transport.consumer.stats.connections == 1  # the connection survived the 4 s call
    assert simulator.counters["faults_injected"] == 1
    assert (simulator.counters["submits_received"], simulator.counters["cases_created"]) == (1, 1)
    assert transport.consumer.stats.dropped_acks == 0


def test_connections_closed_by_the_broker_mid_run_lose_nothing(
        gateway_for: Callable[..., Gateway], amqp_url: str, simulator: SocialSecuritySimulator) -> None:
    gateway = gateway_for(worker_concurrency=2)
    simulator.set_fault("slow", slow_ms=40)  # 100 calls, two at a time: the run lasts a few seconds
    case_nos = submit(gateway, 50)
    vhost = unquote(amqp_url.rsplit("/", 1)[1])
    with running(gateway) as transport:
        eventually(lambda: simulator.counters["cases_created"] >= 10, what="the run under way")
        subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test: broker restart"],
                       check=True, capture_output=True, timeout=30)
        assert simulator.counters["cases_created"] < 50  # in the middle of the run
        eventually(lambda: all_settled(gateway, case_nos), timeout_s=45, what="all 50 cases approved")
        assert transport.consumer.stats.connections >= 2  # it did reconnect
        assert transport.relay.publisher.connections >= 2
    assert simulator.counters["cases_created"] == 50


def test_sigterm_hands_back_what_a_worker_holds_and_another_worker_finishes(
        gateway_for: Callable[..., Gateway], launch: Launch, simulator: SocialSecuritySimulator,  # noqa: F811
        amqp_url: str, tmp_path: Path) -> None:
    gateway = gateway_for()
    case_nos = submit(gateway, 10)
    worker_env = {"YIWANG_DATABASE_URL": gateway.settings.db_url, "YIWANG_AMQP_URL": amqp_url,
                  "YIWANG_SECTOR_ENDPOINTS": f"{SECTOR}={simulator.url}", "YIWANG_WORKER_CONCURRENCY": "2",
                  "YIWANG_DISPATCH_IDLE_MS": "20", "YIWANG_LEASE_MS": "10000", "YIWANG_REGISTRY_REFRESH_MS": "0"}
    simulator.set_fault("slow", slow_ms=1000)  # every call takes a second: the worker holds the rest meanwhile
    first = launch("worker", **worker_env)
    eventually(lambda: simulator.counters["submits_received"] >= 2 and
               all(r.status != "pending" for r in outbox(gateway) if r.operation == "submit_case"),
               what="the first worker busy, every case published")
    first.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert first.wait(timeout=15) == 0, (tmp_path / "proc-0.log").read_text()[-3000:]
    assert time.monotonic() - stopped_at < 12  # within the lease, not killed at the end of it
    handled_by_first = simulator.counters["submits_received"]
    assert handled_by_first < 10  # it did hold work it never started
    simulator.set_fault(None)
    launch("worker", **worker_env)
    eventually(lambda: all_settled(gateway, case_nos), timeout_s=40, what="the second worker finished the rest")
    counters = simulator.counters
    assert counters["cases_created"] == 10
    assert counters["submits_received"] == 10 and counters["duplicate_submits"] == 0  # nothing delivered twice


def test_yiwang_serve_delivers_through_rabbitmq_when_it_is_configured(
        gateway_for: Callable[..., Gateway], launch: Launch, simulator: SocialSecuritySimulator,  # noqa: F811
        amqp_url: str) -> None:
    gateway = gateway_for()  # the database as after `yiwang adapters register/activate`
    _, url = serve(launch, YIWANG_DATABASE_URL=gateway.settings.db_url, YIWANG_AMQP_URL=amqp_url,
                   YIWANG_SECTOR_ENDPOINTS=f"{SECTOR}={simulator.url}", YIWANG_DISPATCH_IDLE_MS="20")
    answer = httpx.post(f"{url}/v1/cases", json=COMPLETE_APPLICATION, headers=hall_key(gateway.settings.db_url),
                        timeout=10)
    assert answer.status_code == 201, answer.text
    eventually(lambda: all_settled(gateway, [answer.json()["case_no"]]), what="the case approved")
    assert all(row.published_at is not None for row in outbox(gateway))  # each went through the broker
    assert simulator.counters["cases_created"] == 1
