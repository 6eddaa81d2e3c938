"""人社/社保 (social-security) sector simulator: a real SOAP 1.1 service on 127.0.0.1.

Why it exists: the gateway's SOAP adapter, the demo and the tests need a sector system that
behaves like the real one (document/literal SOAP 1.1, business codes inside 200 envelopes,
Faults with HTTP 500, idempotent submission keyed by the gateway's ``qqlsh``, a decision that
arrives later) and that can be told to misbehave on demand (dead load balancer, Server fault,
slow answers, truncated XML, hostile entity-expansion documents).

It speaks over real HTTP (``http.server``) so the gateway exercises its actual transport code,
and it imports nothing from the rest of the project so it can never share a bug with it.
The contract is ``social_security.wsdl`` next to this file; this module never changes it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from lxml import etree

__all__ = [
    "ENDPOINT_PATH",
    "FAULT_MODES",
    "MAX_BODY_BYTES",
    "TNS",
    "Decider",
    "SocialSecuritySimulator",
    "default_decide",
    "serve",
]

log = logging.getLogger(__name__)

TNS: Final = "http://hrss.sim.yiwang.local/case/v1"
SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_SOAP_NS: Final = "http://schemas.xmlsoap.org/wsdl/soap/"
ENDPOINT_PATH: Final = "/shebao/case"
WSDL_FILE: Final = Path(__file__).with_name("social_security.wsdl")
BEIJING: Final = ZoneInfo("Asia/Shanghai")

MAX_BODY_BYTES: Final = 1024 * 1024
# Bodies up to this size are read and thrown away before an early answer (413, injected fault),
# so the client sees our status code instead of a connection reset; bigger ones are just cut off.
_DRAIN_LIMIT: Final = 16 * MAX_BODY_BYTES
_XML_CONTENT_TYPE: Final = "text/xml; charset=utf-8"
_TEXT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
_DOCTYPE_RE: Final = re.compile(rb"<!DOCTYPE", re.IGNORECASE)

FAULT_MODES: Final = frozenset({"fail", "fault", "slow", "malformed", "hostile"})
REQUIRED_SUBMIT_FIELDS: Final = ("qqlsh", "sxbm", "bjbh", "sqrxm", "zjlx", "zjhm", "slsj")

# Return codes (fhdm) and statuses (blzt) as the sector publishes them.
FHDM_OK: Final = "0000"
FHDM_MISSING_FIELD: Final = "1001"
FHDM_UNKNOWN_CASE: Final = "2001"
BLZT_PROCESSING: Final = "02"
BLZT_APPROVED: Final = "03"
BLZT_DENIED: Final = "04"

Decider = Callable[[dict[str, Any]], tuple[bool, str]]
"""Decides a case from its submitted fields: (approved, 审批意见)."""


class Reply(NamedTuple):
    """One HTTP answer, built by the simulator and written by the request handler."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _FaultPlan:
    """The armed fault switch; ``remaining`` None means until changed."""

    mode: str
    remaining: int | None
    slow_ms: int


@dataclass
class _Case:
    """A case the sector has applied; ``decision`` is fixed the first time it is due."""

    ywlsh: str
    fields: dict[str, Any]
    created_at: float  # time.monotonic(), drives the decision delay
    decided_at: datetime  # Beijing wall time the decision is due, reported as bjsj
    decision: tuple[bool, str] | None = None


class _ClientFault(Exception):
    """The request cannot be processed as sent: answered with a SOAP Fault, never applied."""

    def __init__(self, message: str, code: str = "soap:Client") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- decisions


def default_decide(fields: dict[str, Any]) -> tuple[bool, str]:
    """The demo's rule: fewer than 12 insured months (bdsj JSON) is denied, anything else approved."""
    months = _insured_months(fields.get("bdsj"))
    if months is not None and months < 12:
        return False, "累计缴费不满12个月，不符合申领条件"
    return True, "材料齐全，符合条件，准予办理"


