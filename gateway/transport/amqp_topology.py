"""What the RabbitMQ transport agrees on with the broker: exchanges, queues, the message body, connections.

Topology (declared idempotently by whoever needs it first):
- `yiwang.deliver`, a durable direct exchange; per sector two quorum queues, `yiwang.deliver.<sector>`
  (routing key `<sector>`) and `yiwang.deliver.<sector>.green` (`<sector>.green`), each with a delivery
  limit and `yiwang.dead-letters` as its dead-letter exchange. The green channel is a queue of its own with
  a consumer of its own — quorum queues have no priorities — so ordinary cases never stand in front of it.
- `yiwang.dead-letters`, a durable fanout exchange bound to the quorum queue of the same name: what no
  worker could handle, on its way into the database's dead letters (DESIGN invariant 9).
- `yiwang.case-events`, a durable topic exchange: what the hall is told about its cases.

A message names an outbox row and nothing else: no personal data ever travels through the broker
(DESIGN invariant 8). The worker reads the rest from the database.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPConnectionError, ChannelClosed, ConnectionClosed, StreamLostError

from gateway.persistence.repository import OutboxMessage

DELIVER_EXCHANGE = "yiwang.deliver"
DEAD_LETTER_EXCHANGE = "yiwang.dead-letters"
DEAD_LETTER_QUEUE = "yiwang.dead-letters"
CASE_EVENTS_EXCHANGE = "yiwang.case-events"
QUORUM = {"x-queue-type": "quorum"}
# What ends a connection's session and starts a reconnect (StreamLostError is an AMQPConnectionError too).
RECONNECT_ON: tuple[type[Exception], ...] = (AMQPConnectionError, ConnectionClosed, ChannelClosed, StreamLostError,
                                             OSError)


def routing_key(sector: str, green: bool) -> str:
    return f"{sector}.green" if green else sector


def queue_name(sector: str, green: bool) -> str:
    return f"{DELIVER_EXCHANGE}.{routing_key(sector, green)}"


def declare_common(channel: BlockingChannel) -> None:
    """The exchanges every process needs, and the dead-letter queue (no delivery limit: it only feeds the
    database, and a message there waits until the database takes it)."""
    channel.exchange_declare(DELIVER_EXCHANGE, "direct", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, "fanout", durable=True)
    channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, arguments=QUORUM)
    channel.queue_bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE)
    channel.exchange_declare(CASE_EVENTS_EXCHANGE, "topic", durable=True)


@dataclass(frozen=True)
class Topology:
    delivery_limit: int  # redeliveries of one message before the broker dead-letters it

    def declare_sector(self, channel: BlockingChannel, sector: str) -> None:
        """A sector's two queues. Redeclaring one with another delivery limit fails (PRECONDITION_FAILED):
        a changed YIWANG_DELIVERY_LIMIT needs the queue deleted once it is empty, or a broker policy."""
        declare_common(channel)
        arguments = {**QUORUM, "x-delivery-limit": self.delivery_limit,
                     "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
        for green in (True, False):
            channel.queue_declare(queue_name(sector, green), durable=True, arguments=arguments)
            channel.queue_bind(queue_name(sector, green), DELIVER_EXCHANGE, routing_key(sector, green))


class UnreadableMessage(ValueError):
    """A body that is not one of our envelopes: the broker dead-letters it, nothing is delivered."""


@dataclass(frozen=True)
class Envelope:
    """The body of a delivery message: the outbox row's identifiers, nothing personal."""

    outbox_id: int
    case_no: str
    sector: str
    operation: str
    idempotency_key: str

    @classmethod
    def of(cls, message: OutboxMessage) -> Envelope:
        return cls(message.id, message.case_no, message.sector, message.operation, message.idempotency_key)

    def body(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def parse(cls, body: bytes) -> Envelope:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnreadableMessage(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise UnreadableMessage("not a JSON object")
        outbox_id = data.get("outbox_id")
        if not isinstance(outbox_id, int) or isinstance(outbox_id, bool):
            raise UnreadableMessage("outbox_id is not a number")
        texts = {name: data.get(name) for name in ("case_no", "sector", "operation", "idempotency_key")}
        wrong = sorted(name for name, value in texts.items() if not isinstance(value, str))
        if wrong:
            raise UnreadableMessage(f"missing or not text: {', '.join(wrong)}")
        return cls(outbox_id, **texts)  # type: ignore[arg-type]  # checked to be str above


def connection_parameters(url: str, heartbeat_s: int, name: str) -> pika.URLParameters:
    """One connection's parameters; `name` shows in `rabbitmqctl list_connections name`."""
    parameters = pika.URLParameters(url)
    parameters.heartbeat = heartbeat_s
    parameters.blocked_connection_timeout = max(60, 2 * heartbeat_s)  # a broker alarm never hangs us for ever
    parameters.connection_attempts = 1  # our own loops retry, with backoff
    parameters.socket_timeout = 5
    parameters.client_properties = {"connection_name": name}
    return parameters


class Backoff:
    """Exponential backoff with jitter between reconnects (and retries): 0.2 s doubling up to 30 s by
    default; each wait is drawn from [half, all] of the step so many workers do not return in step."""

    def __init__(self, initial_s: float = 0.2, max_s: float = 30.0,
                 jitter: Callable[[], float] = random.random) -> None:
        self.initial_s, self.max_s, self._jitter = initial_s, max_s, jitter
        self._attempt = 0
        self._lock = threading.Lock()  # a worker's pool threads share one

    def next(self) -> float:
        with self._lock:
            step: float = min(self.max_s, self.initial_s * 2 ** min(self._attempt, 32))
            self._attempt += 1
        return step * (0.5 + self._jitter() / 2)

    def reset(self) -> None:
        with self._lock:
            self._attempt = 0


def pause(connection: pika.BlockingConnection | None, seconds: float, stop: threading.Event | None = None) -> None:
    """Wait up to `seconds` (less once `stop` is set), answering the connection's heartbeats meanwhile: pika
    only does that while it is called. Connection errors propagate."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0 and not (stop is not None and stop.is_set()):
        if connection is not None and connection.is_open:
            connection.process_data_events(time_limit=min(remaining, 0.2))
        elif stop is not None:
            stop.wait(min(remaining, 0.2))
        else:
            time.sleep(min(remaining, 0.2))


def describe(error: BaseException) -> str:
    """An error for the log: pika's messages alone are often empty."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
