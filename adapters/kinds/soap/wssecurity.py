"""WS-Security message signatures for SOAP bundles (`ws_security` in the descriptor, BUNDLE-FORMAT.md).

Outgoing: a wsu:Timestamp (Created, Expires = Created + `timestamp_ttl_s`) and an XML signature over the SOAP
Body and that Timestamp with our key — RSA-SHA256, SHA-256 digests, exclusive C14N. zeep's signer would pick
SHA-1 if not told otherwise (DESIGN.md, known traps), so the algorithms are passed explicitly.

Incoming: the sector's answer must carry one signature, made with one of the sector's certificates the store
trusts under the `verify` name (the current one, or one still in its rotation overlap — never ours), over the
Body actually in the envelope and a Timestamp that has not expired, with SHA-256 or stronger throughout. zeep's
own `verify` checks only that the signature is mathematically valid; it does not check *what* was signed, so a
signature over a Timestamp alone, or over a copy of the Body moved elsewhere (signature wrapping), would pass.
Anything short of that is refused as `SignatureRefused` (VALIDATION: the answer is not to be believed, asking
again will not change it). An unsigned SOAP Fault is let through: a fault is a refusal we only report or retry,
never an effect we record, and proxies in front of a sector cannot sign.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import xmlsec
from lxml import etree
from zeep import ns
from zeep.wsse.signature import MemorySignature
from zeep.wsse.utils import WSU, get_security_header

from adapters.contract import DeliveryError, FailureClass
from certstore.credentials import Credential, reference_name

# xmlsec.constants.* are the objects xmlsec.Transform.* and xmlsec.KeyFormat.* name at run time, under the names
# its stubs type.
_ALGORITHMS = xmlsec.constants
SIGNATURE_METHOD = _ALGORITHMS.TransformRsaSha256
DIGEST_METHOD = _ALGORITHMS.TransformSha256
# What we accept from a sector: RSA with SHA-2, never SHA-1.
ACCEPTED_SIGNATURES = frozenset(
    t.href for t in (_ALGORITHMS.TransformRsaSha256, _ALGORITHMS.TransformRsaSha384, _ALGORITHMS.TransformRsaSha512)
)
ACCEPTED_DIGESTS = frozenset(
    t.href for t in (_ALGORITHMS.TransformSha256, _ALGORITHMS.TransformSha384, _ALGORITHMS.TransformSha512)
)
_EXCL_C14N = _ALGORITHMS.TransformExclC14N.href
CLOCK_SKEW = timedelta(seconds=60)  # between our clock and the sector's
DEFAULT_TTL_S = 300
_NS = {"ds": ns.DS, "wsse": ns.WSSE, "wsu": ns.WSU}
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"


@dataclass(frozen=True)
class WsSecuritySpec:
    """The descriptor's `ws_security`: credential names (from `cert:NAME`), resolved when an adapter is built."""

    sign: str | None = None  # our key and certificate: sign every request
    verify: str | None = None  # the sector's certificates: every answer must be signed by one of them
    timestamp_ttl_s: int = DEFAULT_TTL_S

    @classmethod
    def from_descriptor(cls, spec: Mapping[str, Any]) -> WsSecuritySpec:
        """From a `ws_security` mapping the schema has checked (so references are well formed)."""
        def name(key: str) -> str | None:
            return reference_name(spec[key]) if key in spec else None

        return cls(name("sign"), name("verify"), spec.get("timestamp_ttl_s", DEFAULT_TTL_S))


