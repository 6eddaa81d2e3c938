"""The in-process transport: a loop in this process takes due outbox rows and delivers them (`YIWANG_DISPATCH`
in-process, the embedded default), running the leased scheduled jobs between rounds.

`Dispatcher` is a `gateway.sectors.delivery.Delivery` (one message delivered and its outcome stored) with the
loop around it: claim a batch of due rows under a lease, deliver each case's messages in order and different
cases side by side. The RabbitMQ transport (`gateway.transport.amqp`) uses the same object without the loop:
its workers call `take_and_deliver` for each message the broker hands them, and `scheduler` between messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import structlog

from gateway.cases.service import CaseService
from gateway.materials.links import MaterialTransport
from gateway.persistence.repository import OutboxMessage
from gateway.sectors.delivery import AdapterSource, Delivery, DeliveryObserver, DispatchSettings, MessageLog

log = structlog.get_logger("yiwang.dispatch")


class Scheduled(Protocol):
    """The leased scheduled jobs (`gateway.transport.scheduler.Scheduler`): run what is due, in this process or none."""

    def run_due(self) -> int: ...


class Dispatcher(Delivery):
    def __init__(self, service: CaseService, registry: AdapterSource,
                 settings: DispatchSettings | None = None, materials: MaterialTransport | None = None,
                 messages: MessageLog | None = None, scheduler: Scheduled | None = None,
                 observer: DeliveryObserver | None = None) -> None:
        super().__init__(service, registry, settings, materials, messages, observer)
        self.scheduler = scheduler  # the clock, certificate expiry, notifications: run between rounds
        self._pool: ThreadPoolExecutor | None = None  # while `run` runs with concurrency > 1

    def run_once(self) -> int:
        """Deliver what is due now; returns how many messages were handled."""
        now = self.service.clock.now()
        with self.units() as uow:
            messages = uow.outbox.claim_due(self.owner, now, now + self.settings.lease, self.settings.batch)
            uow.commit()
        self._deliver_all(messages)
        return len(messages)

    def _deliver_all(self, messages: list[OutboxMessage]) -> None:
        """Each case's messages in claim order; different cases side by side when `run` has a pool, because a
        sector call mostly waits on the network and the next case need not wait for it."""
        by_case: dict[str, list[OutboxMessage]] = {}
        for message in messages:
            by_case.setdefault(message.case_no, []).append(message)
        if self._pool is None or len(by_case) < 2:
            for message in messages:
                self.deliver(message)
            return
        list(self._pool.map(self._deliver_in_order, by_case.values()))

    def _deliver_in_order(self, messages: list[OutboxMessage]) -> None:
        for message in messages:
            self.deliver(message)

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; a crash of one delivery never stops the loop."""
        log.info("dispatcher started", owner=self.owner, concurrency=self.settings.concurrency)
        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="deliver") as pool:
            self._pool = pool if self.settings.concurrency > 1 else None
            try:
                while not stop.is_set():
                    if self.scheduler is not None:
                        self._guarded(self.scheduler.run_due, "scheduled jobs failed")
                    handled = self._guarded(self.run_once, "dispatch round failed")
                    if not handled:
                        stop.wait(self.settings.idle.total_seconds())
            finally:
                self._pool = None

    @staticmethod
    def _guarded(step: Callable[[], int], failure: str) -> int:
        try:
            return step()
        except Exception:  # the database may be briefly unavailable; keep going
            log.exception(failure)
            return 0
