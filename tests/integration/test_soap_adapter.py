"""The SOAP adapter against a tiny real HTTP server: failure classes, retries, and the shipped bundle.

No mocks: a stdlib HTTP server on 127.0.0.1 answers with canned envelopes, so zeep, requests
and lxml run exactly as they do against a sector.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from lxml import etree

from adapters.bundle import BundleError
from adapters.contract import DeliveryError, FailureClass, Operation
from adapters.kinds.soap.adapter import SoapAdapter
from adapters.registry import Registry, default_bundles_dir
from adapters.resilience import RetryPolicy, with_retries
from mappings import compile_mapping
from tests.support.gateways import SECTOR_SECRETS
from tests.support.pki import shipped_credentials

BUNDLE = default_bundles_dir() / "social_security"
WSDL = BUNDLE / "service.wsdl"
NS = "http://hrss.sim.yiwang.local/case/v1"
FAST = RetryPolicy(attempts=3, initial_ms=1, max_ms=5)


def envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:c="{NS}"><soap:Body>{body}</soap:Body></soap:Envelope>'
    ).encode()


def fault(code: str, text: str) -> bytes:
    return envelope(f"<soap:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring></soap:Fault>")


def submit_answer(code: str, text: str, ref: str = "") -> bytes:
    ywlsh = f"<c:ywlsh>{ref}</c:ywlsh>" if ref else ""
    fields = f"<c:fhdm>{code}</c:fhdm><c:fhxx>{text}</c:fhxx>{ywlsh}"
    return envelope(f"<c:SubmitCaseResponse>{fields}</c:SubmitCaseResponse>")


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode() for i in range(1, 10)
    )
    + b"]><soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Body>&lol9;</soap:Body>"
    b"</soap:Envelope>"
)


@dataclass(frozen=True)
class Reply:
    body: bytes
    status: int = 200
    content_type: str = "text/xml; charset=utf-8"
    delay_s: float = 0.0


OK = Reply(submit_answer("0000", "成功", "SB-2024-0001"))
OUTAGE = Reply(b"<html><body><h1>503 Service Unavailable</h1></body></html>", 503, "text/html")
BAD_GATEWAY = Reply(b"<!DOCTYPE html><html><body>Bad Gateway</body></html>", 502, "text/html")
SMALL_DTD = Reply(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]>' + submit_answer("0000", "ok", "SB")[38:])


class FakeSector:
    """Answers POSTs with a script of replies (the last one repeats) and records every request."""

    def __init__(self) -> None:
        self.url = ""  # set once the server listens
        self.replies: list[Reply] = [OK]
        self.requests: list[bytes] = []
        self.lock = threading.Lock()

    def script(self, *replies: Reply) -> None:
        with self.lock:
            self.replies, self.requests = list(replies), []

    def take(self, request: bytes) -> Reply:
        with self.lock:
            self.requests.append(request)
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def handler_for(sector: FakeSector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            reply = sector.take(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            time.sleep(reply.delay_s)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except OSError:
                pass  # the client gave up waiting (timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def sector() -> Iterator[FakeSector]:
    fake = FakeSector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}/shebao/case"
    yield fake
    server.shutdown()
    server.server_close()


def make_adapter(endpoint: str, timeout_s: float = 2.0) -> SoapAdapter:
    mappings = {
        Operation.SUBMIT_CASE: compile_mapping(BUNDLE / "submit_case.mapping.yaml"),
        Operation.QUERY_STATUS: compile_mapping(BUNDLE / "query_status.mapping.yaml"),
    }
    return SoapAdapter("social_security", "1", WSDL, endpoint, mappings, timeout_s)


@pytest.fixture(scope="module")
def adapter(sector: FakeSector) -> SoapAdapter:
    return make_adapter(sector.url)


@pytest.fixture(autouse=True)
def fresh_script(sector: FakeSector) -> None:
    sector.script(OK)


def message(**changes: Any) -> dict[str, Any]:
    case = {
        "case_no": "150200-20240102-0001",
        "matter_code": "11150200MB1234567X4000111222000",
        "accepted_at": "2024-01-02T07:30:00Z",
        "green_channel": False,
        "applicant": {"name": "张三", "id_type": "111", "id_number": "150202199001011234", "phone": "13800000000"},
        "materials": [{"name": "身份证", "received": True}, {"name": "劳动合同", "received": False}],
        "form": {"单位": "包头钢铁", "月工资": 5000},
    }
    case.update(changes)
    return {"idempotency_key": "150200-20240102-0001:t1:submit_case", "sector_ref": None, "case": case}


def failure(adapter: Any, msg: dict[str, Any] | None = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        adapter.call(Operation.SUBMIT_CASE, msg or message())
    return caught.value


# ------------------------------------------------------------------ the happy path


def test_submit_case_round_trip(adapter: SoapAdapter, sector: FakeSector) -> None:
    assert adapter.call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "SB-2024-0001"}
    sent = etree.fromstring(sector.requests[0])
    request = sent.find(f".//{{{NS}}}SubmitCaseRequest")
    assert request is not None
    assert request.findtext(f"{{{NS}}}qqlsh") == "150200-20240102-0001:t1:submit_case"
    assert request.findtext(f"{{{NS}}}slsj") == "20240102153000"
    assert [cl.findtext(f"{{{NS}}}sfsj") for cl in request.iter(f"{{{NS}}}cl")] == ["Y", "N"]


def test_query_status_round_trip(adapter: SoapAdapter, sector: FakeSector) -> None:
    body = (
        "<c:QueryCaseStatusResponse><c:fhdm>0000</c:fhdm><c:fhxx>ok</c:fhxx><c:ywlsh>SB-1</c:ywlsh>"
        "<c:blzt>03</c:blzt><c:spyj>同意</c:spyj><c:bjsj>20240105093000</c:bjsj></c:QueryCaseStatusResponse>"
    )
    sector.script(Reply(envelope(body)))
    result = adapter.call(Operation.QUERY_STATUS, {"idempotency_key": "k", "sector_ref": "SB-1", "case": {}})
    assert result == {"sector_ref": "SB-1", "status": "approved", "opinion": "同意", "decided_at": "2024-01-05T01:30:00Z"}


def test_render_returns_the_request_without_sending(adapter: SoapAdapter, sector: FakeSector) -> None:
    request = adapter.render(Operation.SUBMIT_CASE, message())
    assert request["sqrxm"] == "张三" and request["bdsj"] == '{"单位":"包头钢铁","月工资":5000}'
    assert sector.requests == []


# ------------------------------------------------------------------ failure classes


@pytest.mark.parametrize(
    ("reply", "failure_class", "retryable"),
    [
        (Reply(submit_answer("1001", "事项编码不存在")), FailureClass.SECTOR_FAULT, False),
        (Reply(fault("soap:Server", "数据库繁忙"), 500), FailureClass.SECTOR_FAULT, True),
        (Reply(fault("soap:Client", "请求格式错误"), 500), FailureClass.SECTOR_FAULT, False),
        (OUTAGE, FailureClass.SECTOR_FAULT, True),
        (BAD_GATEWAY, FailureClass.SECTOR_FAULT, True),
        (Reply(b"slow down", 429, "text/plain"), FailureClass.SECTOR_FAULT, True),
        (Reply(b"", 401), FailureClass.AUTH, False),
        (Reply(b"forbidden", 403, "text/plain"), FailureClass.AUTH, False),
        (Reply(b"not here", 404, "text/plain"), FailureClass.SECTOR_FAULT, False),
        (Reply(b"<soap:Envelope><broken"), FailureClass.VALIDATION, False),
        (Reply(BILLION_LAUGHS), FailureClass.VALIDATION, False),
        (SMALL_DTD, FailureClass.VALIDATION, False),
        (Reply(envelope("<c:Surprise/>")), FailureClass.VALIDATION, False),
        (Reply(envelope("")), FailureClass.VALIDATION, False),
    ],
    ids=[
        "business-error",
        "server-fault",
        "client-fault",
        "http-503-html",
        "http-502-html-doctype",
        "http-429",
        "http-401",
        "http-403",
        "http-404",
        "malformed-xml",
        "billion-laughs",
        "small-dtd",
        "unexpected-element",
        "empty-body",
    ],
)
def test_failure_classes(
    adapter: SoapAdapter, sector: FakeSector, reply: Reply, failure_class: FailureClass, retryable: bool
) -> None:
    sector.script(reply)
    error = failure(adapter)
    assert (error.failure, error.retryable) == (failure_class, retryable), str(error)


def test_business_error_message_has_code_and_text(adapter: SoapAdapter, sector: FakeSector) -> None:
    sector.script(Reply(submit_answer("1001", "事项编码不存在")))
    assert "1001" in failure(adapter).message and "事项编码不存在" in failure(adapter).message


def test_slow_answer_is_a_timeout(sector: FakeSector) -> None:
    sector.script(Reply(OK.body, delay_s=0.5))
    error = failure(make_adapter(sector.url, timeout_s=0.05))
    assert (error.failure, error.retryable) == (FailureClass.TIMEOUT, True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_closed_port_is_a_transport_failure() -> None:
    error = failure(make_adapter(f"http://127.0.0.1:{free_port()}/shebao/case"))
    assert (error.failure, error.retryable) == (FailureClass.TRANSPORT, True)


def test_missing_field_is_a_mapping_failure_and_sends_nothing(adapter: SoapAdapter, sector: FakeSector) -> None:
    error = failure(adapter, message(applicant={"name": "张三"}))
    assert (error.failure, error.retryable) == (FailureClass.MAPPING, False)
    assert error.message == "submit_case.mapping.yaml: request.zjlx: case.applicant.id_type is missing"
    assert sector.requests == []


def test_request_that_does_not_fit_the_wsdl_is_a_mapping_failure(sector: FakeSector) -> None:
    bad = compile_mapping({"operation": "SubmitCase", "request": {"bogus": {"value": "x"}}}, source_name="bad.yaml")
    adapter = SoapAdapter("s", "1", WSDL, sector.url, {Operation.SUBMIT_CASE: bad}, 1.0)
    error = failure(adapter)
    assert (error.failure, error.retryable) == (FailureClass.MAPPING, False)
    assert sector.requests == []


def test_operation_without_mapping_is_a_mapping_failure(sector: FakeSector) -> None:
    submit = compile_mapping(BUNDLE / "submit_case.mapping.yaml")
    adapter = SoapAdapter("s", "1", WSDL, sector.url, {Operation.SUBMIT_CASE: submit}, 1.0)
    with pytest.raises(DeliveryError) as caught:
        adapter.call(Operation.QUERY_STATUS, {"sector_ref": "x"})
    assert caught.value.failure is FailureClass.MAPPING


def test_mapping_for_an_operation_the_wsdl_lacks_is_refused() -> None:
    other = compile_mapping({"operation": "CancelCase", "request": {"a": {"value": 1}}})
    with pytest.raises(ValueError, match="service.wsdl: binding .* has no operation 'CancelCase'"):
        SoapAdapter("s", "1", WSDL, "http://127.0.0.1:9/", {Operation.SUBMIT_CASE: other}, 1.0)


# ------------------------------------------------------------------ retries


def test_transient_failure_is_tried_exactly_attempts_times(adapter: SoapAdapter, sector: FakeSector) -> None:
    sector.script(OUTAGE)
    error = failure(with_retries(adapter, FAST))
    assert len(sector.requests) == 3
    assert (error.failure, error.attempts) == (FailureClass.SECTOR_FAULT, 3)  # type: ignore[attr-defined]


def test_non_retryable_failure_is_tried_once(adapter: SoapAdapter, sector: FakeSector) -> None:
    sector.script(Reply(fault("soap:Client", "bad"), 500))
    error = failure(with_retries(adapter, FAST))
    assert len(sector.requests) == 1
    assert error.attempts == 1  # type: ignore[attr-defined]


def test_outage_that_recovers_on_the_second_request_succeeds(adapter: SoapAdapter, sector: FakeSector) -> None:
    sector.script(OUTAGE, OK)
    assert with_retries(adapter, FAST).call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "SB-2024-0001"}
    assert len(sector.requests) == 2


def test_retry_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0, initial_ms=1, max_ms=5)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=3, initial_ms=10, max_ms=5)


# ------------------------------------------------------------------ the shipped bundle


@pytest.mark.usefixtures("shipped_secrets")
def test_shipped_bundle_loads_and_renders_a_request_the_wsdl_accepts(sector: FakeSector) -> None:
    registry = Registry.load(default_bundles_dir(), endpoints={"social_security": sector.url}, retry_override=FAST,
                             credentials=shipped_credentials())
    assert "social_security" in registry.sectors
    registered = registry.get("social_security")
    assert (registered.version, registered.poll_interval_ms) == ("2026.12.0", 1000)
    request = registered.adapter.render(Operation.SUBMIT_CASE, message())
    soap: SoapAdapter = registered.adapter.inner  # type: ignore[attr-defined]
    envelope_xml = soap.client.create_message(soap.service, "SubmitCase", **request)
    # Beyond zeep's own check: the body validates against the WSDL's schema.
    schema = etree.XMLSchema(wsdl_schema())
    body = envelope_xml.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
    schema.assertValid(etree.ElementTree(body))
    assert registered.adapter.call(Operation.SUBMIT_CASE, message()) == {"sector_ref": "SB-2024-0001"}
    assert soap.endpoint == sector.url


def wsdl_schema() -> etree._Element:
    """The WSDL's embedded XSD as a standalone document (its `tns:` prefix is declared on the WSDL root)."""
    inline = etree.parse(str(WSDL)).find(".//{http://www.w3.org/2001/XMLSchema}schema")
    schema = etree.Element(inline.tag, attrib=dict(inline.attrib), nsmap=inline.nsmap)
    schema.extend(deepcopy(child) for child in inline)
    return schema


def test_request_without_optional_fields_still_fits_the_wsdl() -> None:
    soap = make_adapter("http://127.0.0.1:9/")
    request = soap.render(Operation.SUBMIT_CASE, message(applicant={"name": "李四", "id_type": "111", "id_number": "1"}))
    assert "lxdh" not in request
    soap.client.create_message(soap.service, "SubmitCase", **request)


@pytest.fixture
def shipped_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading every shipped bundle resolves every secret they name, as a deployment provides them."""
    for name, value in SECTOR_SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("shipped_secrets")
def test_unknown_sector_lookup() -> None:
    registry = Registry.load(default_bundles_dir(), credentials=shipped_credentials())
    with pytest.raises(KeyError, match="no adapter registered for sector 'tax'"):
        registry.get("tax")


# ------------------------------------------------------------------ bundle validation


@pytest.mark.usefixtures("shipped_secrets")
def test_endpoint_for_an_unknown_sector_is_refused() -> None:
    with pytest.raises(BundleError, match="bundle.yaml: endpoints: no bundle for sector 'shebao'"):
        Registry.load(default_bundles_dir(), endpoints={"shebao": "http://127.0.0.1:9/"},
                      credentials=shipped_credentials())
