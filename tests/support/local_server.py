"""A scripted local HTTP server, and a REST adapter built on a reference bundle, for the adapter tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from adapters.contract import Operation
from adapters.kinds.rest.adapter import RestAdapter
from mappings import compile_mapping


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    target: str  # path and query, as on the wire
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    client_port: int

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = b""  # bytes as they are; anything else is sent as JSON
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, ensure_ascii=False).encode()


Responder = Callable[[Seen], Reply]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing its kept-alive connection is no news


class LocalServer:
    """An HTTP/1.1 server on an ephemeral port that records requests and answers with `respond`."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.respond: Responder = respond or (lambda seen: Reply(body={}))
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def script(self, *replies: Reply) -> None:
        """Answer with these replies in turn (the last one repeats), forgetting earlier requests."""
        queue = list(replies)
        with self._lock:
            self.seen = []
        self.respond = lambda seen: queue.pop(0) if len(queue) > 1 else queue[0]

    def _take(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
        return self.respond(seen)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable

            def handle_one(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                reply = server._take(Seen(self.command, self.path, headers, body, self.client_address[1]))
                time.sleep(reply.delay_s)
                payload = reply.payload()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (timeout tests)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one  # noqa: N815 (http.server's naming)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> LocalServer:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ENVELOPE_OK = {"business_error": {"code": "code", "ok": [0], "message": "msg"}}


SUBMIT = {
    "code_tables": {"priority": {"true": "GREEN", "false": "NORMAL"}},
    "http": {
        "method": "POST",
        "path": "/api/v2/applications",
        "headers": {"X-Priority": {"from": "case.green_channel", "code_table": "priority"}},
        "success": [200, 201],
    },
    "request": {
        "applicationNo": {"from": "case.case_no"},
        "applicant": {"fullName": {"from": "case.applicant.name"}, "idCardNo": {"from": "case.applicant.id_number"}},
        "attachments": {"for_each": "case.materials", "map": {"title": {"from": "name"}, "received": {"from": "received"}}},
        "formData": {"from": "case.form"},
    },
    "response": {**ENVELOPE_OK, "fields": {"sector_ref": {"from": "data.ticketId"}}},
}


STATUS = {
    "code_tables": {"status": {"PENDING": "received", "REVIEWING": "in_process", "APPROVED": "approved"}},
    "http": {
        "method": "GET",
        "path": "/api/v2/applications/{ticketId}",
        "path_params": {"ticketId": {"from": "sector_ref"}},
        "query": {"lang": {"value": "zh"}},
    },
    "response": {
        **ENVELOPE_OK,
        "fields": {
            "status": {"from": "data.status", "code_table": "status"},
            "opinion": {"from": "data.remark", "optional": True},
            "decided_at": {"from": "data.decidedAt", "convert": "epoch_ms_to_iso_utc", "optional": True},
        },
    },
}


DEPOSITS = {
    "http": {
        "method": "GET",
        "path": "/api/v2/accounts/{idCardNo}/deposits",
        "path_params": {"idCardNo": {"from": "query.id_number"}},
        "paging": {"page_param": "page", "size_param": "pageSize", "size": 20, "items": "data.items",
                   "total": "data.total", "max_pages": 20},
    },
    "response": {**ENVELOPE_OK, "fields": {"total": {"from": "data.total"}}},
}  # fmt: skip


def mappings(**extra: Mapping[str, Any]) -> dict[str, Any]:
    sources = {Operation.SUBMIT_CASE: SUBMIT, Operation.QUERY_STATUS: STATUS, "housing_fund_deposits": DEPOSITS}
    sources.update(extra)
    return {str(name): compile_mapping(doc, source_name=f"{name}.mapping.yaml") for name, doc in sources.items()}


def make_adapter(url: str, timeout_s: float = 2.0, **kwargs: Any) -> RestAdapter:
    kwargs.setdefault("idempotency_header", "X-Request-Id")
    compiled = kwargs.pop("mappings", None) or mappings()
    return RestAdapter("housing_fund", "1", url, compiled, timeout_s, **kwargs)


def message(**case_changes: Any) -> dict[str, Any]:
    case = {
        "case_no": "150200-20261124-0001",
        "green_channel": True,
        "applicant": {"name": "王五", "id_number": "150202199001011234"},
        "materials": [{"name": "购房合同", "received": True}],
        "form": {"amount": 50000, "house_price": 800000},
    } | case_changes
    return {"idempotency_key": "150200-20261124-0001:t2:submit_case", "sector_ref": "GJJ0000000001", "case": case}


TICKET = Reply(201, {"code": 0, "msg": "ok", "data": {"ticketId": "GJJ0000000001"}})
