"""The SOAP adapter kind: a sector reached through its WSDL with zeep.

One zeep `Client` per adapter (one registered bundle version), built once from the WSDL kept in
the bundle and reused: parsing a WSDL is slow and the file never changes under a version. The
service address is the deployment's endpoint, not the WSDL's `soap:address`.

Every failure of `call` leaves as a classified `DeliveryError` (DESIGN.md invariant 4); see
`classify` for the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
import zeep
import zeep.exceptions as zx
from lxml import etree
from zeep.helpers import serialize_object
from zeep.proxy import ServiceProxy
from zeep.transports import Transport
from zeep.utils import get_media_type

from adapters.contract import CanonicalMessage, CanonicalResult, DeliveryError, FailureClass, Operation
from mappings import BusinessError, CompiledMapping, MappingError

_XML_MEDIA_TYPES = frozenset({"text/xml", "application/soap+xml", "application/xml"})
_BRIEF = 300  # zeep quotes whole answers in its messages; a dead letter needs the gist, not the body


def _brief(text: str) -> str:
    return text if len(text) <= _BRIEF else text[:_BRIEF] + "…"


class _StatusCheckingTransport(Transport):
    """Refuses non-SOAP HTTP errors before zeep parses them.

    zeep parses every answer as XML first, so an HTTP 503 with an HTML page (often with
    `<!DOCTYPE html>`) would surface as a DTD or syntax error and look like a hostile answer.
    Only HTTP 200 and a SOAP 1.1 fault (HTTP 500 with an XML body) go on to zeep.
    """

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        response = super().post(address, message, headers)
        status = response.status_code
        media_type = get_media_type(response.headers.get("Content-Type", "text/xml"))
        if status != 200 and not (status == 500 and media_type in _XML_MEDIA_TYPES):
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


def _settings() -> zeep.Settings:
    # DESIGN.md "known traps": no external references, no DTDs, no entities, no huge trees.
    return zeep.Settings(
        strict=True, forbid_external=True, forbid_dtd=True, forbid_entities=True, xml_huge_tree=False
    )


def _build_client(wsdl_path: Path, timeout_s: float) -> zeep.Client:
    session = requests.Session()
    transport = _StatusCheckingTransport(timeout=timeout_s, operation_timeout=timeout_s, session=session)
    try:
        return zeep.Client(
            wsdl=str(wsdl_path), transport=transport, settings=_settings(), plugins=[_ExpectedBodyCheck()]
        )
    except (zx.Error, etree.LxmlError) as exc:
        raise ValueError(f"{wsdl_path.name}: not a usable WSDL: {_brief(str(exc))}") from exc


def _first_binding(client: zeep.Client) -> Any:
    """The binding of the WSDL's first service port: the one the sector publishes for us."""
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            return port.binding
    raise ValueError("the WSDL declares no service port")


class SoapAdapter:
    """One SOAP sector bundle version, ready to call (implements `adapters.contract.Adapter`)."""

    def __init__(
        self,
        sector: str,
        version: str,
        wsdl_path: Path,
        endpoint: str,
        mappings: Mapping[Operation, CompiledMapping],
        timeout_s: float,
    ) -> None:
        self.sector = sector
        self.version = version
        self.endpoint = endpoint
        self._mappings = dict(mappings)
        self.client = _build_client(Path(wsdl_path), timeout_s)
        binding = _first_binding(self.client)
        missing = sorted(m.operation for m in self._mappings.values() if m.operation not in binding.all())
        if missing:
            raise ValueError(f"{Path(wsdl_path).name}: binding {binding.name} has no operation {missing[0]!r}")
        self.service: ServiceProxy = self.client.create_service(binding.name, endpoint)

    def render(self, operation: Operation, message: CanonicalMessage) -> dict[str, Any]:
        """The request dict zeep serializes for this message; `DeliveryError` (MAPPING) if it cannot be built."""
        return _render(self._mapping(operation), message)

    def call(self, operation: Operation, message: CanonicalMessage) -> CanonicalResult:
        mapping = self._mapping(operation)
        request = _render(mapping, message)
        try:
            answer = getattr(self.service, mapping.operation)(**request)
        except Exception as exc:  # the contract: nothing raw escapes; classify() knows every kind we expect
            raise classify(exc) from exc
        return _read(mapping, answer)

    def _mapping(self, operation: Operation) -> CompiledMapping:
        try:
            return self._mappings[operation]
        except KeyError:
            text = f"{self.sector} version {self.version} has no mapping for {operation}"
            raise DeliveryError(FailureClass.MAPPING, text) from None


def _render(mapping: CompiledMapping, message: CanonicalMessage) -> dict[str, Any]:
    try:
        return mapping.render_request(message)
    except MappingError as exc:
        raise DeliveryError(FailureClass.MAPPING, str(exc)) from exc


def _read(mapping: CompiledMapping, answer: Any) -> CanonicalResult:
    plain = serialize_object(answer, target_cls=dict)
    try:
        return mapping.read_response(plain if isinstance(plain, dict) else {})
    except BusinessError as exc:
        # A business refusal is the sector's considered answer: asking again gets the same one.
        raise DeliveryError(FailureClass.SECTOR_FAULT, f"business error {exc}", retryable=False) from exc
    except MappingError as exc:
        raise DeliveryError(FailureClass.MAPPING, str(exc)) from exc


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
    if isinstance(exc, requests.RequestException):
        return DeliveryError(FailureClass.TRANSPORT, f"{type(exc).__name__}: {_brief(str(exc))}")
    if isinstance(exc, zx.Fault):
        return _fault(exc)
    if isinstance(exc, zx.TransportError):
        return _http_status(exc)
    if isinstance(exc, _HOSTILE_OR_MALFORMED):
        return DeliveryError(FailureClass.VALIDATION, f"answer refused: {type(exc).__name__}: {_brief(str(exc))}")
    if isinstance(exc, zx.ValidationError | TypeError):
        # zeep checks our request against the WSDL before sending: the mapping rendered a bad request.
        return DeliveryError(FailureClass.MAPPING, f"request does not fit the WSDL: {_brief(str(exc))}")
    # Anything else came out of zeep handling an answer it could not make sense of.
    return DeliveryError(FailureClass.VALIDATION, f"unexpected {type(exc).__name__}: {_brief(str(exc))}")


def _fault(exc: zx.Fault) -> DeliveryError:
    code = exc.code or ""
    # "soap:Server", "{ns}Server", "Server.Busy" (1.1) or "Receiver" (1.2) all mean "the sector's side".
    local = code.rpartition("}")[2].rpartition(":")[2].partition(".")[0]
    # No code at all: an HTTP 500 with XML that is no fault; the sector's side too.
    server_side = local in ("Server", "Receiver") or not code
    text = f"SOAP fault {code or '(none)'}: {_brief(str(exc.message))}"
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
