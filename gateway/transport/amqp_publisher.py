"""Publishing with publisher confirms: a message counts as sent only when the broker says it has it.

Used from ONE thread (pika's connections are not thread-safe): the outbox relay has one, and whoever
publishes the hall's case events has another. It connects on first use; after a failure it drops its
connection and the next call connects afresh, so a caller only ever sees one clear exception per attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, NackError, UnroutableError

from gateway.transport.amqp_topology import RECONNECT_ON, connection_parameters, declare_common, describe, pause


class PublishFailed(Exception):
    """The broker did not confirm the message: it may or may not have it. Publish it again later."""


class Unroutable(PublishFailed):
    """The broker confirmed it but no queue is bound for its routing key (it was returned, not kept)."""


class ConfirmedPublisher:
    def __init__(self, url: str, heartbeat: int = 30, name: str = "yiwang publisher",
                 declare: Callable[[BlockingChannel], None] = declare_common) -> None:
        self._parameters = connection_parameters(url, heartbeat, name)
        self._declare = declare  # the topology this publisher's exchanges need, on every (re)connect
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self.connections = 0  # how many times it connected (tests, logs)

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, object] | None = None, *,
                message_id: str | None = None, mandatory: bool = False,
                content_type: str = "application/json") -> None:
        """Returns once the broker confirmed the message (persistent); raises `PublishFailed` otherwise,
        `Unroutable` when `mandatory` and nothing is bound for `routing_key`."""
        channel = self._ready()
        properties = pika.BasicProperties(delivery_mode=2, content_type=content_type, message_id=message_id,
                                          headers=headers)
        try:
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
        except UnroutableError as exc:  # the channel stays usable
            raise Unroutable(f"no queue is bound to {exchange!r} for {routing_key!r}") from exc
        except NackError as exc:  # the broker refused it (an alarm, a queue limit); the channel stays usable
            raise PublishFailed(f"the broker refused a message for {exchange!r} {routing_key!r}") from exc
        except (AMQPError, *RECONNECT_ON) as exc:
            self.close()
            raise PublishFailed(f"publishing to {exchange!r} failed: {describe(exc)}") from exc

    def connect(self) -> None:
        """Connect now unless connected; raises `PublishFailed` when the broker is unreachable."""
        self._ready()

    def declare(self, declare: Callable[[BlockingChannel], None]) -> None:
        """Run a declaration (queues, bindings) on this publisher's channel."""
        channel = self._ready()
        try:
            declare(channel)
        except (AMQPError, *RECONNECT_ON) as exc:
            self.close()
            raise PublishFailed(f"declaring the topology failed: {describe(exc)}") from exc

    def pause(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait, keeping the connection's heartbeats flowing (pika only answers them while called)."""
        deadline = time.monotonic() + seconds
        try:
            pause(self._connection, seconds, stop)
        except (AMQPError, *RECONNECT_ON):
            self.close()  # the next publish reconnects
            pause(None, deadline - time.monotonic(), stop)

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (AMQPError, *RECONNECT_ON):
                pass  # it is gone either way

    def _ready(self) -> BlockingChannel:
        if self._connection is not None and self._channel is not None and self._channel.is_open:
            try:
                self._connection.process_data_events(time_limit=0)  # a connection dropped while idle shows here
                return self._channel
            except (AMQPError, *RECONNECT_ON):
                self.close()
        self.close()
        try:
            connection = pika.BlockingConnection(self._parameters)
        except (AMQPError, *RECONNECT_ON) as exc:
            raise PublishFailed(f"cannot reach the broker: {describe(exc)}") from exc
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            self._declare(channel)
        except (AMQPError, *RECONNECT_ON) as exc:
            self._connection = connection
            self.close()
            raise PublishFailed(f"cannot set up a channel: {describe(exc)}") from exc
        self._connection, self._channel = connection, channel
        self.connections += 1
        return channel
