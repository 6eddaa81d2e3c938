"""A copy of a message that another worker holds under a live lease — the broker redelivered it after that
worker's connection dropped, or the outbox sweep published it again while it waited in a backlog — never calls
the sector a second time: it waits for the holder's outcome (then it is a copy to acknowledge) or for the
holder's lease to lapse (it died: the copy delivers). Real simulator over HTTP, both databases (issue 14)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select, update

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway
from gateway.persistence import tables as t
from gateway.transport.in_process import Dispatcher
from tests.support.cases import outbox_statuses, state, submit


def published(gateway: Gateway) -> int:
    """The case's message as the relay leaves it once the broker confirmed it (`queued`): its id."""
    with gateway.engine.begin() as conn:
        conn.execute(update(t.outbox).values(status="queued", published_at=gateway.service.clock.now(),
                                             lease_owner=None, lease_until=None))
        [outbox_id] = conn.execute(select(t.outbox.c.id)).scalars()
    assert outbox_statuses(gateway) == [("submit_case", "queued")]
    return int(outbox_id)


def second_worker(gateway: Gateway) -> Dispatcher:
    return Dispatcher(gateway.service, gateway.registry, replace(gateway.dispatcher.settings),
                      messages=gateway.ledger)


def test_a_copy_waits_for_the_live_holder_and_never_calls_the_sector_beside_it(
        make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": simulator.url})
    case_no = submit(gateway)
    outbox_id = published(gateway)
    simulator.set_fault("slow", slow_ms=1500, count=1)  # the first worker's call takes a while
    first = threading.Thread(target=gateway.dispatcher.take_and_deliver, args=(outbox_id,))
    first.start()
    deadline = time.monotonic() + 10
    while simulator.counters["raw_requests"] == 0:  # the first worker is at the sector
        assert time.monotonic() < deadline, "the first worker never reached the sector"
        time.sleep(0.01)
    copy = second_worker(gateway).take_and_deliver(outbox_id)
    first.join(timeout=20)
    assert copy is False  # a copy: acknowledged, not delivered
    assert simulator.counters["submits_received"] == 1  # one call at the sector, not two
    assert state(gateway, case_no) == "in_process"


def test_a_copy_of_a_message_whose_holder_died_delivers_once_the_lease_lapses(
        make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": simulator.url}, lease_ms=600)
    case_no = submit(gateway)
    outbox_id = published(gateway)
    now = gateway.service.clock.now()
    with gateway.engine.begin() as conn:  # a worker took it, then died: its lease runs on for 600 ms
        conn.execute(update(t.outbox).values(lease_owner="host:1:dead", lease_until=now + timedelta(milliseconds=600)))
    started = time.monotonic()
    assert second_worker(gateway).take_and_deliver(outbox_id) is True
    assert time.monotonic() - started >= 0.4  # it waited for the lease to lapse
    assert simulator.counters["submits_received"] == 1
    assert state(gateway, case_no) == "in_process"
