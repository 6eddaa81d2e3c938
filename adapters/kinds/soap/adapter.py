"""The SOAP adapter kind: a sector reached through its WSDL with zeep.

One zeep `Client` per adapter (one registered bundle version), built once from the WSDL kept in
the bundle and reused: parsing a WSDL is slow and the file never changes under a version. The
service address is the deployment's endpoint, not the WSDL's `soap:address`.

SOAP 1.1 and 1.2: the service is built on the WSDL binding of the bundle's `soap_version` (default:
the first port's binding). Authentication (`adapters.auth`): a WS-Security UsernameToken header or
HTTP Basic on the session (`auth.py`). Certificates (`adapters.registry` resolves them): an `ssl.SSLContext`
for mTLS and trust, used by requests for every https call; WS-Security signatures (`wssecurity.py`). `call`
takes a canonical `Operation` or, as a plain string, the name of a named query (its mapping names the WSDL
operation like any other).

Every failure of `call` leaves as a classified `DeliveryError` (DESIGN.md invariant 4); see
`classify` for the table. When the sector answered, the error carries that answer (`last_response`:
status, a few headers, the body cut at 64 KiB), captured in the transport as a reference only.

Idempotency (bundle `idempotency.soap_header`): every request carries a SOAP header element
`{namespace}name` whose text is the message's `idempotency_key`, the same on every retry.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import zeep
import zeep.exceptions as zx
from lxml import etree
from requests.adapters import HTTPAdapter
from zeep.helpers import serialize_object
from zeep.proxy import ServiceProxy
from zeep.transports import Transport
from zeep.utils import get_media_type
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding
from zeep.wsse.compose import Compose

from adapters.auth import NO_AUTH, AuthSpec
from adapters.contract import (
    CanonicalMessage,
    CanonicalResult,
    DeliveryError,
    FailureClass,
    Operation,
    UnsendableRequest,
    correlation_headers,
)
from adapters.kinds.common import RawAnswer, certificate_refused, mapping_failure, mapping_for
from adapters.kinds.soap.auth import soap_auth
from adapters.kinds.soap.wssecurity import MessageSecurity
from mappings import BusinessError, CompiledMapping, MappingError
from mappings.xslt import Transform

if TYPE_CHECKING:  # names of requests' stubs only (the TypedDicts its pool-key hook returns)
    from requests.adapters import _HostParams, _PoolKwargs

_XML_MEDIA_TYPES = frozenset({"text/xml", "application/soap+xml", "application/xml"})
_BRIEF = 300  # zeep quotes whole answers in its messages; a dead letter needs the gist, not the body


def _brief(text: str) -> str:
    return text if len(text) <= _BRIEF else text[:_BRIEF] + "…"


_BINDINGS: Mapping[str, type[Any]] = {"1.1": Soap11Binding, "1.2": Soap12Binding}
# The HTTP statuses a fault arrives with: 1.1 always 500; 1.2 a Sender fault 400, the others 500.
_FAULT_STATUSES: Mapping[type[Any], frozenset[int]] = {
    Soap11Binding: frozenset({500}),
    Soap12Binding: frozenset({400, 500}),
}


class _StatusCheckingTransport(Transport):
    """Refuses non-SOAP HTTP errors before zeep parses them.

    zeep parses every answer as XML first, so an HTTP 503 with an HTML page (often with
    `<!DOCTYPE html>`) would surface as a DTD or syntax error and look like a hostile answer.
    Only HTTP 200 and a fault (an XML body with one of `fault_statuses`) go on to zeep.

    Every answer is also handed to the calling thread's `RawAnswer` (see `SoapAdapter.call`), if it set
    one: a fault, a malformed answer or a business refusal is told to a dead letter with what was said.
    """

    fault_statuses: frozenset[int] = frozenset({500})  # set per adapter once the binding is known

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # zeep's Transport is unannotated and mypy's untyped_calls_exclude does not reach calls through super().
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # zeep, through super()
        self.calls = threading.local()  # .answer: the RawAnswer of the call this thread is making

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        answer: RawAnswer | None = getattr(self.calls, "answer", None)
        if answer is not None:
            answer.sent = True
        # Transport.post is unannotated (see __init__); it returns requests' Response.
        response: requests.Response = super().post(  # type: ignore[no-untyped-call]  # zeep, through super()
            address, message, {**correlation_headers(), **headers}
        )
        if answer is not None:  # requests has read the body already: keeping it is a reference, not a copy
            answer.keep(response.status_code, response.headers, response.content)
        status = response.status_code
        media_type = get_media_type(response.headers.get("Content-Type", "text/xml"))
        if status != 200 and not (status in self.fault_statuses and media_type in _XML_MEDIA_TYPES):
            raise zx.TransportError(f"HTTP {status} ({media_type})", status_code=status, content=None)
        return response


class _ExpectedBodyCheck(zeep.Plugin):
    """Refuses an answer whose body is not the operation's output element (nor a fault).

    zeep, even strict, reads `<Body><Surprise/></Body>` as the expected response with every field
    None; that would surface as a confusing mapping error instead of a malformed answer.
    """

    def ingress(self, envelope: etree._Element, http_headers: Any, operation: Any) -> tuple[etree._Element, Any]:
        expected = getattr(getattr(operation.output, "body", None), "qname", None)
        if expected is None:  # not document/literal: zeep checks the rpc wrapper itself
            return envelope, http_headers
        body = envelope.find(f"{{{etree.QName(envelope).namespace}}}Body")
        first = None if body is None else next(iter(body), None)
        found = None if first is None else etree.QName(first)
        # A fault is let through: zeep raises it as a Fault next.
        if found is None or (found.text != str(expected) and found.localname != "Fault"):
            raise zx.UnexpectedElementError(f"expected {expected} in the SOAP body, found {found or 'nothing'}")
        return envelope, http_headers


class _Stylesheets(zeep.Plugin):
    """Sectors that need their XML transformed whole: the mapping's XSLT (sandboxed, DENY_ALL) rewrites the
    envelope zeep built, per operation, just before it is sent."""

    def __init__(self, by_operation: Mapping[str, Transform]) -> None:
        self.by_operation = dict(by_operation)

    def egress(self, envelope: etree._Element, http_headers: Any, operation: Any,
               binding_options: Any) -> tuple[etree._Element, Any]:
        transform = self.by_operation.get(operation.name)
        return (envelope if transform is None else transform(envelope)), http_headers


class _TlsContextAdapter(HTTPAdapter):
    """requests over our `ssl.SSLContext` alone: its client certificate, its trust anchors.

    Left to itself requests would load certifi's bundle into the context for every new connection
    (`cert_verify`, `ca_certs`), trusting the public CAs beside the sector's pinned one.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: str | tuple[str, str] | None = None
    ) -> tuple[_HostParams, _PoolKwargs]:
        host_params, _ = super().build_connection_pool_key_attributes(request, verify, cert)
        # No cert_reqs (the stubs require one): without it urllib3 takes the verify mode of our context.
        return host_params, {"ssl_context": self._context}  # type: ignore[typeddict-item]  # no cert_reqs: see above

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Our context decides: no CA bundle path, no client certificate file."""


def _settings() -> zeep.Settings:
    # DESIGN.md "known traps": no external references, no DTDs, no entities, no huge trees.
    return zeep.Settings(
        strict=True, forbid_external=True, forbid_dtd=True, forbid_entities=True, xml_huge_tree=False
    )


def _build_client(wsdl_path: Path, timeout_s: float, auth: AuthSpec,
                  stylesheets: Mapping[str, Transform] | None = None, ssl_context: ssl.SSLContext | None = None,
                  security: MessageSecurity | None = None) -> zeep.Client:
    credentials = soap_auth(auth)  # resolves the secrets now: a missing one fails registration
    session = requests.Session()
    session.auth = credentials.http
    if ssl_context is not None:
        session.mount("https://", _TlsContextAdapter(ssl_context))
    # A UsernameToken goes in first, then the signature covers the finished header (zeep applies in order).
    wsse = [w for w in (credentials.wsse, security) if w is not None]
    transport = _StatusCheckingTransport(timeout=timeout_s, operation_timeout=timeout_s, session=session)
    try:
        return zeep.Client(
            wsdl=str(wsdl_path),
            transport=transport,
            settings=_settings(),
            plugins=[_ExpectedBodyCheck(), _Stylesheets(stylesheets or {})],
            wsse=Compose(wsse) if len(wsse) > 1 else (wsse[0] if wsse else None),
        )
    except (zx.Error, etree.LxmlError) as exc:
        raise ValueError(f"{wsdl_path.name}: not a usable WSDL: {_brief(str(exc))}") from exc


def _binding(client: zeep.Client, soap_version: str | None) -> Any:
    """The binding of the first service port speaking `soap_version` (the first port if None).

    A WSDL often publishes one port type over both SOAP 1.1 and 1.2; zeep would take whichever
    port comes first, so the bundle's declared version picks.
    """
    if soap_version is not None and soap_version not in _BINDINGS:
        raise ValueError(f"soap_version must be one of {', '.join(_BINDINGS)}, got {soap_version!r}")
    wanted = (_BINDINGS[soap_version],) if soap_version else tuple(_BINDINGS.values())
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            if isinstance(port.binding, wanted):
                return port.binding
    raise ValueError(f"the WSDL declares no SOAP {soap_version or '1.1/1.2'} service port")


class SoapAdapter:
    """One SOAP sector bundle version, ready to call (implements `adapters.contract.Adapter`).

    `mappings` is keyed by canonical operation and by query name (an `Operation` is a str).
    """

    def __init__(
        self,
        sector: str,
        version: str,
        wsdl_path: Path,
        endpoint: str,
        mappings: Mapping[str, CompiledMapping],
        timeout_s: float,
        *,
        soap_version: str | None = None,
        auth: AuthSpec = NO_AUTH,
        stylesheets: Mapping[str, Transform] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        security: MessageSecurity | None = None,
        idempotency_header: str | None = None,
    ) -> None:
        """`stylesheets`: mapping name -> XSLT applied to that operation's envelope before sending;
        `ssl_context`: for https endpoints (default: requests' own); `security`: WS-Security signatures;
        `idempotency_header`: "{namespace}name" of the SOAP header element carrying the idempotency key."""
        self.sector = sector
        self.version = version
        self.endpoint = endpoint
        self._idempotency_header = idempotency_header
        self._mappings = {str(name): mapping for name, mapping in mappings.items()}
        by_operation = {self._mappings[name].operation: t for name, t in (stylesheets or {}).items()
                        if name in self._mappings}
        self.client = _build_client(Path(wsdl_path), timeout_s, auth, by_operation, ssl_context, security)
        binding = _binding(self.client, soap_version)
        missing = sorted(m.operation for m in self._mappings.values() if m.operation not in binding.all())
        if missing:
            raise ValueError(f"{Path(wsdl_path).name}: binding {binding.name} has no operation {missing[0]!r}")
        self.client.transport.fault_statuses = _FAULT_STATUSES[type(binding)]
        self.service: ServiceProxy = self.client.create_service(binding.name, endpoint)

    def close(self) -> None:
        self.client.transport.session.close()

    def render(self, operation: Operation | str, message: CanonicalMessage) -> dict[str, Any]:
        """The request dict zeep serializes for this message; `DeliveryError` (MAPPING) if it cannot be built."""
        return _render(self._mapping(operation), message)

    def call(self, operation: Operation | str, message: CanonicalMessage) -> CanonicalResult:
        """Call a canonical operation, or a named query given as a str (message `{"query": {...}}`)."""
        mapping = self._mapping(operation)
        request = _render(mapping, message) | idempotency_soapheaders(self._idempotency_header, message)
        calls = self.client.transport.calls
        calls.answer = answer = RawAnswer()  # zeep posts from this thread: the transport fills it
        try:
            return _read(mapping, getattr(self.service, mapping.operation)(**request))
        except Exception as exc:  # the contract: nothing raw escapes; classify() knows every kind we expect
            error = classify(exc) if answer.sent else unsent(exc)
            error.last_response = answer.last_response()
            if error is exc:
                raise
            raise error from exc
        finally:
            calls.answer = None

    def _mapping(self, operation: Operation | str) -> CompiledMapping:
        return mapping_for(self._mappings, operation, f"{self.sector} version {self.version}")


def idempotency_soapheaders(element_name: str | None, message: CanonicalMessage) -> dict[str, Any]:
    """zeep's `_soapheaders` argument: a header element `element_name` ("{namespace}name") whose text is the
    message's idempotency key; {} without either. Not in the WSDL, so built as plain XML (zeep copies it in).

    Shared with the bundle preview (`adapters.bundle`), so what is previewed is what is sent.
    """
    key = message.get("idempotency_key")
    if element_name is None or not key:
        return {}
    header = etree.Element(element_name)
    header.text = str(key)
    return {"_soapheaders": [header]}


def _render(mapping: CompiledMapping, message: CanonicalMessage) -> dict[str, Any]:
    try:
        return mapping.render_request(message)
    except MappingError as exc:
        raise UnsendableRequest(str(exc)) from exc


def unsent(exc: BaseException) -> DeliveryError:
    """A failure before the request left: zeep checking our values against the WSDL (a dict where it wants a
    string: TypeError, ValidationError) or lxml refusing a character XML 1.0 cannot carry (ValueError) is the
    message's own; anything else (our signing, a stylesheet's MappingError) is classified as usual."""
    if isinstance(exc, zx.ValidationError | TypeError | ValueError) and not isinstance(exc, MappingError):
        return UnsendableRequest(f"request does not fit the WSDL: {_brief(str(exc))}")
    return classify(exc)


def _read(mapping: CompiledMapping, answer: Any) -> CanonicalResult:
    plain = serialize_object(answer, target_cls=dict)
    try:
        return mapping.read_response(plain if isinstance(plain, dict) else {})
    except (BusinessError, MappingError) as exc:
        raise mapping_failure(exc) from exc


_HOSTILE_OR_MALFORMED = (
    zx.XMLSyntaxError,
    zx.XMLParseError,
    zx.UnexpectedElementError,
    zx.DTDForbidden,
    zx.EntitiesForbidden,
    zx.ExternalReferenceForbidden,
    etree.LxmlError,
)


def classify(exc: BaseException) -> DeliveryError:
    """The `DeliveryError` a failed SOAP exchange stands for (DESIGN.md invariant 4)."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, requests.Timeout):  # before ConnectionError: ConnectTimeout is both
        return DeliveryError(FailureClass.TIMEOUT, f"no answer in time: {_brief(str(exc))}")
    if isinstance(exc, requests.RequestException) and certificate_refused(exc):
        return DeliveryError(FailureClass.AUTH, f"TLS handshake refused a certificate: {_brief(str(exc))}")
    if isinstance(exc, requests.RequestException):
        return DeliveryError(FailureClass.TRANSPORT, f"{type(exc).__name__}: {_brief(str(exc))}")
    if isinstance(exc, zx.Fault):
        return _fault(exc)
    if isinstance(exc, MappingError):  # raised inside zeep by our own plugins, e.g. a refused XSLT document()
        return mapping_failure(exc)
    if isinstance(exc, zx.TransportError):
        return _http_status(exc)
    if isinstance(exc, _HOSTILE_OR_MALFORMED):
        return DeliveryError(FailureClass.VALIDATION, f"answer refused: {type(exc).__name__}: {_brief(str(exc))}")
    if isinstance(exc, zx.ValidationError | TypeError):
        # zeep checks our request against the WSDL before sending: the mapping rendered a bad request.
        return DeliveryError(FailureClass.MAPPING, f"request does not fit the WSDL: {_brief(str(exc))}")
    # Anything else came out of zeep handling an answer it could not make sense of.
    return DeliveryError(FailureClass.VALIDATION, f"unexpected {type(exc).__name__}: {_brief(str(exc))}")


