"""What the four sector simulators share: the HTTP server, the counters, the fault switch (and its
switchboard over HTTP, with the start options), the decision clock, references unique across restarts,
idempotent application, the body cap and hardened XML parsing.

Why one base: the four dialects differ on the wire (SOAP 1.1, SOAP 1.2 + WS-Security, REST +
OAuth2, REST + HMAC) but must misbehave, count and decide in exactly the same way, because the
gateway's resilience tests compare them. See SECTORS.md for the contract.

A simulator is a subclass of ``SimulatorBase`` that routes a request to a handler (``_route``) and
renders its dialect's canned fault answers (``_injected_reply``, ``_internal_error``). Everything
here is stdlib + lxml and imports nothing from the rest of the project, so a simulator can never
share a bug with the gateway it is testing.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, NamedTuple, Self
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from lxml import etree

__all__ = [
    "BEIJING",
    "COMMON_FAULT_MODES",
    "CONTROL_FAULT_PATH",
    "JSON_CONTENT_TYPE",
    "MAX_BODY_BYTES",
    "REFERENCE_EPOCH",
    "Case",
    "CaseBook",
    "Counters",
    "Decider",
    "FaultPlan",
    "FaultSwitch",
    "NonceCache",
    "Handler",
    "References",
    "Reply",
    "Request",
    "Route",
    "ServerTls",
    "SimulatorBase",
    "XmlRejected",
    "billion_laughs",
    "dig",
    "hardened_parser",
    "json_reply",
    "missing_fields",
    "parse_xml",
    "person_seed",
    "recent_months",
    "run_cli",
    "serve_forever",
    "text_reply",
]

log = logging.getLogger(__name__)

BEIJING: Final = ZoneInfo("Asia/Shanghai")
REFERENCE_EPOCH: Final = datetime(2025, 1, 1, tzinfo=BEIJING)  # where the references' clock counts from
MAX_BODY_BYTES: Final = 1024 * 1024
# Bodies up to this size are read and thrown away before an early answer (413, injected fault),
# so the client sees our status code instead of a connection reset; bigger ones are just cut off.
_DRAIN_LIMIT: Final = 16 * MAX_BODY_BYTES
_TEXT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
# The rehearsal switchboard (SECTORS.md): outside every sector's API, its counters and its fault plan.
CONTROL_PREFIX: Final = "/_simulator/"
CONTROL_FAULT_PATH: Final = CONTROL_PREFIX + "fault"
_DOCTYPE_RE: Final = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ID_CARD_RE: Final = re.compile(r"\d{17}[\dX]")

# The answers every dialect can be told to give (SECTORS.md); "slow" answers normally, late.
# A request meets these on its way in; a simulator's own modes (callbacks) are taken by handlers.
COMMON_FAULT_MODES: Final = frozenset({"fail", "slow", "malformed", "hostile", "fault", "rate_limit"})
COMMON_COUNTERS: Final = (
    "raw_requests",
    "submits_received",
    "queries_received",
    "cases_created",
    "duplicate_submits",
    "business_errors",
    "auth_failures",
    "faults_injected",
)

Decider = Callable[[dict[str, Any]], tuple[bool, str]]
"""Decides a case from its submitted fields: (approved, opinion)."""


# --------------------------------------------------------------------------- messages


class Reply(NamedTuple):
    """One HTTP answer, built by the simulator and written by the request handler."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Request:
    """One HTTP request as a handler sees it; ``params`` are the route's path placeholders."""

    method: str
    path: str  # without the query string, exactly as sent (HMAC signs this form)
    query: str
    headers: Message
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value.strip() if isinstance(value, str) else None

    def query_param(self, name: str) -> str | None:
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else None


Handler = Callable[[Request], Reply]


class Route(NamedTuple):
    """Where a request goes; ``faultable`` False keeps it out of the fault plan (service
    descriptions, the OAuth token endpoint: a separate identity server stays up)."""

    handler: Handler
    faultable: bool = True


