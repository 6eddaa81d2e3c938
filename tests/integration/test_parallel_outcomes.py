"""A parallel case's tasks delivered side by side: each outcome is recorded, each sector called once (issue 14).

职工退休一件事 goes to social security (SOAP) and the housing fund (REST) at once. Two workers each deliver one
of its tasks and record the sector's answer on the same case at the same moment; neither recording may
fail, because a worker whose recording failed hands the message back and the sector is called again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.case import Case
from gateway.domain.matter import Matter
from gateway.persistence import tables as t
from gateway.persistence.repository import OutboxMessage
from gateway.persistence.uow import UnitOfWork
from gateway.transport.in_process import Dispatcher
from tests.support.gateways import PARALLEL_APPLICATION, Keys

BOTH_READ_S = 2.0  # how long one recording waits for the other to have read the case too


@pytest.fixture
def sectors() -> Iterator[dict[str, SocialSecuritySimulator | HousingFundSimulator]]:
    with SocialSecuritySimulator(decision_delay_ms=60_000) as social, \
            HousingFundSimulator(decision_delay_ms=60_000) as housing:
        yield {"social_security": social, "housing_fund": housing}


def claim_one(gateway: Gateway, worker: Dispatcher) -> OutboxMessage:
    """What a worker does first: lease one due message (the next one for the next worker)."""
    now = gateway.service.clock.now()
    with UnitOfWork(gateway.engine) as uow:
        [message] = uow.outbox.claim_due(worker.owner, now, now + worker.settings.lease, 1)
        uow.commit()
    return message


def both_read_first(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race of the issue, every time: each recording, once it has read the case, waits (bounded) until the
    other has read it too, so neither has stored its outcome when the other reads. A recording that cannot
    read while the other holds the case goes on after BOTH_READ_S, and reads once the other has stored."""
    both = threading.Barrier(2)
    read = gateway.service.matter_of

    def after_reading(case: Case) -> Matter:
        try:
            both.wait(BOTH_READ_S)
        except threading.BrokenBarrierError:
            pass
        return read(case)

    monkeypatch.setattr(gateway.service, "matter_of", after_reading)


def test_two_workers_recording_the_tasks_of_one_case_at_once_call_each_sector_once(
    make_gateway: Callable[..., Gateway], sectors: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = make_gateway(bundles=tuple(sectors), sector_endpoints={s: sim.url for s, sim in sectors.items()})
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as hall:
        case_no = hall.post("/v1/cases", json=PARALLEL_APPLICATION).json()["case_no"]
    workers = [Dispatcher(gateway.service, gateway.registry, gateway.dispatcher.settings) for _ in range(2)]
    messages = [claim_one(gateway, worker) for worker in workers]
    assert sorted(m.sector for m in messages) == sorted(sectors)
    both_read_first(gateway, monkeypatch)
    failures: list[BaseException] = []

    def deliver(worker: Dispatcher, message: OutboxMessage) -> None:
        try:
            worker.deliver(message)
        except Exception as exc:  # noqa: BLE001 - what a worker does: hand the message back, deliver it again
            failures.append(exc)
            worker.deliver(message)

    threads = [threading.Thread(target=deliver, args=pair) for pair in zip(workers, messages, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert {s: (sim.counters["cases_created"], sim.counters["duplicate_submits"]) for s, sim in sectors.items()} \
        == {s: (1, 0) for s in sectors}  # each sector called once: nothing for its duplicate check to catch
    assert failures == []
    case = gateway.service.get(case_no)
    assert [(task.state, task.sector_ref is not None) for task in case.tasks] == [("in_process", True)] * 2
    with gateway.engine.connect() as conn:
        submits = conn.execute(select(t.outbox.c.status).where(t.outbox.c.operation == "submit_case")).scalars()
        assert sorted(submits) == ["done", "done"]