def _insured_months(bdsj: object) -> int | None:
    """Read ``insured_months`` from the form JSON; anything unreadable counts as absent."""
    if not isinstance(bdsj, str) or not bdsj.strip():
        return None
    try:
        form = json.loads(bdsj)
    except ValueError:
        return None
    months = form.get("insured_months") if isinstance(form, dict) else None
    return months if isinstance(months, int) and not isinstance(months, bool) else None


# --------------------------------------------------------------------------- XML in


def _hardened_parser() -> etree.XMLParser:
    """A fresh parser per document (lxml parsers are not to be shared across threads) that
    never resolves entities, never loads a DTD and never touches the network."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _parse_operation(body: bytes) -> etree._Element:
    """Return the Body's first child element, or raise _ClientFault saying what is wrong."""
    if _DOCTYPE_RE.search(body):
        raise _ClientFault("拒绝处理：请求报文含DOCTYPE声明（不接受DTD与实体定义）")
    try:
        root = etree.fromstring(body, _hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise _ClientFault(f"请求报文不是格式良好的XML：{exc}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # e.g. a UTF-16 DOCTYPE the byte scan missed
        raise _ClientFault("拒绝处理：请求报文含DOCTYPE声明（不接受DTD与实体定义）")
    return _first_body_child(root)


def _first_body_child(root: etree._Element) -> etree._Element:
    """Check the SOAP 1.1 envelope shape and pick the operation element out of the Body."""
    qname = etree.QName(root)
    if qname.localname != "Envelope":
        raise _ClientFault("请求报文不是SOAP信封")
    if qname.namespace != SOAP_ENV_NS:
        raise _ClientFault(f"不支持的SOAP信封版本：{qname.namespace}", code="soap:VersionMismatch")
    soap_body = root.find(f"{{{SOAP_ENV_NS}}}Body")
    if soap_body is None:
        raise _ClientFault("SOAP信封缺少Body")
    operation = next((child for child in soap_body if isinstance(child.tag, str)), None)
    if operation is None:
        raise _ClientFault("SOAP Body为空，无法识别操作")
    return operation


def _read_fields(operation: etree._Element) -> dict[str, Any]:
    """Flatten the request's qualified children into a dict (``cllb`` becomes a list of dicts).

    Children outside the target namespace are ignored on purpose: the WSDL says
    elementFormDefault="qualified", so an unqualified field is a caller bug that should surface
    as a missing-field error rather than be silently accepted.
    """
    fields: dict[str, Any] = {}
    for child in _children(operation):
        name = etree.QName(child).localname
        if name == "cllb":
            fields["cllb"] = [_read_material(cl) for cl in _children(child)]
        else:
            fields[name] = (child.text or "").strip()
    return fields


def _read_material(cl: etree._Element) -> dict[str, str]:
    """One 材料 entry ({clmc, sfsj}) as a plain dict."""
    return {etree.QName(item).localname: (item.text or "").strip() for item in _children(cl)}


def _children(element: etree._Element) -> list[etree._Element]:
    """Element children in the target namespace (skips comments, PIs and foreign elements)."""
    return [child for child in element if isinstance(child.tag, str) and etree.QName(child).namespace == TNS]


# --------------------------------------------------------------------------- XML out


def _new_envelope() -> tuple[etree._Element, etree._Element]:
    """An empty SOAP 1.1 envelope and its Body, with the ``soap`` prefix the faultcodes use."""
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"soap": SOAP_ENV_NS})
    return envelope, etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body")


def _serialize(envelope: etree._Element) -> bytes:
    """UTF-8 with a declaration, matching the Content-Type we send."""
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _response(name: str, items: list[tuple[str, str | None]]) -> Reply:
    """A document/literal response element in the WSDL's namespace; None values are omitted."""
    envelope, soap_body = _new_envelope()
    payload = etree.SubElement(soap_body, f"{{{TNS}}}{name}", nsmap={"tns": TNS})
    for field_name, value in items:
        if value is not None:
            etree.SubElement(payload, f"{{{TNS}}}{field_name}").text = value
    return Reply(HTTPStatus.OK, _XML_CONTENT_TYPE, _serialize(envelope))


