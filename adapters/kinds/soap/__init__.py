"""The SOAP adapter kind (`SOAP`): sectors reached through their WSDL with zeep, SOAP 1.1 and 1.2.

Its descriptor options: `soap_version` (required), `ws_security` (message signatures, `wssecurity.py`) and
`idempotency.soap_header`; `materials.transport: mtom` is for SOAP bundles only. Auth forms: none, basic,
wsse_username_token (`auth.py`). Service description: a WSDL, checked with the bundle's mappings against the
binding of its `soap_version`. The adapter: `adapter.py`. Imports `adapters.kinds.common`, never another kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zeep.exceptions as zx
from lxml import etree

from adapters.auth import AuthForms
from adapters.contract import Adapter
from adapters.descriptor import Bundle, file_inside
from adapters.kind import (
    BundleCredentials,
    CredentialReferences,
    IdempotencyCarrier,
    KindOnly,
    KindSchema,
    MappingCheck,
    ProblemAt,
)
from adapters.kinds.common import no_check
from adapters.kinds.soap.adapter import SoapAdapter, idempotency_soapheaders
from adapters.kinds.soap.wssecurity import MessageSecurity, WsSecuritySpec
from mappings import CompiledMapping, MappingError
from mappings.positions import load_yaml
from mappings.validate import MappingFile, Problem, TargetError, check_soap, load_wsdl, select_binding
from mappings.xslt import Transform, compile_xslt


@dataclass(frozen=True)
class SoapOptions:
    """A SOAP bundle's own options (`Bundle.options`)."""

    soap_version: str  # "1.1" | "1.2": the WSDL binding to use
    ws_security: WsSecuritySpec | None = None
    idempotency_header: str | None = None  # "{namespace}name" of the SOAP header element carrying the key


_SOAP_HEADER = {
    "type": "object",
    "required": ["namespace", "name"],
    "additionalProperties": False,
    "properties": {
        "namespace": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9+.-]*:\\S+$",
                      "x-message": "{value!r} is not an absolute namespace URI (http://... or urn:...)"},
        "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$",
                 "x-message": "{value!r} is not an XML element name without prefix ([A-Za-z_][A-Za-z0-9_.-]*)"},
    },
}
_WS_SECURITY = {
    "description": "soap only: sign requests (RSA-SHA256, SHA-256 digests, with a Timestamp) and/or verify the"
                   " sector's signed answers.",
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "sign": {"$ref": "#/$defs/certRef"},
        "verify": {"$ref": "#/$defs/certRef"},
        "timestamp_ttl_s": {"type": "integer", "minimum": 1, "maximum": 3600},
    },
    "anyOf": [{"required": ["sign"]}, {"required": ["verify"]}],
    "x-message": "expected sign and/or verify (each cert:NAME), and optionally timestamp_ttl_s",
}