def text_reply(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """Plain-text answers for HTTP-level problems that happen before the dialect is involved."""
    return Reply(status, _TEXT_CONTENT_TYPE, message.encode("utf-8"), headers)


def json_reply(status: int, document: object, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """UTF-8 JSON with the Chinese left readable (as the sector systems send it)."""
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Reply(status, JSON_CONTENT_TYPE, body, headers)


_DEAD_BALANCER_HTML: Final = (
    b"<html><head><title>503 Service Unavailable</title></head><body>"
    b"<h1>503 Service Unavailable</h1><p>No server is available to handle this request.</p>"
    b"</body></html>"
)
DEAD_BALANCER: Final = Reply(HTTPStatus.SERVICE_UNAVAILABLE, "text/html; charset=utf-8", _DEAD_BALANCER_HTML)
RETRY_AFTER: Final = (("Retry-After", "1"),)


# --------------------------------------------------------------------------- XML in


class XmlRejected(ValueError):
    """A request document we refuse to read (not well-formed, or carrying a DTD)."""


def hardened_parser() -> etree.XMLParser:
    """A fresh parser per document (lxml parsers are not to be shared across threads) that
    never resolves entities, never loads a DTD and never touches the network."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse_xml(body: bytes) -> etree._Element:
    """Parse a request body hardened; any DOCTYPE is refused, entity definitions included."""
    if _DOCTYPE_RE.search(body):
        raise XmlRejected("拒绝处理：请求报文含DOCTYPE声明（不接受DTD与实体定义）")
    try:
        root = etree.fromstring(body, hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"请求报文不是格式良好的XML：{exc}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # e.g. a UTF-16 DOCTYPE the byte scan missed
        raise XmlRejected("拒绝处理：请求报文含DOCTYPE声明（不接受DTD与实体定义）")
    return root


def billion_laughs(document: str, root_name: str, placeholder: str) -> bytes:
    """``document`` with a DOCTYPE of nine nested entity levels (10**9 "lol"s if expanded) and
    every ``placeholder`` replaced by a reference to the top one; small on the wire on purpose."""
    levels = ['<!ENTITY lol0 "lol">']
    levels += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    subset = "\n  ".join(levels)
    body = document.split("?>", 1)[-1].lstrip().replace(placeholder, "&lol9;")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE {root_name} [\n  {subset}\n]>\n{body}'
    ).encode()


# --------------------------------------------------------------------------- made-up records


def person_seed(id_number: str | None) -> int | None:
    """A stable number for a well-formed 18-character resident ID number, None otherwise.

    The simulators know "everyone" with a well-formed number (so the demo can use anybody) and
    derive that person's records from this seed, so every run and every process answers alike.
    """
    if not id_number or not _ID_CARD_RE.fullmatch(id_number):
        return None
    return int.from_bytes(hashlib.sha256(id_number.encode("ascii")).digest()[:8], "big")


def recent_months(count: int, today: date | None = None) -> list[tuple[int, int]]:
    """(year, month) of the ``count`` months before the current Beijing month, newest first."""
    current = today or datetime.now(BEIJING).date()
    index = current.year * 12 + current.month - 1  # months since January of year 0
    return [(i // 12, i % 12 + 1) for i in range(index - 1, index - 1 - count, -1)]


def dig(document: object, dotted: str) -> object:
    """``document["a"]["b"]`` for "a.b"; None where the path leaves the dicts."""
    value = document
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def missing_fields(document: dict[str, Any], paths: Iterable[str]) -> list[str]:
    """The dotted paths that are absent, null or empty (the sectors treat all three alike)."""
    return [path for path in paths if dig(document, path) in (None, "", [], {})]


# --------------------------------------------------------------------------- counters and faults


class Counters:
    """Thread-safe named counters; a snapshot is a plain dict copy."""

    def __init__(self, names: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def bump(self, name: str) -> None:
        with self._lock:
            self._values[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


@dataclass(frozen=True)
class FaultPlan:
    """The armed fault switch; ``remaining`` None means until changed."""

    mode: str
    remaining: int | None
    slow_ms: int


class FaultSwitch:
    """``set_fault`` state: which misbehaviour, for how many more takers."""

    def __init__(self, supported: frozenset[str], counters: Counters) -> None:
        self.supported = supported
        self._counters = counters
        self._lock = threading.Lock()
        self._plan: FaultPlan | None = None

    @property
    def mode(self) -> str | None:
        with self._lock:
            return self._plan.mode if self._plan else None

    @property
    def plan(self) -> FaultPlan | None:
        with self._lock:
            return self._plan

    def arm(self, mode: str | None, count: int | None, slow_ms: int) -> None:
        if mode is not None and mode not in self.supported:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {sorted(self.supported)} or None")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 (or None for 'until changed')")
        if slow_ms < 0:
            raise ValueError("slow_ms must be >= 0")
        with self._lock:
            self._plan = None if mode is None else FaultPlan(mode, count, slow_ms)

    def take(self, modes: frozenset[str]) -> FaultPlan | None:
        """Consume one use of the armed fault if it is one of ``modes`` (a request meets the
        HTTP-level ones, a submit handler the callback ones); disarm when the count runs out."""
        with self._lock:
            plan = self._plan
            if plan is None or plan.mode not in modes:
                return None
            if plan.remaining is not None:
                left = plan.remaining - 1
                self._plan = replace(plan, remaining=left) if left > 0 else None
        self._counters.bump("faults_injected")
        return plan


class NonceCache:
    """Nonces seen within the freshness window. Older ones may be forgotten: a request that
    old is refused for its timestamp anyway, so memory stays bounded by the window."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # nonce -> monotonic time first seen (insertion order)

    def first_use(self, nonce: str) -> bool:
        """Remember ``nonce``; False if it was already used."""
        now = time.monotonic()
        with self._lock:
            while self._seen:  # oldest first: stop at the first one still inside the window
                oldest, seen_at = next(iter(self._seen.items()))
                if now - seen_at <= self._window_s:
                    break
                del self._seen[oldest]
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    """A case the sector has applied; ``decision`` is fixed the first time it is due."""

    reference: str
    fields: dict[str, Any]
    created_at: float  # time.monotonic()
    due_at: float  # time.monotonic() when the decision becomes visible
    decided_at: datetime  # Beijing wall time the decision is due (reported as the finish time)
    decision: tuple[bool, str] | None = None
    cancelled: bool = False

    def is_due(self) -> bool:
        return time.monotonic() >= self.due_at

    def in_first_half(self) -> bool:
        """For dialects with two waiting statuses (received, then under review)."""
        return time.monotonic() < (self.created_at + self.due_at) / 2


class References:
    """A sector's references: its prefix, then ``width`` digits counting ``unit_ms`` steps of wall-clock
    time since ``REFERENCE_EPOCH`` (modulo 10**width), one step at least between two references.

    Why the clock and not a counter from 1: a restarted simulator (a new process, nothing of the old one
    in memory) must never hand out a reference it gave another case, or the gateway would bind one case's
    answers to another. No number is issued before the clock has reached it (a burst waits for the next
    step), and a new run starts above the clock's reading at its start, so above every number an earlier
    run issued; nothing is kept on disk. What this needs: the machine's clock not set back between runs.
    Twelve digits of milliseconds last until 2056 at up to 1000 references a second; the 公积金 simulator's
    ten digits (its published pattern) count hundredths of a second: 100 a second, unique within any three
    years.
    """

    def __init__(self, prefix: str, width: int, unit_ms: int = 1, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if width < 1 or unit_ms < 1:
            raise ValueError("width and unit_ms must be >= 1")
        self._prefix = prefix
        self._modulus = 10**width
        self._width = width
        self._unit_s = unit_ms / 1000
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last = self._step()  # every earlier run's numbers are at most this

    def next(self) -> str:
        """A reference no run of this sector's simulator on this machine has issued before."""
        with self._lock:
            number = max(self._last + 1, self._step())
            while self._step() < number:  # never ahead of the clock: what a restart relies on
                self._sleep(self._unit_s)
            self._last = number
        return f"{self._prefix}{number % self._modulus:0{self._width}d}"

    def _step(self) -> int:
        return int((self._clock() - REFERENCE_EPOCH.timestamp()) / self._unit_s)


class CaseBook:
    """The sector's cases: applied once per request id, decided after the delay, decided once.

    Only applied requests are remembered by id: a rejected one leaves nothing to replay against,
    so the corrected retry of a rejected request is a new case, as in the real systems.
    """

    def __init__(self, references: References, delay_s: float, decide: Decider, counters: Counters) -> None:
        self._references = references
        self._delay_s = delay_s
        self._decide = decide
        self._counters = counters
        self._lock = threading.Lock()
        self._cases: dict[str, Case] = {}
        self._by_request_id: dict[str, str] = {}

    def apply(self, request_id: str, fields: dict[str, Any]) -> tuple[Case, bool]:
        """Check-and-create under one lock so concurrent duplicates still make one case."""
        with self._lock:
            existing = self._by_request_id.get(request_id)
            if existing is not None:
                self._counters.bump("duplicate_submits")
                return self._cases[existing], False
            reference = self._references.next()
            now = time.monotonic()
            due_wall = datetime.now(BEIJING) + timedelta(seconds=self._delay_s)
            case = Case(reference, copy.deepcopy(fields), now, now + self._delay_s, due_wall)
            self._cases[reference] = case
            self._by_request_id[request_id] = reference
        self._counters.bump("cases_created")
        return case, True

    def get(self, reference: str) -> Case | None:
        with self._lock:
            return self._cases.get(reference)

    def live(self, reference: str) -> Case | None:
        """The case unless unknown or cancelled (a sector that forgets what was withdrawn)."""
        case = self.get(reference)
        return None if case is None or case.cancelled else case

    def cases(self) -> list[Case]:
        """Every case applied so far (a sector that looks for a person's other cases)."""
        with self._lock:
            return list(self._cases.values())

    def decision(self, case: Case) -> tuple[bool, str] | None:
        """The decision once due (None before, and for a cancelled case); decided once."""
        with self._lock:
            if case.cancelled or not case.is_due():
                return None
            if case.decision is not None:
                return case.decision
        # decide() is caller code: run it outside the lock, keep the first answer.
        approved, opinion = self._decide(copy.deepcopy(case.fields))
        with self._lock:
            if case.decision is None:
                case.decision = (bool(approved), str(opinion))
            return case.decision

    def decide_now(self, case: Case) -> tuple[bool, str]:
        """Make the decision due immediately (a sector that answers before it acknowledges)."""
        with self._lock:
            if not case.is_due():
                case.due_at = time.monotonic()
                case.decided_at = datetime.now(BEIJING)
        decision = self.decision(case)
        if decision is None:  # only a cancelled case has none once due
            raise RuntimeError(f"{case.reference} was cancelled before its early decision")
        return decision

    def cancel(self, reference: str) -> bool | None:
        """None for an unknown case, False once decided, True otherwise (again True if repeated)."""
        with self._lock:
            case = self._cases.get(reference)
            if case is None:
                return None
            if not case.cancelled and case.is_due():
                return False
            case.cancelled = True
            return True


# --------------------------------------------------------------------------- HTTPS


@dataclass(frozen=True)
class ServerTls:
    """HTTPS for a simulator: its certificate (with chain) and key files; with ``client_ca``, every client
    must present a certificate that CA signed (mTLS), as the sectors' gateways demand."""

    certfile: Path
    keyfile: Path
    client_ca: Path | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certfile, self.keyfile)
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.client_ca)
        return context


# --------------------------------------------------------------------------- the simulator base


class SimulatorBase:
    """Lifecycle, counters, fault switch and request pipeline of a sector simulator.

    Subclasses set ``label`` (logs, thread names), ``server_version``, ``fault_modes``,
    ``extra_counters`` and the reference shape, and implement ``_route``, ``_injected_reply``,
    ``_internal_error``, ``url`` and ``description_url``.
    """

    label: ClassVar[str] = "sector"
    sector: ClassVar[str] = "sector"  # the gateway's name of the sector (its bundle's), e.g. "social_security"
    server_version: ClassVar[str] = "SectorSim/1.0"
    fault_modes: ClassVar[frozenset[str]] = COMMON_FAULT_MODES
    extra_counters: ClassVar[tuple[str, ...]] = ()
    reference_prefix: ClassVar[str] = "REF"
    reference_width: ClassVar[int] = 12
    reference_unit_ms: ClassVar[int] = 1  # see References

    def __init__(self, host: str, port: int, decision_delay_ms: int, decide: Decider) -> None:
        if decision_delay_ms < 0:
            raise ValueError("decision_delay_ms must be >= 0")
        self._host = host
        self._port = port
        self._decision_delay = decision_delay_ms / 1000.0
        self._stopping = threading.Event()
        self._counters = Counters(COMMON_COUNTERS + self.extra_counters)
        self._faults = FaultSwitch(self.fault_modes, self._counters)
        references = References(self.reference_prefix, self.reference_width, self.reference_unit_ms)
        self._book = CaseBook(references, self._decision_delay, decide, self._counters)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tls: ServerTls | None = None
        self._client_fingerprints: list[str] = []
        self._fingerprints_lock = threading.Lock()

    # ----- lifecycle

    def serve_tls(self, tls: ServerTls) -> Self:
        """Serve HTTPS (before ``start``); returns self for chaining."""
        if self._server is not None:
            raise RuntimeError("serve_tls() must come before start()")
        self._tls = tls
        return self

    def start(self) -> Self:
        """Bind (port 0 = ephemeral) and serve in a daemon thread; returns self for chaining."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((self._host, self._port), _Handler)
        server.simulator = self
        if self._tls is not None:
            # The handshake happens in the handler thread (_Handler.setup): a slow or refused client
            # must not hold up the accepting thread.
            server.socket = self._tls.context().wrap_socket(server.socket, server_side=True,
                                                            do_handshake_on_connect=False)
        self._stopping.clear()
        self._server = server
        self._on_started()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits up to one poll interval
            name=f"{self.label}-sim-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.debug("%s simulator listening on %s", self.label, self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, wake sleepers ("slow", callback backoff), release the port. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._on_stopped()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _on_started(self) -> None:
        """Hook: the port is bound (e.g. render a description with the real address)."""

    def _on_stopped(self) -> None:
        """Hook: the server is closed (e.g. let outgoing callbacks wind down)."""

    # ----- addresses

    @property
    def port(self) -> int:
        """The port actually bound (meaningful only once started)."""
        return int(self._bound().server_address[1])

    @property
    def base_url(self) -> str:
        """http(s)://127.0.0.1:PORT, without a trailing slash."""
        scheme = "https" if self._tls is not None else "http"
        host = self._bound().server_address[0]  # text once bound (getsockname); the stubs allow bytes for bind()
        return f"{scheme}://{host if isinstance(host, str) else bytes(host).decode('ascii')}:{self.port}"

    @property
    def url(self) -> str:
        """What a client is configured with (SOAP endpoint or REST base URL)."""
        return self.base_url

    @property
    def description_url(self) -> str:
        """Where the service description (WSDL, OpenAPI) is served."""
        raise NotImplementedError

    @property
    def decision_delay_ms(self) -> int:
        """How long a case waits before its decision is visible."""
        return round(self._decision_delay * 1000)

    def _bound(self) -> _Server:
        if self._server is None:
            raise RuntimeError("simulator is not running; call start() first")
        return self._server

    # ----- observation and control

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the counters (a copy, safe to keep)."""
        return self._counters.snapshot()

    @property
    def client_fingerprints(self) -> list[str]:
        """SHA-256 (hex) of each client certificate presented, one per connection, in order (HTTPS only)."""
        with self._fingerprints_lock:
            return list(self._client_fingerprints)

    def _saw_client_certificate(self, der: bytes) -> None:
        with self._fingerprints_lock:
            self._client_fingerprints.append(hashlib.sha256(der).hexdigest())

    @property
    def fault_mode(self) -> str | None:
        """The fault currently armed, or None when behaving normally."""
        return self._faults.mode

    def set_fault(self, mode: str | None, *, count: int | None = None, slow_ms: int = 0) -> None:
        """Arm a fault for the next ``count`` requests (None = until changed); ``mode=None`` disarms.

        "fail" (503 HTML from a dead load balancer), "slow" (sleep ``slow_ms``, then answer
        normally: the effect *is* applied even if the client gave up), "malformed" (truncated
        body), "hostile" (entity bomb / 100 000-deep JSON), "fault" (the dialect's server error),
        "rate_limit" (429 with Retry-After: 1); plus any the simulator adds. Unsupported → ValueError.
        """
        self._faults.arm(mode, count, slow_ms)

    def fault_state(self) -> dict[str, Any]:
        """What the switchboard answers: the sector, the armed fault (if any) and every mode it takes."""
        plan = self._faults.plan
        armed = None if plan is None else {"mode": plan.mode, "remaining": plan.remaining, "slow_ms": plan.slow_ms}
        return {"sector": self.sector, "fault": armed, "modes": sorted(self._faults.supported)}

    def _sleep(self, milliseconds: float) -> bool:
        """Sleep, cut short when the simulator is stopped; True if it was stopped."""
        return self._stopping.wait(milliseconds / 1000.0)

    # ----- the dialect's part

    def _route(self, method: str, path: str, query: str) -> Route | Reply:
        """Where a request goes, or the answer right away (404, 405, a service description)."""
        raise NotImplementedError

    def _injected_reply(self, mode: str) -> Reply:
        """The canned answer for "malformed", "hostile", "fault" and "rate_limit"."""
        raise NotImplementedError

    def _internal_error(self) -> Reply:
        """The answer when a handler (or a custom decide()) raises: the sector's own failure."""
        raise NotImplementedError

    # ----- the pipeline (called by the handler thread)

    def _answer(self, http: _Handler) -> Reply:
        """Count first, then route, the fault switch, the size cap, and only then the dialect.
        The switchboard is not the sector's: it is neither counted nor faulted."""
        parts = urlsplit(http.path)
        if parts.path.startswith(CONTROL_PREFIX):
            return self._control(http, parts.path)
        self._counters.bump("raw_requests")
        try:
            length = http.content_length()
        except ValueError:
            return text_reply(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
        route = self._route(http.command, parts.path, parts.query)
        if isinstance(route, Reply):
            http.discard(length)
            return route
        plan = self._faults.take(COMMON_FAULT_MODES) if route.faultable else None
        if plan is not None and plan.mode != "slow":
            http.discard(length)
            return DEAD_BALANCER if plan.mode == "fail" else self._injected_reply(plan.mode)
        if plan is not None:
            self._sleep(plan.slow_ms)
        body = http.read_body(length)
        if isinstance(body, Reply):
            return body
        return self._run(route.handler, Request(http.command, parts.path, parts.query, http.headers, body))

    def _control(self, http: _Handler, path: str) -> Reply:
        """``GET /_simulator/fault``: the fault state; ``POST`` with ``{"sector", "mode", "count",
        "slow_ms"}`` arms one (``mode`` null disarms). ``sector`` must name this simulator's, so a fault
        meant for one sector is never armed on another listening where it was expected."""
        try:
            length = http.content_length()
        except ValueError:
            return json_reply(HTTPStatus.BAD_REQUEST, {"error": "invalid Content-Length"})
        if path != CONTROL_FAULT_PATH or http.command not in ("GET", "POST"):
            http.discard(length)
            if path != CONTROL_FAULT_PATH:
                return json_reply(HTTPStatus.NOT_FOUND, {"error": f"no such switch; there is {CONTROL_FAULT_PATH}"})
            return json_reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "GET or POST"}, (("Allow", "GET, POST"),))
        if http.command == "GET":
            http.discard(length)
            return json_reply(HTTPStatus.OK, self.fault_state())
        body = http.read_body(length)
        if isinstance(body, Reply):
            return body
        try:
            self._arm_ordered(body)
        except _WrongSector as exc:
            return json_reply(HTTPStatus.CONFLICT, {"error": str(exc), **self.fault_state()})
        except ValueError as exc:
            return json_reply(HTTPStatus.BAD_REQUEST, {"error": str(exc), "modes": sorted(self._faults.supported)})
        log.info("%s simulator: fault switch set to %s", self.label, self._faults.plan)
        return json_reply(HTTPStatus.OK, self.fault_state())

    def _arm_ordered(self, body: bytes) -> None:
        try:
            order = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise ValueError("the body must be a JSON object {sector, mode, count, slow_ms}") from exc
        if not isinstance(order, dict) or set(order) - {"sector", "mode", "count", "slow_ms"}:
            raise ValueError("the body must be a JSON object with only sector, mode, count and slow_ms")
        if order.get("sector") != self.sector:
            raise _WrongSector(f"this is the {self.sector} simulator, not {order.get('sector')!r}")
        mode, count, slow_ms = order.get("mode"), order.get("count"), order.get("slow_ms", 0)
        if not (mode is None or isinstance(mode, str)) or not _is_int_or_none(count) or not _is_int_or_none(slow_ms):
            raise ValueError("mode must be a string or null, count and slow_ms whole numbers")
        self.set_fault(mode, count=count, slow_ms=slow_ms or 0)

    def _run(self, handler: Handler, request: Request) -> Reply:
        try:
            return handler(request)
        except Exception:  # a bug here or in a custom decide(): the sector's own failure
            log.exception("%s simulator failed on %s %s", self.label, request.method, request.path)
            return self._internal_error()


class _WrongSector(ValueError):
    """A switchboard order meant for another sector's simulator."""


def _is_int_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    """Daemon handler threads, and server_close() must not wait for them (a "slow" request
    or an idle client must never hang stop())."""

    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog (5) drops connections under concurrent load (a connection
    # per request here): the client's SYN is retried a second later, a stall no real sector would add.
    request_queue_size = 128
    simulator: SimulatorBase

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (e.g. after their own timeout) are normal here, not tracebacks."""
        log.debug("%s simulator: connection error from %s", self.simulator.label, client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """HTTP I/O only: every decision about what to answer is the simulator's.

    HTTP/1.0 closes the connection after each answer, so a stopped simulator really is gone
    (no pooled keep-alive connection keeps talking to a handler thread that outlived stop()).
    """

    server: _Server
    protocol_version = "HTTP/1.0"
    timeout = 15  # seconds a silent client may hold a handler thread

    def version_string(self) -> str:
        return self.server.simulator.server_version

    def setup(self) -> None:
        super().setup()  # sets the socket timeout first, so a silent client cannot stall the handshake
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # a refused client certificate ends here (handle_error logs it)
            der = self.connection.getpeercert(binary_form=True)
            if der:
                self.server.simulator._saw_client_certificate(der)

    def _serve(self) -> None:
        self._write(self.server.simulator._answer(self))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve  # noqa: N815 (http.server naming)

    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        length = int(raw)
        if length < 0:
            raise ValueError("negative Content-Length")
        return length

    def read_body(self, length: int | None) -> bytes | Reply:
        """The body, or why not: a body-carrying method needs a length, and the cap holds."""
        if length is None:
            if self.command in ("POST", "PUT", "PATCH"):
                return text_reply(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
            return b""
        if length > MAX_BODY_BYTES:
            self.discard(length)
            return text_reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body exceeds {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def discard(self, length: int | None) -> None:
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
        log.debug("%s simulator %s - %s", self.server.simulator.label, self.address_string(), format % args)


# --------------------------------------------------------------------------- foreground use


def serve_forever(simulator: SimulatorBase, label: str, fault: FaultPlan | None = None) -> None:
    """Run ``simulator`` in the foreground until Ctrl-C (for the CLI and manual poking); ``fault`` is armed
    before it listens (ValueError, with nothing started, for a mode this simulator does not take)."""
    if fault is not None:
        simulator.set_fault(fault.mode, count=fault.remaining, slow_ms=fault.slow_ms)
    with simulator:
        print(f"{label} simulator: {simulator.url}", flush=True)
        print(f"    service description {simulator.description_url}   (Ctrl-C to stop)", flush=True)
        print(f"    fault switch {simulator.base_url}{CONTROL_FAULT_PATH}: {_armed(fault)}"
              f" (yiwang simulators fault {simulator.sector} MODE --url {simulator.base_url})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"{label} simulator stopped", flush=True)


def _armed(fault: FaultPlan | None) -> str:
    if fault is None:
        return "none armed"
    return fault.mode + (f" armed for {fault.remaining} request(s)" if fault.remaining else " armed until changed")


def run_cli(description: str, serve: Callable[..., None], default_port: int, modes: Iterable[str],
            *, calls_back: bool = False) -> None:
    """``python -m adapters.simulators.X [--port] [--decision-delay-ms] [--fault MODE [--fault-count N]
    [--slow-ms N]] [--callback-url URL]``: the options of ``yiwang simulators run`` (docs/cli.md)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--decision-delay-ms", type=int, default=200)
    parser.add_argument("--fault", choices=sorted(modes), help="a fault armed from the start (SECTORS.md)")
    parser.add_argument("--fault-count", type=int, default=None, help="for this many requests (default: until changed)")
    parser.add_argument("--slow-ms", type=int, default=0, help="how late the slow fault answers")
    if calls_back:
        parser.add_argument("--callback-url", help="where decisions are called back (the gateway's /callbacks/SECTOR)")
    args = parser.parse_args()
    fault = FaultPlan(args.fault, args.fault_count, args.slow_ms) if args.fault else None
    options = {"callback_url": args.callback_url} if calls_back else {}
    try:
        serve(args.port, args.decision_delay_ms, fault=fault, **options)
    except ValueError as exc:  # a bad count, delay or address: refused before anything listens
        parser.error(str(exc))
