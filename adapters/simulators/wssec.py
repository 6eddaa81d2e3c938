"""WS-Security signatures as a sector's SOAP stack applies them: requests must be signed by a client
certificate the sector knows; answers are signed with the sector's own key.

Written against xmlsec directly (stdlib + lxml + xmlsec, nothing of the gateway), so the simulator checks
the gateway's signatures independently of the code that makes them. Both directions use RSA-SHA256,
SHA-256 digests and exclusive C14N over the Body and a wsu:Timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import xmlsec
from lxml import etree

__all__ = ["DS_NS", "SIGNATURE_FAULT_MODES", "WSSE_NS", "WSU_NS", "MessageSigning", "request_problem", "seal"]

WSSE_NS: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
_NS: Final = {"wsse": WSSE_NS, "wsu": WSU_NS, "ds": DS_NS}
_ID: Final = f"{{{WSU_NS}}}Id"
# What a request's signature must use; anything else (SHA-1 above all) is refused.
# xmlsec.constants.* are the objects xmlsec.Transform.* and xmlsec.KeyFormat.* name at run time, under the names
# its stubs type.
_C14N: Final = xmlsec.constants.TransformExclC14N
_RSA_SHA256: Final = xmlsec.constants.TransformRsaSha256
_SHA256: Final = xmlsec.constants.TransformSha256
_PEM: Final = xmlsec.constants.KeyDataFormatPem
_CERT_PEM: Final = xmlsec.constants.KeyDataFormatCertPem
REQUIRED_ALGORITHMS: Final = frozenset({_RSA_SHA256.href, _SHA256.href})
# Misbehaviour of a signing sector (the fault switch): an answer without signature, one altered after
# signing, and one whose Timestamp expired long ago.
SIGNATURE_FAULT_MODES: Final = frozenset({"unsigned", "tampered", "stale_timestamp"})


@dataclass(frozen=True)
class MessageSigning:
    """``trusted``: client certificates (PEM) one of which must sign every request (none: not checked);
    ``key_pem``/``certificate_pem``: the sector's own, signing every answer (None: answers unsigned)."""

    trusted: tuple[bytes, ...] = ()
    key_pem: bytes | None = None
    certificate_pem: bytes | None = None
    ttl: timedelta = timedelta(minutes=5)


def seal(envelope: etree._Element, signing: MessageSigning, mode: str | None = None) -> None:
    """Sign ``envelope`` in place (Body + a fresh Timestamp), misbehaving as ``mode`` says."""
    if signing.key_pem is None or signing.certificate_pem is None or mode == "unsigned":
        return
    soap_ns = etree.QName(envelope).namespace
    body = envelope.find(f"{{{soap_ns}}}Body")
    if body is None:  # the simulator seals only envelopes it built, which always have one
        raise ValueError("an envelope without a Body cannot be sealed")
    header = envelope.find(f"{{{soap_ns}}}Header")
    if header is None:
        header = etree.Element(f"{{{soap_ns}}}Header")
        envelope.insert(0, header)
    security = etree.SubElement(header, f"{{{WSSE_NS}}}Security", nsmap={"wsse": WSSE_NS, "wsu": WSU_NS})
    created = datetime.now(UTC) - (signing.ttl * 4 if mode == "stale_timestamp" else timedelta())
    timestamp = etree.SubElement(security, f"{{{WSU_NS}}}Timestamp", {_ID: "TS-1"})
    etree.SubElement(timestamp, f"{{{WSU_NS}}}Created").text = _zulu(created)
    etree.SubElement(timestamp, f"{{{WSU_NS}}}Expires").text = _zulu(created + signing.ttl)
    body.set(_ID, "Body-1")
    signature = xmlsec.template.create(envelope, _C14N, _RSA_SHA256)
    security.insert(0, signature)
    context = xmlsec.SignatureContext()
    for node in (body, timestamp):
        reference = xmlsec.template.add_reference(signature, _SHA256, uri=f"#{node.get(_ID)}")
        xmlsec.template.add_transform(reference, _C14N)
        context.register_id(node, "Id", WSU_NS)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    key = xmlsec.Key.from_memory(signing.key_pem, _PEM, None)
    key.load_cert_from_memory(signing.certificate_pem, _PEM)
    context.key = key
    context.sign(signature)
    if mode == "tampered":  # the payload's first text changed after signing
        leaf = next(e for e in body.iter() if isinstance(e.tag, str) and e.text and e.text.strip())
        leaf.text = f"{leaf.text}篡改"


def _zulu(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def request_problem(envelope: etree._Element, trusted: tuple[bytes, ...]) -> str | None:
    """Why a request's signature is not accepted (None: accepted): for the log, never for the client."""
    soap_ns = etree.QName(envelope).namespace
    signature = envelope.find(f"{{{soap_ns}}}Header/wsse:Security/ds:Signature", _NS)
    if signature is None:
        return "no signature"
    used = {e.get("Algorithm") for e in signature.iter(f"{{{DS_NS}}}SignatureMethod", f"{{{DS_NS}}}DigestMethod")}
    if used != REQUIRED_ALGORITHMS:
        return f"algorithms {sorted(map(str, used))}, expected RSA-SHA256 with SHA-256 digests"
    covered = {r.get("URI") for r in signature.iterfind("ds:SignedInfo/ds:Reference", _NS)}
    body = envelope.find(f"{{{soap_ns}}}Body")
    timestamp = envelope.find(f"{{{soap_ns}}}Header/wsse:Security/wsu:Timestamp", _NS)
    if body is None or timestamp is None or {f"#{body.get(_ID)}", f"#{timestamp.get(_ID)}"} - covered:
        return "Body and Timestamp not both signed"
    expires = datetime.fromisoformat(timestamp.findtext("wsu:Expires", "", _NS) or "1970-01-01T00:00:00Z")
    if expires < datetime.now(UTC):
        return "Timestamp expired"
    for certificate in trusted:
        context = xmlsec.SignatureContext()
        for node in (body, timestamp):
            context.register_id(node, "Id", WSU_NS)
        context.key = xmlsec.Key.from_memory(certificate, _CERT_PEM, None)
        try:
            context.verify(signature)
            return None
        except xmlsec.Error:
            continue
    return "signature does not verify with any known client certificate"
