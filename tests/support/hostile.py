"""A sector that answers with hostile bodies, and the checks that such an answer changed nothing."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROBLEM = "application/problem+json"


PERSON = "150203198503120039"


def assert_problem(answer: Any, status: int, slug: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM), answer.headers["content-type"]
    body: dict[str, Any] = answer.json()
    if slug is not None:
        assert body["type"] == f"urn:yiwang:problem:{slug}", body
    return body


class HostileSector:
    """A sector system that answers every request with what the test says (status, type, body)."""

    def __init__(self) -> None:
        self.answer: tuple[int, str, bytes] = (200, "text/xml", b"")
        self.requests = 0
        sector = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sector.requests += 1
                status, content_type, body = sector.answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _reply

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


CASE_NS = "http://hrss.sim.yiwang.local/case/v1"


def envelope(body: str, doctype: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<soap:Envelope xmlns:soap="{SOAP_ENV}">'
            f"<soap:Body>{body}</soap:Body></soap:Envelope>").encode()


def submit_answer(fhxx: str = "ok") -> str:
    return f'<c:SubmitCaseResponse xmlns:c="{CASE_NS}"><fhdm>0000</fhdm><fhxx>{fhxx}</fhxx>' \
           "<ywlsh>SB0000000001</ywlsh></c:SubmitCaseResponse>"
