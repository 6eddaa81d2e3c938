"""Guaranteed delivery over RabbitMQ: the transport a process runs when `YIWANG_AMQP_URL` is set.

`AmqpTransport` runs, each on a thread with its own connection (never shared between threads):
- the outbox relay (`amqp_relay.py`): due outbox rows → `yiwang.deliver`, marked queued once confirmed;
- the delivery consumer (`amqp_worker.py`): both queues of every active sector → the sector, acknowledged
  once the outcome is stored;
- the dead-letter consumer: what the broker gave up on → dead letters in the database;
- the scheduled jobs (`gateway.transport.scheduler`): the deadline clock, certificate expiry, the outbox sweep, the
  hall's notifications — each once per interval across all processes.
The topology and the message body are in `amqp_topology.py`; `ConfirmedPublisher` (`amqp_publisher.py`)
publishes with confirms for others too (the hall's case events on `yiwang.case-events`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Protocol

import structlog

from gateway.config import Settings
from gateway.transport.amqp_publisher import ConfirmedPublisher, PublishFailed, Unroutable
from gateway.transport.amqp_relay import OutboxRelay
from gateway.transport.amqp_topology import (
    CASE_EVENTS_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DELIVER_EXCHANGE,
    Backoff,
    Envelope,
    Topology,
    describe,
    queue_name,
    routing_key,
)
from gateway.transport.amqp_worker import DeadLetterConsumer, DeliveryConsumer, WorkerStats
from gateway.transport.in_process import Dispatcher

__all__ = ["CASE_EVENTS_EXCHANGE", "DEAD_LETTER_EXCHANGE", "DEAD_LETTER_QUEUE", "DELIVER_EXCHANGE", "AmqpTransport",
           "Backoff", "ConfirmedPublisher", "DeadLetterConsumer", "DeliveryConsumer", "Envelope", "OutboxRelay",
           "PublishFailed", "ScheduledJobs", "Topology", "Unroutable", "WorkerStats", "queue_name", "routing_key"]
log = structlog.get_logger("yiwang.amqp")


class Loop(Protocol):
    """A part of the transport: `run` until `stop` is called (from another thread)."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


class ScheduledJobs:
    """Runs the dispatcher's scheduled jobs every `idle` (the in-process dispatcher does so between rounds)."""

    def __init__(self, dispatcher: Dispatcher, idle: timedelta) -> None:
        self.dispatcher, self.idle = dispatcher, idle
        self.stopped = threading.Event()

    def run(self) -> None:
        scheduler = self.dispatcher.scheduler
        while scheduler is not None and not self.stopped.wait(self.idle.total_seconds()):
            try:
                scheduler.run_due()
            except Exception as exc:  # the database may be briefly unavailable; keep going
                log.error("scheduled jobs failed", error=describe(exc))

    def stop(self) -> None:
        self.stopped.set()


class AmqpTransport:
    """Relay, consumers and scheduled jobs of one process; `start()`, then `stop(timeout)` on shutdown."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher, sectors: Callable[[], Iterable[str]], *,
                 backoff: Callable[[], Backoff] = Backoff, rescan_s: float = 2.0) -> None:
        if not settings.amqp_url:
            raise ValueError("the RabbitMQ transport needs YIWANG_AMQP_URL")
        url, heartbeat = settings.amqp_url, settings.amqp_heartbeat_s
        topology = Topology(settings.delivery_limit)
        service = dispatcher.service
        idle = timedelta(milliseconds=settings.dispatch_idle_ms)
        self.relay = OutboxRelay(
            service.units, service.clock, ConfirmedPublisher(url, heartbeat, f"yiwang relay {dispatcher.owner}"),
            topology, owner=dispatcher.owner, idle=idle, backoff=backoff())
        self.consumer = DeliveryConsumer(
            url, dispatcher, sectors, topology, heartbeat_s=heartbeat, prefetch=settings.amqp_prefetch,
            concurrency=settings.worker_concurrency, drain=timedelta(milliseconds=settings.lease_ms),
            rescan_s=rescan_s, backoff=backoff(), retry_backoff=backoff())
        self.dead_letters = DeadLetterConsumer(
            url, service, heartbeat_s=heartbeat, delivery_limit=settings.delivery_limit, name=dispatcher.owner,
            backoff=backoff(), retry_backoff=backoff())
        self.jobs = ScheduledJobs(dispatcher, idle)
        self.parts: dict[str, Loop] = {"relay": self.relay, "consumer": self.consumer,
                                       "dead-letters": self.dead_letters, "jobs": self.jobs}
        self._threads: dict[str, threading.Thread] = {}

    def start(self, *names: str) -> None:
        """Start every part, or only those named (tests start a relay without consumers)."""
        for name in names or tuple(self.parts):
            if name in self._threads:
                continue
            thread = threading.Thread(target=self.parts[name].run, name=f"amqp-{name}", daemon=True)
            self._threads[name] = thread
            thread.start()
        log.info("RabbitMQ transport started", owner=self.consumer.dispatcher.owner, parts=sorted(self._threads))

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking work, hand back what is held, finish what is in flight within `timeout` seconds."""
        for name in self._threads:
            self.parts[name].stop()
        deadline = time.monotonic() + timeout + 2  # the consumer's own bound comes first
        for name, thread in self._threads.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("transport part did not stop in time", part=name)
        self._threads.clear()
