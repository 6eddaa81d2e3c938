"""A loopback receiver of the gateway's webhooks: what the hall's notification endpoint got."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

LOOPBACK = "127.0.0.1"


@dataclass
class Received:
    path: str
    event: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    at: float  # time.monotonic()
    status: int  # what the receiver answered
    signed: bool  # the signature checked out against the path's secret


@dataclass
class Receiver:
    """The hall's side: records every request, checks its signature, answers as `answer` says."""

    port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)  # path -> the subscription's secret
    answer: Callable[[str, dict[str, Any], int], int] = lambda path, event, nth: 200  # nth: of this case, here
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def delivered(self, path: str) -> list[Received]:
        return [r for r in self.on(path) if 200 <= r.status < 300]

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        event = json.loads(body)
        timestamp = headers.get("yiwang-timestamp", "")
        expected = "v1=" + hmac.new(self.secrets.get(path, "").encode(), f"{timestamp}.".encode() + body,
                                    hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(headers.get("yiwang-signature", ""), expected) \
            and abs(time.time() - int(timestamp)) < 60
        with self.lock:
            nth = sum(1 for r in self.requests if r.event["case_no"] == event["case_no"] and r.path == path)
            status = self.answer(path, event, nth)
            self.requests.append(Received(path, event, body, headers, time.monotonic(), status, signed))
        return status


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