def _query_reply(
    fhdm: str,
    fhxx: str,
    ywlsh: str | None = None,
    blzt: str | None = None,
    spyj: str | None = None,
    bjsj: str | None = None,
) -> Reply:
    """QueryCaseStatusResponse with its fields in the WSDL's sequence order."""
    items = [("fhdm", fhdm), ("fhxx", fhxx), ("ywlsh", ywlsh), ("blzt", blzt), ("spyj", spyj), ("bjsj", bjsj)]
    return _response("QueryCaseStatusResponse", items)


def _fault(code: str, message: str) -> Reply:
    """A SOAP 1.1 Fault; SOAP 1.1 (section 6.2) requires HTTP 500 for it."""
    envelope, soap_body = _new_envelope()
    fault = etree.SubElement(soap_body, f"{{{SOAP_ENV_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    return Reply(HTTPStatus.INTERNAL_SERVER_ERROR, _XML_CONTENT_TYPE, _serialize(envelope))


def _text_reply(status: HTTPStatus, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """Plain-text answers for HTTP-level problems that happen before SOAP is involved."""
    return Reply(status, _TEXT_CONTENT_TYPE, message.encode("utf-8"), headers)


def _beijing_stamp(moment: datetime) -> str:
    """yyyyMMddHHmmss in Beijing time, the sector's timestamp format."""
    return moment.astimezone(BEIJING).strftime("%Y%m%d%H%M%S")


def _render_wsdl(location: str) -> bytes:
    """The published WSDL with soap:address pointing at where this instance really listens."""
    tree = etree.parse(str(WSDL_FILE), _hardened_parser())
    for address in tree.iter(f"{{{WSDL_SOAP_NS}}}address"):
        address.set("location", location)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


# --------------------------------------------------------------------------- injected faults

_DEAD_BALANCER_HTML: Final = (
    b"<html><head><title>503 Service Unavailable</title></head><body>"
    b"<h1>503 Service Unavailable</h1><p>No server is available to handle this request.</p>"
    b"</body></html>"
)

_TRUNCATED_XML: Final = (
    f'<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="{SOAP_ENV_NS}">'
    f'<soap:Body><tns:SubmitCaseResponse xmlns:tns="{TNS}"><tns:fhdm>0000</tns:fhdm>'
    "<tns:fhxx>受理成"
).encode("utf-8")


def _billion_laughs() -> bytes:
    """A SOAP envelope whose DOCTYPE declares nine nested entity levels (10**9 "lol"s if expanded)."""
    levels = ['<!ENTITY lol0 "lol">']
    levels += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    subset = "\n  ".join(levels)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE soap:Envelope [\n  {subset}\n]>\n'
        f'<soap:Envelope xmlns:soap="{SOAP_ENV_NS}"><soap:Body>'
        f'<tns:SubmitCaseResponse xmlns:tns="{TNS}"><tns:fhdm>0000</tns:fhdm>'
        "<tns:fhxx>&lol9;</tns:fhxx><tns:ywlsh>&lol9;</tns:ywlsh>"
        "</tns:SubmitCaseResponse></soap:Body></soap:Envelope>"
    ).encode("utf-8")


def _injected_reply(mode: str) -> Reply:
    """The canned answer for every fault mode except "slow" (which answers normally, late)."""
    if mode == "fail":
        return Reply(HTTPStatus.SERVICE_UNAVAILABLE, "text/html; charset=utf-8", _DEAD_BALANCER_HTML)
    if mode == "fault":
        return _fault("soap:Server", "社保业务系统内部错误，请稍后重试（模拟故障）")
    if mode == "malformed":
        return Reply(HTTPStatus.OK, _XML_CONTENT_TYPE, _TRUNCATED_XML)
    if mode == "hostile":
        return Reply(HTTPStatus.OK, _XML_CONTENT_TYPE, _billion_laughs())
    raise ValueError(f"no canned reply for fault mode {mode!r}")


# --------------------------------------------------------------------------- the simulator


class SocialSecuritySimulator:
    """The 社保 case service: SubmitCase / QueryCaseStatus over SOAP 1.1 on a local port.

    Counters (see ``counters``): ``raw_requests`` counts every HTTP POST before any parsing,
    ``cases_created`` counts applied effects; the others explain the difference.
    Faulted requests (``set_fault``) count as raw requests but never create a case, except
    "slow", which answers normally after the delay: the case *is* applied even if the client
    has already timed out, exactly the situation idempotent retries must survive.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        decision_delay_ms: int = 200,
        decide: Decider | None = None,
    ) -> None:
        if decision_delay_ms < 0:
            raise ValueError("decision_delay_ms must be >= 0")
        self._host = host
        self._port = port
        self._decision_delay = decision_delay_ms / 1000.0
        self._decide: Decider = decide or default_decide
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._cases: dict[str, _Case] = {}
        self._ywlsh_by_qqlsh: dict[str, str] = {}
        self._next_reference = 1
        self._fault_plan: _FaultPlan | None = None
        self._counters = dict.fromkeys(
            (
                "raw_requests",
                "submits_received",
                "queries_received",
                "cases_created",
                "duplicate_submits",
                "business_errors",
                "client_faults",
                "faults_injected",
            ),
            0,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wsdl = b""

    # ----- lifecycle

    def start(self) -> SocialSecuritySimulator:
        """Bind (port 0 = ephemeral) and serve in a daemon thread; returns self for chaining."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((self._host, self._port), _Handler)
        server.simulator = self
        self._stopping.clear()
        self._server = server
        self._wsdl = _render_wsdl(self.url)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits up to one poll interval
            name=f"shebao-sim-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.debug("social-security simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, wake requests sleeping in "slow" mode, release the port. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SocialSecuritySimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----- addresses

    @property
    def port(self) -> int:
        """The port actually bound (meaningful only once started)."""
        return int(self._bound().server_address[1])

    @property
    def url(self) -> str:
        """The SOAP endpoint, e.g. http://127.0.0.1:54321/shebao/case."""
        host = self._bound().server_address[0]
        return f"http://{host}:{self.port}{ENDPOINT_PATH}"

    @property
    def wsdl_url(self) -> str:
        """Where the WSDL (with this instance's address in it) is served."""
        return f"{self.url}?wsdl"

    @property
    def decision_delay_ms(self) -> int:
        """How long a case stays 办理中 (02) before its decision is visible."""
        return round(self._decision_delay * 1000)

    def _bound(self) -> _Server:
        if self._server is None:
            raise RuntimeError("simulator is not running; call start() first")
        return self._server

    # ----- observation and control

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the counters (a copy, safe to keep)."""
        with self._lock:
            return dict(self._counters)

    @property
    def fault_mode(self) -> str | None:
        """The fault currently armed, or None when behaving normally."""
        with self._lock:
            return self._fault_plan.mode if self._fault_plan else None

    def set_fault(self, mode: str | None, *, count: int | None = None, slow_ms: int = 0) -> None:
        """Arm a fault for the next ``count`` POSTs (None = until changed); ``mode=None`` disarms.

        Modes: "fail" (HTTP 503 HTML, no SOAP), "fault" (SOAP Server fault, HTTP 500),
        "slow" (sleep ``slow_ms`` then answer normally), "malformed" (200 with truncated XML),
        "hostile" (200 with a billion-laughs DOCTYPE inside a SOAP envelope).
        """
        if mode is not None and mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {sorted(FAULT_MODES)} or None")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 (or None for 'until changed')")
        if slow_ms < 0:
            raise ValueError("slow_ms must be >= 0")
        with self._lock:
            self._fault_plan = None if mode is None else _FaultPlan(mode, count, slow_ms)

    def _take_fault(self) -> _FaultPlan | None:
        """Consume one use of the armed fault, disarming it when its count runs out."""
        with self._lock:
            plan = self._fault_plan
            if plan is None:
                return None
            if plan.remaining is not None:
                left = plan.remaining - 1
                self._fault_plan = _FaultPlan(plan.mode, left, plan.slow_ms) if left > 0 else None
            self._counters["faults_injected"] += 1
            return plan

    def _bump(self, counter: str) -> None:
        with self._lock:
            self._counters[counter] += 1

    def _sleep(self, milliseconds: int) -> None:
        """Sleep for "slow" mode, cut short when the simulator is stopped."""
        self._stopping.wait(milliseconds / 1000.0)

    # ----- HTTP entry points (called by the handler thread)

    def _handle_get(self, path: str) -> Reply:
        """?wsdl serves the contract; the endpoint itself only takes POST."""
        parts = urlsplit(path)
        if parts.path != ENDPOINT_PATH:
            return _text_reply(HTTPStatus.NOT_FOUND, "not found")
        if parts.query.lower() == "wsdl":
            return Reply(HTTPStatus.OK, _XML_CONTENT_TYPE, self._wsdl)
        hint = "SOAP endpoint: POST an envelope, or GET ?wsdl"
        return _text_reply(HTTPStatus.METHOD_NOT_ALLOWED, hint, (("Allow", "POST"),))

    def _handle_soap(self, body: bytes) -> Reply:
        """Parse hardened, dispatch on the Body's first element (not on SOAPAction)."""
        try:
            operation = _parse_operation(body)
            handler = self._operation_handler(operation)
        except _ClientFault as exc:
            self._bump("client_faults")
            return _fault(exc.code, exc.message)
        try:
            return handler(operation)
        except Exception:  # a bug here or in a custom decide(): the sector's own failure
            log.exception("social-security simulator failed to process %s", operation.tag)
            return _fault("soap:Server", "社保业务系统处理异常")

    def _operation_handler(self, operation: etree._Element) -> Callable[[etree._Element], Reply]:
        handlers: dict[str, Callable[[etree._Element], Reply]] = {
            f"{{{TNS}}}SubmitCaseRequest": self._submit_case,
            f"{{{TNS}}}QueryCaseStatusRequest": self._query_case_status,
        }
        handler = handlers.get(operation.tag)
        if handler is None:
            raise _ClientFault(f"未知操作：{operation.tag}")
        return handler

    # ----- operations

    def _submit_case(self, operation: etree._Element) -> Reply:
        """Apply a case once per qqlsh; a rejected request leaves no trace to replay against."""
        self._bump("submits_received")
        fields = _read_fields(operation)
        missing = [name for name in REQUIRED_SUBMIT_FIELDS if not fields.get(name)]
        if missing:
            self._bump("business_errors")
            return self._submit_reply(FHDM_MISSING_FIELD, f"缺少必填项：{'、'.join(missing)}", None)
        ywlsh, created = self._apply(fields)
        message = "受理成功" if created else "重复提交，返回原业务流水号"
        return self._submit_reply(FHDM_OK, message, ywlsh)

    def _apply(self, fields: dict[str, Any]) -> tuple[str, bool]:
        """Check-and-create under one lock so concurrent duplicates still make one case."""
        qqlsh = fields["qqlsh"]
        with self._lock:
            existing = self._ywlsh_by_qqlsh.get(qqlsh)
            if existing is not None:
                self._counters["duplicate_submits"] += 1
                return existing, False
            ywlsh = f"SB{self._next_reference:012d}"
            self._next_reference += 1
            due = datetime.now(BEIJING) + timedelta(seconds=self._decision_delay)
            self._cases[ywlsh] = _Case(ywlsh, copy.deepcopy(fields), time.monotonic(), due)
            self._ywlsh_by_qqlsh[qqlsh] = ywlsh
            self._counters["cases_created"] += 1
            return ywlsh, True

    @staticmethod
    def _submit_reply(fhdm: str, fhxx: str, ywlsh: str | None) -> Reply:
        return _response("SubmitCaseResponse", [("fhdm", fhdm), ("fhxx", fhxx), ("ywlsh", ywlsh)])

    def _query_case_status(self, operation: etree._Element) -> Reply:
        """02 while the decision delay runs, then 03/04 with 审批意见 and 办结时间."""
        self._bump("queries_received")
        ywlsh = _read_fields(operation).get("ywlsh", "")
        if not ywlsh:
            self._bump("business_errors")
            return _query_reply(FHDM_MISSING_FIELD, "缺少必填项：ywlsh")
        with self._lock:
            case = self._cases.get(ywlsh)
        if case is None:
            self._bump("business_errors")
            return _query_reply(FHDM_UNKNOWN_CASE, f"业务流水号不存在：{ywlsh}")
        if time.monotonic() - case.created_at < self._decision_delay:
            return _query_reply(FHDM_OK, "查询成功", ywlsh, BLZT_PROCESSING)
        approved, opinion = self._decision_for(case)
        blzt = BLZT_APPROVED if approved else BLZT_DENIED
        return _query_reply(FHDM_OK, "查询成功", ywlsh, blzt, opinion, _beijing_stamp(case.decided_at))

    def _decision_for(self, case: _Case) -> tuple[bool, str]:
        """Decide once (outside the lock: decide() is caller code) and keep the first answer."""
        with self._lock:
            if case.decision is not None:
                return case.decision
        approved, opinion = self._decide(copy.deepcopy(case.fields))
        with self._lock:
            if case.decision is None:
                case.decision = (bool(approved), str(opinion))
            return case.decision


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    """Daemon handler threads, and server_close() must not wait for them (a "slow" request
    or an idle client must never hang stop())."""

    daemon_threads = True
    block_on_close = False
    simulator: SocialSecuritySimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (e.g. after their own timeout) are normal here, not tracebacks."""
        log.debug("social-security simulator: connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """HTTP I/O only: every decision about what to answer is the simulator's.

    HTTP/1.0 closes the connection after each answer, so a stopped simulator really is gone
    (no pooled keep-alive connection keeps talking to a handler thread that outlived stop()).
    """

    server: _Server
    protocol_version = "HTTP/1.0"
    server_version = "SheBaoSim/1.0"
    timeout = 15  # seconds a silent client may hold a handler thread

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._write(self.server.simulator._handle_get(self.path))

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        self._write(self._answer_post())

    def _answer_post(self) -> Reply:
        """Count first, then the path, the fault switch, the size cap, and only then SOAP."""
        simulator = self.server.simulator
        simulator._bump("raw_requests")
        try:
            length = self._content_length()
        except ValueError:
            return _text_reply(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
        if urlsplit(self.path).path != ENDPOINT_PATH:
            self._discard(length)
            return _text_reply(HTTPStatus.NOT_FOUND, "not found")
        plan = simulator._take_fault()
        if plan is not None and plan.mode != "slow":
            self._discard(length)
            return _injected_reply(plan.mode)
        if plan is not None:
            simulator._sleep(plan.slow_ms)
        if length is None:
            return _text_reply(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if length > MAX_BODY_BYTES:
            self._discard(length)
            too_large = f"request body exceeds {MAX_BODY_BYTES} bytes"
            return _text_reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large)
        return simulator._handle_soap(self.rfile.read(length))

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        length = int(raw)
        if length < 0:
            raise ValueError("negative Content-Length")
        return length

    def _discard(self, length: int | None) -> None:
        """Read and drop a body we will not process, so the client can read our answer."""
        remaining = length if length is not None and length <= _DRAIN_LIMIT else 0
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    return
                remaining -= len(chunk)
        except OSError:
            return

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base)
        """Access log to logging (debug), not stderr: tests and the demo stay quiet."""
        log.debug("social-security simulator %s - %s", self.address_string(), format % args)


# --------------------------------------------------------------------------- foreground use


def serve(port: int = 8701, decision_delay_ms: int = 200) -> None:
    """Run the simulator in the foreground until Ctrl-C (for the CLI and manual poking)."""
    with SocialSecuritySimulator(port=port, decision_delay_ms=decision_delay_ms) as simulator:
        print(f"社保 simulator: SOAP endpoint {simulator.url}", flush=True)
        print(f"                WSDL {simulator.wsdl_url}   (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("社保 simulator stopped", flush=True)


def _main() -> None:
    parser = argparse.ArgumentParser(description="人社/社保 SOAP 1.1 sector simulator")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--decision-delay-ms", type=int, default=200)
    args = parser.parse_args()
    serve(args.port, args.decision_delay_ms)


if __name__ == "__main__":
    _main()
