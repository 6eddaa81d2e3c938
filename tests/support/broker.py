"""Reading a RabbitMQ vhost's queues, and waiting on what a running process does, for the broker tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pika

from gateway.bootstrap.app import Gateway
from gateway.transport.amqp import (
    AmqpTransport,
    Backoff,
)
from tests.support.processes import Launch, hall_key, launch, serve  # noqa: F401 - `launch`: the fixture


def fast_backoff() -> Backoff:
    """Reconnect and retry quickly in tests (0.05 s … 0.5 s)."""
    return Backoff(initial_s=0.05, max_s=0.5)


@contextmanager
def running(gateway: Gateway, *parts: str, **settings: Any) -> Iterator[AmqpTransport]:
    """The gateway's transport (all parts, or those named), with `settings` changed; stopped at the end."""
    transport = AmqpTransport(replace(gateway.settings, **settings), gateway.dispatcher,
                              lambda: [s for s, _, _ in gateway.bundles.active()], backoff=fast_backoff, rescan_s=0.5)
    transport.start(*parts)
    try:
        yield transport
    finally:
        transport.stop(timeout=10)


def eventually(check: Callable[[], bool], timeout_s: float = 30, what: str = "the expected outcome") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.05)


@contextmanager
def broker(url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection.channel()
    finally:
        connection.close()


def queue_depth(url: str, queue: str) -> int:
    with broker(url) as channel:
        return int(channel.queue_declare(queue, passive=True).method.message_count)
