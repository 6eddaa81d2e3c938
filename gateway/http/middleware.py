"""ASGI middleware around every request: the correlation id (bound for everything that serves the request,
echoed, logged once per request) and the body limit (413 before any byte is parsed)."""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http.problems import problem_response
from gateway.observability.correlation import HEADER, correlated

log = structlog.get_logger("yiwang.http")


class CorrelationMiddleware:
    """Binds the request's correlation id for everything that serves it, echoes it in the response, and
    writes one log line per request (uvicorn's access log is off: this one carries the id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(HEADER.lower().encode())
        status = 500  # what the server sends if the app fails before answering

        with correlated(offered.decode("latin-1") if offered else None) as correlation_id:
            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (HEADER.lower().encode(), correlation_id.encode())]}
                await send(message)

            started = time.monotonic()
            try:
                await self.app(scope, receive, send_with_id)
            finally:  # the path only: a query string may hold what must not be logged, and is not needed
                log.info("request served", method=scope["method"], path=scope["path"], status=status,
                         duration_ms=round((time.monotonic() - started) * 1000, 1))


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413 before any of them is parsed (chunked ones too).

    Paths in `exempt` enforce limits of their own (material uploads stream to disk with theirs).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") or (
                scope["path"] in self.exempt):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, "payload-too-large", "请求体过大", f"上限 {self.max_bytes} 字节",
                                    scope.get("path"))
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