# WS-Security fault codes (a 1.1 faultcode or a 1.2 subcode) meaning "your credentials were refused"
# (FailedCheck: our message signature).
_AUTH_FAULTS = frozenset({"FailedAuthentication", "InvalidSecurityToken", "FailedCheck"})


def _local(code: Any) -> str:
    """ "soap:Server", "{ns}Server", "Server.Busy" or a QName -> "Server"."""
    return str(code).rpartition("}")[2].rpartition(":")[2].partition(".")[0]


def _fault(exc: zx.Fault) -> DeliveryError:
    code = exc.code or ""
    subcodes = [_local(subcode) for subcode in exc.subcodes or ()]
    named = "".join(f" / {subcode}" for subcode in subcodes)
    text = f"SOAP fault {code or '(none)'}{named}: {_brief(str(exc.message))}"
    if _AUTH_FAULTS & {_local(code), *subcodes}:
        return DeliveryError(FailureClass.AUTH, text)
    # "Server" (1.1) or "Receiver" (1.2) mean the sector's side; so does no code at all (an XML
    # answer that is no fault). "Client"/"Sender" and the rest: our request, refused as it stands.
    server_side = _local(code) in ("Server", "Receiver") or not code
    return DeliveryError(FailureClass.SECTOR_FAULT, text, retryable=server_side)


def _http_status(exc: zx.TransportError) -> DeliveryError:
    status = exc.status_code
    if status in (401, 403):
        return DeliveryError(FailureClass.AUTH, f"HTTP {status}: the sector refused our credentials")
    if status == 429 or status >= 500:
        return DeliveryError(FailureClass.SECTOR_FAULT, _brief(exc.message), retryable=True)
    if status >= 400:
        return DeliveryError(FailureClass.SECTOR_FAULT, _brief(exc.message), retryable=False)
    # zeep reports an HTTP 200 whose body is not XML as a TransportError: the answer is malformed.
    # Its message ends with the raw answer, which may carry personal data: keep only the diagnosis.
    diagnosis = exc.message.split("\nContent:")[0]
    return DeliveryError(FailureClass.VALIDATION, f"malformed answer: {_brief(diagnosis)}")