class SignatureRefused(DeliveryError):
    """A sector's answer whose signature we do not accept; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureClass.VALIDATION, f"answer signature refused: {message}", retryable=False)


class MessageSecurity:
    """zeep's WS-Security hook (`apply` on requests, `verify` on answers) for one set of credentials.

    Built per credential version: a rotated key or a new sector certificate gives a new adapter
    (`adapters.registry`), so nothing here is looked up per message.
    """

    def __init__(self, signing: Credential | None, verifying: Sequence[Credential], *,
                 timestamp_ttl_s: int = DEFAULT_TTL_S, clock: Callable[[], float] = time.time) -> None:
        if signing is not None and signing.private_key_pem is None:
            raise ValueError(f"ws_security.sign: credential {signing.name!r} has no private key to sign with")
        self._signer = None if signing is None else MemorySignature(
            signing.private_key_pem, signing.certificate_pem,
            signature_method=SIGNATURE_METHOD, digest_method=DIGEST_METHOD,
        )
        self._verifying = tuple(verifying)
        self._ttl = timedelta(seconds=timestamp_ttl_s)
        self._clock = clock

    def apply(self, envelope: etree._Element, headers: Any) -> tuple[etree._Element, Any]:
        if self._signer is None:
            return envelope, headers
        created = datetime.fromtimestamp(self._clock(), UTC).replace(microsecond=0)
        timestamp = WSU.Timestamp(WSU.Created(_zulu(created)), WSU.Expires(_zulu(created + self._ttl)))
        get_security_header(envelope).append(timestamp)
        # zeep signs the Body and, being present in the Security header, the Timestamp.
        signed: tuple[etree._Element, Any] = self._signer.apply(envelope, headers)  # zeep leaves it unannotated
        return signed

    def verify(self, envelope: etree._Element) -> etree._Element:
        if self._verifying:
            verify_envelope(envelope, self._verifying, now=datetime.fromtimestamp(self._clock(), UTC))
        return envelope


def _zulu(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def verify_envelope(envelope: etree._Element, trusted: Sequence[Credential], *, now: datetime) -> None:
    """Accept an answer signed as the module docstring says, or raise `SignatureRefused`."""
    soap_ns = etree.QName(envelope).namespace
    body = envelope.find(f"{{{soap_ns}}}Body")
    security = envelope.find(f"{{{soap_ns}}}Header/wsse:Security", _NS)
    if security is None:
        if body is not None and body.find(f"{{{soap_ns}}}Fault") is not None:
            return  # see the module docstring: an unsigned fault is reported, never believed
        raise SignatureRefused("the answer is not signed (no wsse:Security header)")
    signatures = security.findall("ds:Signature", _NS)
    if len(signatures) != 1:
        raise SignatureRefused(f"expected one ds:Signature in wsse:Security, found {len(signatures)}")
    signature = signatures[0]
    method = signature.find("ds:SignedInfo/ds:SignatureMethod", _NS)
    algorithm = None if method is None else method.get("Algorithm")
    if algorithm not in ACCEPTED_SIGNATURES:
        raise SignatureRefused(f"signature algorithm {algorithm} is not accepted (RSA with SHA-256 or stronger)")
    signed = _signed_elements(envelope, signature)
    if body is None or not any(element is body for element in signed.values()):
        raise SignatureRefused("the SOAP Body is not signed")
    timestamp = security.find("wsu:Timestamp", _NS)
    if timestamp is None or not any(element is timestamp for element in signed.values()):
        raise SignatureRefused("no signed wsu:Timestamp")
    _check_timestamp(timestamp, now)
    if not any(_verifies(signature, signed, credential) for credential in trusted):
        names = ", ".join(sorted({c.name for c in trusted}))
        raise SignatureRefused(f"the signature does not verify with the sector's certificate(s) {names}")


def _signed_elements(envelope: etree._Element, signature: etree._Element) -> dict[str, etree._Element]:
    """wsu:Id -> the one element each Reference points at, its digest and transforms checked."""
    if envelope.xpath("//@xml:id"):
        # libxml2 resolves xml:id by itself: a second identity an attacker could give a forged element.
        raise SignatureRefused("xml:id attributes are not accepted in a signed answer")
    signed: dict[str, etree._Element] = {}
    for reference in signature.findall("ds:SignedInfo/ds:Reference", _NS):
        uri = reference.get("URI") or ""
        digest = reference.find("ds:DigestMethod", _NS)
        digest_algorithm = None if digest is None else digest.get("Algorithm")
        if digest_algorithm not in ACCEPTED_DIGESTS:
            raise SignatureRefused(f"digest algorithm {digest_algorithm} is not accepted (SHA-256 or stronger)")
        transforms = [t.get("Algorithm") for t in reference.findall("ds:Transforms/ds:Transform", _NS)]
        if any(t != _EXCL_C14N for t in transforms):
            raise SignatureRefused("only exclusive C14N transforms are accepted in a reference")
        if not uri.startswith("#") or len(uri) < 2:
            raise SignatureRefused(f"reference {uri!r} does not name an element of the answer")
        targets = envelope.xpath("//*[@wsu:Id=$id]", id=uri[1:], namespaces=_NS)
        if len(targets) != 1:
            raise SignatureRefused(f"reference {uri!r} names {len(targets)} elements, expected exactly one")
        signed[uri[1:]] = targets[0]
    return signed


def _check_timestamp(timestamp: etree._Element, now: datetime) -> None:
    try:
        created = _instant(timestamp.findtext("wsu:Created", namespaces=_NS))
        expires_text = timestamp.findtext("wsu:Expires", namespaces=_NS)
        expires = _instant(expires_text) if expires_text else created + timedelta(seconds=DEFAULT_TTL_S)
    except ValueError as exc:
        raise SignatureRefused(f"unreadable wsu:Timestamp: {exc}") from None
    if created > now + CLOCK_SKEW:
        raise SignatureRefused(f"the wsu:Timestamp is created in the future ({_zulu(created)})")
    if expires < now - CLOCK_SKEW:
        raise SignatureRefused(f"the wsu:Timestamp expired at {_zulu(expires)}")


def _instant(text: str | None) -> datetime:
    if not text:
        raise ValueError("no Created")
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # no offset: UTC, as WSS says


def _verifies(signature: etree._Element, signed: Mapping[str, etree._Element], credential: Credential) -> bool:
    context = xmlsec.SignatureContext()
    for element in signed.values():
        context.register_id(element, "Id", ns.WSU)
    try:
        context.key = xmlsec.Key.from_memory(credential.certificate_pem, _ALGORITHMS.KeyDataFormatCertPem, None)
        context.verify(signature)
    except xmlsec.Error:
        return False
    return True
