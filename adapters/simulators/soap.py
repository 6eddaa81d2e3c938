"""The SOAP half of the simulators: envelopes and faults of SOAP 1.1 and 1.2, the WSDL served at
``?wsdl`` with the real address, hardened parsing, document/literal dispatch on the Body's first
element (never on SOAPAction, which clients get wrong), and the canned fault answers.

社保 speaks SOAP 1.1 and 民政 SOAP 1.2; the differences live in a ``SoapVersion`` value so the
two simulators share one pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar, Final, Self

from lxml import etree

from adapters.simulators.base import (
    COMMON_FAULT_MODES,
    RETRY_AFTER,
    Reply,
    Request,
    Route,
    SimulatorBase,
    XmlRejected,
    billion_laughs,
    hardened_parser,
    parse_xml,
    text_reply,
)
from adapters.simulators.wssec import SIGNATURE_FAULT_MODES, WSSE_NS, MessageSigning, request_problem, seal

log = logging.getLogger(__name__)

__all__ = ["SOAP11", "SOAP12", "Fields", "SoapContract", "SoapFault", "SoapSimulator", "SoapVersion"]

XML_NS: Final = "http://www.w3.org/XML/1998/namespace"
_PLACEHOLDER: Final = "\u2603LOL\u2603"  # where the hostile answer references its entity

Fields = Sequence[tuple[str, "FieldValue"]]
FieldValue = str | None | Fields
"""A response field: text, None (omitted), or a sequence of child fields (nested element)."""


class SoapFault(Exception):
    """The request cannot be processed as sent. ``kind``: sender | receiver | version;
    ``subcode``: a (namespace, localname) for SOAP 1.2's Subcode (1.1 has none)."""

    def __init__(self, kind: str, message: str, subcode: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.subcode = subcode


@dataclass(frozen=True)
class SoapVersion:
    """What differs between SOAP 1.1 and 1.2 for a server."""

    envelope_ns: str
    content_type: str
    wsdl_binding_ns: str  # where soap:address lives in the WSDL
    fault_codes: dict[str, str]  # kind -> faultcode / Code Value
    sender_status: int  # SOAP 1.1 answers every fault with 500; 1.2's HTTP binding gives Sender 400

    def new_envelope(self) -> tuple[etree._Element, etree._Element]:
        """An empty envelope and its Body, with the ``soap`` prefix the fault codes use."""
        envelope = etree.Element(f"{{{self.envelope_ns}}}Envelope", nsmap={"soap": self.envelope_ns})
        return envelope, etree.SubElement(envelope, f"{{{self.envelope_ns}}}Body")

    def fault(self, fault: SoapFault) -> Reply:
        envelope, body = self.new_envelope()
        if self is SOAP11:
            _fault11(body, self.fault_codes[fault.kind], fault)
        else:
            _fault12(body, self.envelope_ns, self.fault_codes[fault.kind], fault)
        status = self.sender_status if fault.kind == "sender" else HTTPStatus.INTERNAL_SERVER_ERROR
        return Reply(status, self.content_type, serialize(envelope))


def _fault11(body: etree._Element, code: str, fault: SoapFault) -> None:
    element = etree.SubElement(body, f"{{{SOAP11.envelope_ns}}}Fault")
    if fault.subcode is None:
        etree.SubElement(element, "faultcode").text = code
    else:  # SOAP 1.1 has no subcodes: WS-Security puts its own QName (wsse:FailedCheck) in faultcode
        sub_ns, sub_name = fault.subcode
        etree.SubElement(element, "faultcode", nsmap={"wsse": sub_ns}).text = f"wsse:{sub_name}"
    etree.SubElement(element, "faultstring").text = fault.message


def _fault12(body: etree._Element, ns: str, code: str, fault: SoapFault) -> None:
    element = etree.SubElement(body, f"{{{ns}}}Fault")
    code_element = etree.SubElement(element, f"{{{ns}}}Code")
    etree.SubElement(code_element, f"{{{ns}}}Value").text = code
    if fault.subcode is not None:
        sub_ns, sub_name = fault.subcode
        subcode = etree.SubElement(code_element, f"{{{ns}}}Subcode")
        # The subcode is a QName in text: declare its prefix right there so readers resolve it.
        etree.SubElement(subcode, f"{{{ns}}}Value", nsmap={"wsse": sub_ns}).text = f"wsse:{sub_name}"
    reason = etree.SubElement(element, f"{{{ns}}}Reason")
    text = etree.SubElement(reason, f"{{{ns}}}Text")
    text.set(f"{{{XML_NS}}}lang", "zh-CN")
    text.text = fault.message


# (envelope namespace, Content-Type, WSDL binding namespace, fault codes, HTTP status of a sender fault)
SOAP11: Final = SoapVersion(
    "http://schemas.xmlsoap.org/soap/envelope/", "text/xml; charset=utf-8", "http://schemas.xmlsoap.org/wsdl/soap/",
    {"sender": "soap:Client", "receiver": "soap:Server", "version": "soap:VersionMismatch"},
    HTTPStatus.INTERNAL_SERVER_ERROR,
)
SOAP12: Final = SoapVersion(
    "http://www.w3.org/2003/05/soap-envelope", "application/soap+xml; charset=utf-8", "http://schemas.xmlsoap.org/wsdl/soap12/",
    {"sender": "soap:Sender", "receiver": "soap:Receiver", "version": "soap:VersionMismatch"}, HTTPStatus.BAD_REQUEST,
)


def serialize(element: etree._Element) -> bytes:
    """UTF-8 with a declaration, matching the Content-Type we send."""
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")


def render_wsdl(wsdl_file: Path, binding_ns: str, location: str) -> bytes:
    """The published WSDL with its address pointing at where this instance really listens."""
    tree = etree.parse(str(wsdl_file), hardened_parser())
    for address in tree.iter(f"{{{binding_ns}}}address"):
        address.set("location", location)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class SoapContract:
    """What a SOAP sector publishes: its SOAP version, namespace, endpoint path and WSDL; plus
    the success answer the "malformed"/"hostile" faults imitate (element name, fields) and the
    text of its "fault" mode."""

    version: SoapVersion
    tns: str
    endpoint_path: str
    wsdl_file: Path
    sample_response: tuple[str, tuple[tuple[str, str], ...]]
    server_error: str


class SoapSimulator(SimulatorBase):
    """A document/literal SOAP service on one endpoint path, with its WSDL at ``?wsdl``.

    Subclasses set ``contract`` and implement ``_operations``; ``_check_headers`` is the hook
    for WS-Security. ``client_faults`` counts requests refused before their operation ran.
    ``use_signing`` makes it demand signed requests and/or sign its answers (``adapters.simulators.wssec``);
    ``last_request`` is the last envelope received, as it came over the wire.
    """

    contract: ClassVar[SoapContract]
    extra_counters: ClassVar[tuple[str, ...]] = ("client_faults",)
    fault_modes: ClassVar[frozenset[str]] = COMMON_FAULT_MODES | SIGNATURE_FAULT_MODES

    _wsdl = b""
    _signing = MessageSigning()
    last_request = b""

    def use_signing(self, signing: MessageSigning) -> Self:
        """Check request signatures against ``signing.trusted`` and sign answers with its key (also
        while running: a sector rotating its signing certificate)."""
        self._signing = signing
        return self

    @property
    def soap(self) -> SoapVersion:
        return self.contract.version

    @property
    def tns(self) -> str:
        return self.contract.tns

    @property
    def url(self) -> str:
        """The SOAP endpoint, e.g. http://127.0.0.1:54321/shebao/case."""
        return f"{self.base_url}{self.contract.endpoint_path}"

    @property
    def wsdl_url(self) -> str:
        """Where the WSDL (with this instance's address in it) is served."""
        return f"{self.url}?wsdl"

    @property
    def description_url(self) -> str:
        return self.wsdl_url

    def _on_started(self) -> None:
        self._wsdl = render_wsdl(self.contract.wsdl_file, self.soap.wsdl_binding_ns, self.url)

    # ----- routing

    def _route(self, method: str, path: str, query: str) -> Route | Reply:
        """POST an envelope to the endpoint; GET ?wsdl for the contract; nothing else."""
        if path != self.contract.endpoint_path:
            return text_reply(HTTPStatus.NOT_FOUND, "not found")
        if method == "POST":
            return Route(self._handle_soap)
        if method == "GET" and query.lower() == "wsdl":
            return Reply(HTTPStatus.OK, SOAP11.content_type, self._wsdl)
        hint = "SOAP endpoint: POST an envelope, or GET ?wsdl"
        return text_reply(HTTPStatus.METHOD_NOT_ALLOWED, hint, (("Allow", "POST"),))

    def _operations(self) -> dict[str, Callable[[etree._Element], Reply]]:
        """Request element local name -> handler."""
        raise NotImplementedError

    def _check_headers(self, envelope: etree._Element) -> None:
        """Hook: raise SoapFault if the Header does not satisfy the service (WS-Security)."""

    def _handle_soap(self, request: Request) -> Reply:
        """Parse hardened, check the envelope and its headers, dispatch on the Body's first element."""
        self.last_request = request.body
        try:
            envelope = self._parse_envelope(request.body)
            self._check_headers(envelope)
            self._check_signature(envelope)
            operation = self._operation_element(envelope)
            name = etree.QName(operation)
            handler = self._operations().get(name.localname)
            if handler is None or name.namespace != self.tns:
                raise SoapFault("sender", f"未知操作：{name.text}")
        except SoapFault as exc:
            self._counters.bump("client_faults")
            return self.soap.fault(exc)
        return handler(operation)

    def _check_signature(self, envelope: etree._Element) -> None:
        if not self._signing.trusted:
            return
        problem = request_problem(envelope, self._signing.trusted)
        if problem is not None:
            log.debug("%s simulator refused a signature: %s", self.label, problem)
            self._counters.bump("auth_failures")
            raise SoapFault("sender", "消息签名验证失败", subcode=(WSSE_NS, "FailedCheck"))

    def _parse_envelope(self, body: bytes) -> etree._Element:
        try:
            root = parse_xml(body)
        except XmlRejected as exc:
            raise SoapFault("sender", str(exc)) from exc
        qname = etree.QName(root)
        if qname.localname != "Envelope":
            raise SoapFault("sender", "请求报文不是SOAP信封")
        if qname.namespace != self.soap.envelope_ns:
            raise SoapFault("version", f"不支持的SOAP信封版本：{qname.namespace}")
        return root

    def _operation_element(self, envelope: etree._Element) -> etree._Element:
        soap_body = envelope.find(f"{{{self.soap.envelope_ns}}}Body")
        if soap_body is None:
            raise SoapFault("sender", "SOAP信封缺少Body")
        operation = next((child for child in soap_body if isinstance(child.tag, str)), None)
        if operation is None:
            raise SoapFault("sender", "SOAP Body为空，无法识别操作")
        return operation

    # ----- reading and writing fields

    def _read(self, element: etree._Element, lists: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Flatten the element's qualified children into a dict: leaves become stripped text,
        children with children nested dicts, and those named in ``lists`` lists of dicts.

        Children outside the target namespace are ignored on purpose: the WSDLs say
        elementFormDefault="qualified", so an unqualified field is a caller bug that should
        surface as a missing-field error rather than be silently accepted.
        """
        fields: dict[str, Any] = {}
        for child in self._children(element):
            name = etree.QName(child).localname
            if name in lists:
                fields[name] = [self._read(item, lists) for item in self._children(child)]
            elif self._children(child):
                fields[name] = self._read(child, lists)
            else:
                fields[name] = (child.text or "").strip()
        return fields

    def _children(self, element: etree._Element) -> list[etree._Element]:
        """Element children in the target namespace (skips comments, PIs and foreign elements)."""
        return [c for c in element if isinstance(c.tag, str) and etree.QName(c).namespace == self.tns]

    def _response_document(self, name: str, fields: Fields) -> etree._Element:
        envelope, soap_body = self.soap.new_envelope()
        payload = etree.SubElement(soap_body, f"{{{self.tns}}}{name}", nsmap={"tns": self.tns})
        self._append(payload, fields)
        return envelope

    def _append(self, parent: etree._Element, fields: Fields) -> None:
        """Fields in order (the WSDL's sequence order); None values are omitted."""
        for name, value in fields:
            if value is None:
                continue
            child = etree.SubElement(parent, f"{{{self.tns}}}{name}")
            if isinstance(value, str):
                child.text = value
            else:
                self._append(child, value)

    def _respond(self, name: str, fields: Fields) -> Reply:
        """A document/literal response element in the WSDL's namespace, signed when so configured."""
        document = self._response_document(name, fields)
        plan = self._faults.take(SIGNATURE_FAULT_MODES) if self._signing.key_pem else None
        seal(document, self._signing, plan.mode if plan else None)
        return Reply(HTTPStatus.OK, self.soap.content_type, serialize(document))

    # ----- canned misbehaviour

    def _injected_reply(self, mode: str) -> Reply:
        if mode == "fault":
            return self.soap.fault(SoapFault("receiver", self.contract.server_error))
        if mode == "rate_limit":  # the API gateway in front answers, not the SOAP stack
            return text_reply(HTTPStatus.TOO_MANY_REQUESTS, "Too Many Requests", RETRY_AFTER)
        name, fields = self.contract.sample_response
        if mode == "malformed":  # any proper prefix of the document leaves the root unclosed
            document = serialize(self._response_document(name, fields))
            return Reply(HTTPStatus.OK, self.soap.content_type, document[: len(document) * 2 // 3])
        if mode == "hostile":
            bomb = tuple((field, _PLACEHOLDER) for field, _ in fields)
            text = serialize(self._response_document(name, bomb)).decode("utf-8")
            return Reply(HTTPStatus.OK, self.soap.content_type, billion_laughs(text, "soap:Envelope", _PLACEHOLDER))
        raise ValueError(f"no canned reply for fault mode {mode!r}")

    def _internal_error(self) -> Reply:
        return self.soap.fault(SoapFault("receiver", "业务系统处理异常"))
