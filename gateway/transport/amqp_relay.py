"""The outbox relay: due outbox rows → the broker, each row marked queued only once the broker confirmed it.

A round leases due rows for publishing (`claim_due(..., delivering=False)`), publishes each (persistent,
mandatory, confirmed) and marks the confirmed ones queued. Whatever is not marked stays pending and comes
due again when the relay's short lease ends: a lost connection, a crash between publish and mark, a broker
that refused the message. At worst a message goes out twice; a worker that takes the second copy finds it
settled (`OutboxRepository.take`), and the sector's idempotency key covers the rest (DESIGN invariants 1, 2).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import structlog

from gateway.domain.clock import Clock
from gateway.persistence.repository import OutboxMessage
from gateway.persistence.uow import UnitsOfWork
from gateway.transport.amqp_publisher import ConfirmedPublisher, PublishFailed, Unroutable
from gateway.transport.amqp_topology import DELIVER_EXCHANGE, Backoff, Envelope, Topology, describe, routing_key

log = structlog.get_logger("yiwang.amqp.relay")


class OutboxRelay:
    def __init__(self, units: UnitsOfWork, clock: Clock, publisher: ConfirmedPublisher, topology: Topology, *,
                 owner: str, idle: timedelta, batch: int = 20, lease: timedelta = timedelta(seconds=5),
                 backoff: Backoff | None = None) -> None:
        self.units, self.clock, self.publisher, self.topology = units, clock, publisher, topology
        self.owner = f"relay:{owner}"
        self.idle, self.batch = idle, batch
        # Long enough to publish one batch; after it, rows this relay leased but never marked come due again.
        self.lease = lease
        self.backoff = backoff or Backoff()
        self.stopped = threading.Event()
        self.published = 0  # confirmed and marked queued, since start

    def run(self) -> None:
        log.info("outbox relay started", owner=self.owner)
        while not self.stopped.is_set():
            try:
                relayed = self.relay_once()
            except PublishFailed as exc:
                wait = self.backoff.next()
                log.warning("broker unavailable; the outbox waits", error=str(exc), retry_in_s=round(wait, 2))
                self.publisher.pause(wait, self.stopped)
                continue
            except Exception as exc:  # the database may be briefly unavailable; keep going
                wait = self.backoff.next()
                log.error("outbox relay round failed", error=describe(exc), retry_in_s=round(wait, 2))
                self.publisher.pause(wait, self.stopped)
                continue
            self.backoff.reset()
            if not relayed:
                self.publisher.pause(self.idle.total_seconds(), self.stopped)
        self.publisher.close()
        log.info("outbox relay stopped", owner=self.owner)

    def stop(self) -> None:
        self.stopped.set()

    def relay_once(self) -> int:
        """Publish what is due now; returns how many the broker confirmed."""
        self.publisher.connect()  # no row is leased while the broker is unreachable
        now = self.clock.now()
        with self.units() as uow:
            due = uow.outbox.claim_due(self.owner, now, now + self.lease, self.batch, delivering=False)
            uow.commit()
        confirmed: list[int] = []
        try:
            for message in due:
                self._publish(message)
                confirmed.append(message.id)
        finally:  # what was confirmed before a failure is recorded all the same; the rest is due again at once
            with self.units() as uow:
                uow.outbox.mark_queued(confirmed, self.owner, self.clock.now())
                uow.outbox.release([m.id for m in due if m.id not in set(confirmed)], self.owner)
                uow.commit()
            self.published += len(confirmed)
        return len(confirmed)

    def _publish(self, message: OutboxMessage) -> None:
        green = message.priority > 0
        key = routing_key(message.sector, green)
        body = Envelope.of(message).body()
        # One id per publication: a polled row goes out again at its next due time.
        message_id = f"outbox-{message.id}@{message.available_at.isoformat()}"
        try:
            self.publisher.publish(DELIVER_EXCHANGE, key, body, message_id=message_id, mandatory=True)
        except Unroutable:  # the sector's queues do not exist yet: declare them, then publish again
            log.info("declaring a sector's queues", sector=message.sector)
            self.publisher.declare(lambda channel: self.topology.declare_sector(channel, message.sector))
            self.publisher.publish(DELIVER_EXCHANGE, key, body, message_id=message_id, mandatory=True)
