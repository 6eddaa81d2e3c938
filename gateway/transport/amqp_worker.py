"""A worker's consumers: delivery messages in, sector calls out, acknowledgements only after the outcome is stored.

One I/O thread owns the connection (pika's connections are not thread-safe). It consumes both queues of
every sector with an active bundle — the green one first, by its own consumer — and hands each message to a
pool of `worker_concurrency` threads, green messages first. The sector call runs in the pool, never on the
I/O thread, so heartbeats keep flowing while a sector is slow; the pool sends the acknowledgement back through
`add_callback_threadsafe` once `take_and_deliver` returned, i.e. once its outcome is stored (invariant 1).
A database error hands the message back (nack, requeue) after a backoff; the broker's delivery limit ends a
message that can never be handled in its dead-letter queue, which `DeadLetterConsumer` turns into a dead
letter in the database (invariant 9). Acknowledgements for a channel that closed meanwhile are dropped: the
broker redelivers, `take` finds the outcome stored and the sector's idempotency covers the rest.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import pika
import structlog
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError

from gateway.cases.service import CaseService
from gateway.persistence.repository import Failure
from gateway.transport.amqp_topology import (
    DEAD_LETTER_QUEUE,
    RECONNECT_ON,
    Backoff,
    Envelope,
    Topology,
    UnreadableMessage,
    connection_parameters,
    declare_common,
    describe,
    pause,
    queue_name,
)
from gateway.transport.in_process import Dispatcher

log = structlog.get_logger("yiwang.amqp.worker")
UNHANDLED = "unhandled"  # the error class of what the broker dead-lettered
MAX_DEAD_PAYLOAD = 64 * 1024  # of a dead-lettered body kept in the dead letter


@dataclass
class WorkerStats:
    """What a worker did since it started (logs and tests)."""

    connections: int = 0
    delivered: int = 0  # taken and delivered: the outcome is stored
    copies: int = 0  # redelivered copies whose outcome was stored already: acknowledged, no sector call
    retried: int = 0  # handed back after a failure before the outcome was stored (the database)
    handed_back: int = 0  # held but not started when the worker stopped
    rejected: int = 0  # unreadable bodies, rejected to the dead-letter exchange
    dropped_acks: int = 0  # acknowledgements for a channel that had closed: the broker redelivers


@dataclass(frozen=True)
class Held:
    """A message this worker holds unacknowledged, on the channel it came by."""

    connection: pika.BlockingConnection
    channel: BlockingChannel
    delivery_tag: int
    envelope: Envelope


class DeliveryConsumer:
    def __init__(self, url: str, dispatcher: Dispatcher, sectors: Callable[[], Iterable[str]], topology: Topology,
                 *, heartbeat_s: int, prefetch: int, concurrency: int, drain: timedelta, rescan_s: float = 2.0,
                 backoff: Backoff | None = None,
                 retry_backoff: Backoff | None = None) -> None:
        self.dispatcher, self.sectors, self.topology = dispatcher, sectors, topology
        self._parameters = connection_parameters(url, heartbeat_s, f"yiwang worker {dispatcher.owner}")
        self.prefetch, self.concurrency, self.drain = prefetch, concurrency, drain
        self.rescan_s = rescan_s  # how often the active sectors are read: a new one is consumed without restart
        self.backoff = backoff or Backoff()  # between reconnects
        self.retry_backoff = retry_backoff or Backoff()  # before handing back what failed for the database
        self.stats = WorkerStats()
        self.stopped = threading.Event()  # set: take no more work, hand back what has not started
        self._work: queue.PriorityQueue[tuple[int, int, Held | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._busy = 0  # sector calls in flight
        self._pool: list[threading.Thread] = []

    # -- the I/O thread ------------------------------------------------------------------------------------
    def run(self) -> None:
        self._pool = [threading.Thread(target=self._serve, name=f"worker-pool-{i}", daemon=True)
                      for i in range(self.concurrency)]
        for thread in self._pool:
            thread.start()
        reconnecting(self._session, self.stopped, self.backoff, "worker")
        for _ in self._pool:
            self._work.put((-1, next(self._order), None))  # ahead of anything left: the pool ends
        log.info("worker stopped", **vars(self.stats))

    def stop(self) -> None:
        self.stopped.set()

    def _session(self) -> None:
        connection = pika.BlockingConnection(self._parameters)
        try:
            self._count("connections")
            self.backoff.reset()
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.prefetch)  # per consumer: each queue's own window
            declare_common(channel)
            consumers: dict[str, str] = {}  # queue -> consumer tag
            next_scan = 0.0
            while not self.stopped.is_set():
                if time.monotonic() >= next_scan:
                    self._consume_new_sectors(connection, channel, consumers)
                    next_scan = time.monotonic() + self.rescan_s
                connection.process_data_events(time_limit=0.2)
            self._wind_down(connection, channel, consumers)
        finally:
            close_quietly(connection)

    def _consume_new_sectors(self, connection: pika.BlockingConnection, channel: BlockingChannel,
                             consumers: dict[str, str]) -> None:
        try:
            sectors = sorted(set(self.sectors()))
        except Exception as exc:  # the database: keep consuming what we consume, ask again later
            log.error("cannot read the active sectors", error=describe(exc))
            return
        for sector in sectors:
            if queue_name(sector, True) in consumers:
                continue
            self.topology.declare_sector(channel, sector)
            for green in (True, False):  # the green queue's consumer first
                queue_ = queue_name(sector, green)
                consumers[queue_] = channel.basic_consume(queue_, partial(self._received, connection, green))
            log.info("consuming", sector=sector)

    def _received(self, connection: pika.BlockingConnection, green: bool, channel: BlockingChannel,
                  method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        try:
            envelope = Envelope.parse(body)
        except UnreadableMessage as exc:
            log.warning("unreadable message rejected to the dead letters", error=str(exc),
                        routing_key=method.routing_key, message_id=properties.message_id)
            channel.basic_reject(method.delivery_tag, requeue=False)
            self._count("rejected")
            return
        if self.stopped.is_set():
            channel.basic_nack(method.delivery_tag, requeue=True)
            self._count("handed_back")
            return
        self._work.put((0 if green else 1, next(self._order), Held(connection, channel, method.delivery_tag, envelope)))

    def _wind_down(self, connection: pika.BlockingConnection, channel: BlockingChannel,
                   consumers: dict[str, str]) -> None:
        """Stop taking work, hand back what is held but not started, finish what is in flight (bounded)."""
        for tag in consumers.values():
            channel.basic_cancel(tag)  # pika hands back what arrived for it but was not dispatched yet
        while True:
            try:
                _, _, held = self._work.get_nowait()
            except queue.Empty:
                break
            if held is not None:
                self._settle(held, ack=False, started=False)
        deadline = time.monotonic() + self.drain.total_seconds()
        while self._in_flight() and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)  # runs the pool's acknowledgements
        connection.process_data_events(time_limit=0)
        if running := self._in_flight():
            log.warning("stopping with sector calls still running; the broker hands them to another worker",
                        running=running)

    def _in_flight(self) -> int:
        with self._lock:
            return self._busy

    # -- the pool ------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            _, _, held = self._work.get()
            if held is None:
                return
            with self._lock:
                start = not self.stopped.is_set() and held.channel.is_open
                self._busy += start
            if not start:  # stopping: hand it back; its channel closed: the broker has it again already
                self._threadsafe(held, ack=False, started=False)
                continue
            try:
                ack = self._handle(held.envelope)
                self._threadsafe(held, ack=ack, started=True)
            finally:
                with self._lock:
                    self._busy -= 1

    def _handle(self, envelope: Envelope) -> bool:
        """Deliver one message; True to acknowledge it, False to hand it back (nothing was stored)."""
        try:
            delivered = self.dispatcher.take_and_deliver(envelope.outbox_id)
        except Exception as exc:  # the database: the outcome is not stored, so the message must not be acked
            wait = self.retry_backoff.next()
            log.error("delivery failed before its outcome was stored; handing it back", error=describe(exc),
                      outbox_id=envelope.outbox_id, case_no=envelope.case_no, retry_in_s=round(wait, 2))
            self.stopped.wait(wait)
            self._count("retried")
            return False
        self.retry_backoff.reset()
        if delivered:
            self._count("delivered")
        else:
            self._count("copies")
            log.info("copy of a settled message acknowledged", outbox_id=envelope.outbox_id, case_no=envelope.case_no)
        return True

    # -- acknowledgements ---------------------------------------------------------------------------------
    def _threadsafe(self, held: Held, *, ack: bool, started: bool) -> None:
        try:
            held.connection.add_callback_threadsafe(partial(self._settle, held, ack=ack, started=started))
        except (AMQPError, *RECONNECT_ON):  # the connection is gone: the broker redelivers
            self._count("dropped_acks")

    def _settle(self, held: Held, *, ack: bool, started: bool) -> None:
        """On the I/O thread: acknowledge, or hand back for redelivery."""
        if not held.channel.is_open:
            self._count("dropped_acks")
            return
        if ack:
            held.channel.basic_ack(held.delivery_tag)
        else:
            held.channel.basic_nack(held.delivery_tag, requeue=True)
            if not started:
                self._count("handed_back")

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)


class DeadLetterConsumer:
    """Turns what the broker dead-lettered into dead letters in the database, the one record operators
    query and replay from; acknowledged only once recorded."""

    def __init__(self, url: str, service: CaseService, *, heartbeat_s: int, delivery_limit: int, name: str,
                 backoff: Backoff | None = None, retry_backoff: Backoff | None = None) -> None:
        self.service, self.delivery_limit = service, delivery_limit
        self._parameters = connection_parameters(url, heartbeat_s, f"yiwang dead letters {name}")
        self.backoff = backoff or Backoff()
        self.retry_backoff = retry_backoff or Backoff()
        self.stopped = threading.Event()
        self.recorded = 0

    def run(self) -> None:
        reconnecting(self._session, self.stopped, self.backoff, "dead-letter consumer")

    def stop(self) -> None:
        self.stopped.set()

    def _session(self) -> None:
        connection = pika.BlockingConnection(self._parameters)
        try:
            self.backoff.reset()
            channel = connection.channel()
            declare_common(channel)
            channel.basic_qos(prefetch_count=10)
            for method, properties, body in channel.consume(DEAD_LETTER_QUEUE, inactivity_timeout=0.2):
                if self.stopped.is_set():
                    break
                if method is None:
                    continue
                try:
                    self.record(properties.headers, body)
                except Exception as exc:  # the database: keep it in the broker, try again after a while
                    wait = self.retry_backoff.next()
                    log.error("cannot record a dead letter yet", error=describe(exc), retry_in_s=round(wait, 2))
                    pause(connection, wait, self.stopped)
                    channel.basic_nack(method.delivery_tag, requeue=True)
                    continue
                self.retry_backoff.reset()
                channel.basic_ack(method.delivery_tag)
            channel.cancel()  # hands back what was prefetched
        finally:
            close_quietly(connection)

    def record(self, headers: dict[str, Any] | None, body: bytes) -> int | None:
        """One dead-lettered message as a dead letter; None when its outbox row is settled already."""
        try:
            envelope: Envelope | None = Envelope.parse(body)
        except UnreadableMessage:
            envelope = None
        why, deliveries = death(headers, self.delivery_limit)
        about = {"case_no": envelope.case_no if envelope else "", "sector": envelope.sector if envelope else "",
                 "operation": envelope.operation if envelope else "",
                 "idempotency_key": envelope.idempotency_key if envelope else "", "deliveries": deliveries}
        letter = self.service.record_unhandled(envelope.outbox_id if envelope else None,
                                               Failure(UNHANDLED, why, canonical_payload=kept_body(body)), about)
        self.recorded += letter is not None
        log.warning("broker dead letter recorded" if letter is not None else "broker dead letter already settled",
                    dead_letter_id=letter, outbox_id=envelope.outbox_id if envelope else None, why=why)
        return letter


def death(headers: dict[str, Any] | None, delivery_limit: int) -> tuple[str, int]:
    """Why the broker dead-lettered a message (its latest `x-death` entry), and how often it was delivered."""
    deaths = (headers or {}).get("x-death") or [{}]
    latest = deaths[0] if isinstance(deaths[0], dict) else {}
    reason, source = latest.get("reason"), latest.get("queue") or "an unknown queue"
    if reason == "delivery_limit":  # the quorum queue delivered it once, then `delivery_limit` times again
        return f"delivery limit reached after {delivery_limit + 1} deliveries from {source}", delivery_limit + 1
    if reason == "rejected":  # workers reject only what they cannot read
        return f"rejected as unreadable by a worker, from {source}", 1
    if reason:
        return f"dead-lettered by the broker ({reason}) from {source}", 0
    return "dead-lettered by the broker for no stated reason (no x-death header)", 0


def kept_body(body: bytes) -> Any:
    """The body as JSON when it is JSON, else as text; at most 64 KiB of it."""
    if len(body) <= MAX_DEAD_PAYLOAD:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            pass
    return body[:MAX_DEAD_PAYLOAD].decode("utf-8", errors="replace")


def reconnecting(session: Callable[[], None], stopped: threading.Event, backoff: Backoff, who: str) -> None:
    """Run a consuming session until `stopped`; a lost connection is opened again after a backoff."""
    while not stopped.is_set():
        try:
            session()
        except (AMQPError, *RECONNECT_ON) as exc:
            if stopped.is_set():
                break
            wait = backoff.next()
            log.warning(f"{who} lost the broker; reconnecting", error=describe(exc), retry_in_s=round(wait, 2))
            stopped.wait(wait)


def close_quietly(connection: pika.BlockingConnection) -> None:
    """Close a session's connection on the way out; one already broken needs nothing more."""
    if connection.is_open:
        try:
            connection.close()
        except (AMQPError, *RECONNECT_ON):
            pass