class SoapKind:
    """The SOAP kind (`adapters.kind.AdapterKind`)."""

    name = "soap"
    auth_forms = AuthForms("soap", frozenset({"none", "basic", "wsse_username_token"}))
    schema = KindSchema(
        properties={
            "soap_version": {"enum": ["1.1", "1.2"],
                             "x-message": "expected \"1.1\" or \"1.2\" (quoted), got {value!r}"},
            "ws_security": _WS_SECURITY,
        },
        idempotency=IdempotencyCarrier("soap_header", _SOAP_HEADER, "{{namespace, name}}", "a SOAP header element"),
        then={"required": ["soap_version"], "x-required-message": "required for a soap bundle (\"1.1\" or \"1.2\")"},
    )
    kind_only: tuple[KindOnly, ...] = (
        KindOnly(("soap_version",), "soap bundles only"),
        KindOnly(("idempotency", "soap_header"), "soap bundles only (rest: idempotency.header)"),
        KindOnly(("materials", "transport"), "mtom is for soap bundles only", value="mtom"),
        KindOnly(("ws_security",), "soap bundles only (rest: auth type rsa_signature)"),
    )

    def read_options(self, doc: Mapping[str, Any]) -> SoapOptions:
        header = (doc.get("idempotency") or {}).get("soap_header")
        return SoapOptions(
            soap_version=doc["soap_version"],
            ws_security=WsSecuritySpec.from_descriptor(doc["ws_security"]) if "ws_security" in doc else None,
            idempotency_header=None if header is None else etree.QName(header["namespace"], header["name"]).text,
        )

    def credential_references(self, bundle: Bundle) -> CredentialReferences:
        ws = _options(bundle).ws_security or WsSecuritySpec()
        named = {"ws_security.sign": (ws.sign, False), "ws_security.verify": (ws.verify, True)}
        return {where: (name, trusted) for where, (name, trusted) in named.items() if name is not None}

    def check_service(self, bundle: Bundle, at: ProblemAt) -> tuple[list[Problem], MappingCheck]:
        described = bundle.relative(bundle.service_description)
        try:
            client = load_wsdl(bundle.service_description, bundle.root)
        except TargetError as exc:
            return [at(["service_description"], f"{described}: {exc}")], no_check
        try:
            binding = select_binding(client, _options(bundle).soap_version or "1.1", described)
        except TargetError as exc:
            return [at(["soap_version"], str(exc))], no_check
        return [], lambda mf, expected: check_soap(mf, binding, described, bundle.root)

    def preview(self, bundle: Bundle, mapping: MappingFile, message: Mapping[str, Any],
                endpoint: str) -> dict[str, Any]:
        """{"kind", "operation", "endpoint", "soap_version", "request" (the dict zeep takes), "envelope" (the
        XML, after the mapping's xslt if any)}."""
        options = _options(bundle)
        request = mapping.compiled.render_request(message)
        try:
            client = load_wsdl(bundle.service_description, bundle.root)
            binding = select_binding(client, options.soap_version or "1.1",
                                     bundle.relative(bundle.service_description))
            service = client.create_service(str(binding.name), endpoint)
            headers = idempotency_soapheaders(options.idempotency_header, message)
            envelope = client.create_message(service, mapping.compiled.operation, **request, **headers)
        except (zx.Error, TypeError, TargetError) as exc:
            raise MappingError(f"{mapping.name}: the request does not fit the WSDL: {exc}") from exc
        xslt = mapping.doc.get("xslt")
        if isinstance(xslt, str):
            envelope = compile_xslt(bundle.root / xslt, name=xslt)(envelope)
        return {
            "kind": self.name,
            "operation": mapping.compiled.operation,
            "endpoint": endpoint,
            "soap_version": options.soap_version,
            "request": request,
            "envelope": etree.tostring(envelope, encoding="unicode", pretty_print=True),
        }

    def build(self, bundle: Bundle, mappings: Mapping[str, CompiledMapping], endpoint: str,
              credentials: BundleCredentials) -> Adapter:
        options = _options(bundle)
        return SoapAdapter(bundle.sector, bundle.version, bundle.service_description, endpoint, mappings,
                           bundle.timeout_ms / 1000, soap_version=options.soap_version, auth=bundle.auth,
                           stylesheets=stylesheets(bundle), ssl_context=credentials.ssl_context(bundle.tls),
                           security=_message_security(options.ws_security, credentials),
                           idempotency_header=options.idempotency_header)


def _options(bundle: Bundle) -> SoapOptions:
    if not isinstance(bundle.options, SoapOptions):  # a Bundle of another kind handed to this one
        raise TypeError(f"{bundle.sector}: not a soap bundle ({bundle.kind})")
    return bundle.options


def _message_security(spec: WsSecuritySpec | None, credentials: BundleCredentials) -> MessageSecurity | None:
    if spec is None:
        return None
    return MessageSecurity(credentials.current("ws_security.sign"), credentials.trusted("ws_security.verify"),
                           timestamp_ttl_s=spec.timestamp_ttl_s)


def stylesheets(bundle: Bundle) -> dict[str, Transform]:
    """The `xslt` of each mapping that declares one (name -> sandboxed transform), for the SOAP adapter."""
    found = {}
    for name, (path, _) in bundle.mapping_files().items():
        doc, _positions = load_yaml(path.read_text(encoding="utf-8"))
        xslt = doc.get("xslt") if isinstance(doc, Mapping) else None
        if isinstance(xslt, str) and file_inside(bundle.root, xslt) is not None:
            found[name] = compile_xslt(bundle.root / xslt, name=xslt)
    return found


SOAP = SoapKind()
