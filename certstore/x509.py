"""X.509 for the certificate store: read PEM and PKCS#12, describe certificates, make keys and CSRs.

Everything here is pure: bytes in, objects or bytes out, no storage. Bad input raises `CertificateError`
with a message a person can act on (it never repeats key material or a password).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from certstore.algorithms import digest

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KEY_ALGORITHMS = ("rsa-2048", "rsa-3072", "ec-p256")


class CertificateError(ValueError):
    """Input that is not a usable certificate, key or PKCS#12 file (or does not open with its password)."""


@dataclass(frozen=True)
class CertificateFacts:
    """What a person checks about a certificate: who, by whom, when, and its fingerprints."""

    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    sha256: str  # of the DER, hex: what tools such as openssl show
    sm3: str  # the same with SM3 (GB/T 32905), for deployments under the national algorithms
    public_key_sha256: str  # of the SubjectPublicKeyInfo: how a signed certificate finds its pending key


@dataclass(frozen=True)
class Subject:
    """The subject of a CSR for a sector's onboarding. C defaults to CN; SANs are DNS names or IP addresses."""

    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    country: str = "CN"
    sans: tuple[str, ...] = ()

    def name(self) -> x509.Name:
        parts = [(NameOID.COUNTRY_NAME, self.country), (NameOID.ORGANIZATION_NAME, self.organization),
                 (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
                 (NameOID.COMMON_NAME, self.common_name)]
        try:
            return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts if value])
        except ValueError as exc:  # e.g. a country that is not two letters
            raise CertificateError(f"invalid subject: {exc}") from exc


def facts(certificate: x509.Certificate) -> CertificateFacts:
    der = certificate.public_bytes(serialization.Encoding.DER)
    return CertificateFacts(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        sha256=digest("sha256").digest(der).hex(),
        sm3=digest("sm3").digest(der).hex(),
        public_key_sha256=public_key_fingerprint(certificate.public_key()),
    )


def public_key_fingerprint(public_key: PublicKeyTypes) -> str:
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


# --- reading ------------------------------------------------------------------------------------------


def read_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM text, in order (leaf first, then its chain)."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        certificates = []
    if not certificates:
        raise CertificateError("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")
    return certificates


def read_private_key(pem: bytes, password: bytes | None = None) -> PrivateKey:
    """A PEM private key (PKCS#8, PKCS#1 or SEC1; encrypted ones need `password`)."""
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError as exc:  # a password for a plain key, or none for an encrypted one
        raise CertificateError("the private key is encrypted: give its password" if password is None
                               else "the private key is not encrypted: give no password") from exc
    except ValueError as exc:
        raise CertificateError("the private key could not be read (not PEM, or a wrong password)") from exc
    return _supported(key)


def read_pkcs12(data: bytes, password: bytes | None) -> tuple[PrivateKey | None, list[x509.Certificate]]:
    """A PKCS#12 (.p12/.pfx) file: its key and its certificates, leaf first."""
    try:
        key, leaf, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        raise CertificateError("the PKCS#12 file does not open: a wrong password, or not PKCS#12") from exc
    if leaf is None:
        raise CertificateError("the PKCS#12 file holds no certificate")
    return (_supported(key) if key is not None else None), [leaf, *extra]


def _supported(key: object) -> PrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError(f"unsupported key type {type(key).__name__}: RSA or EC keys only")
    return key


def check_pair(certificate: x509.Certificate, key: PrivateKey) -> None:
    if public_key_fingerprint(key.public_key()) != public_key_fingerprint(certificate.public_key()):
        raise CertificateError("the private key does not belong to the certificate (their public keys differ)")


# --- the private key at rest ------------------------------------------------------------------------


def key_to_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER: what the store seals into an envelope (and nothing else ever sees)."""
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def der_to_pem(der: bytes) -> bytes:
    key = serialization.load_der_private_key(der, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def to_pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


# --- onboarding: a new key and its CSR ------------------------------------------------------------------


def generate_key(algorithm: str) -> PrivateKey:
    if algorithm == "rsa-2048":
        return rsa.generate_private_key(65537, 2048)
    if algorithm == "rsa-3072":
        return rsa.generate_private_key(65537, 3072)
    if algorithm == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise CertificateError(f"unknown key algorithm {algorithm!r}; choose one of {', '.join(KEY_ALGORITHMS)}")


def key_algorithm(key: PrivateKey) -> str:
    """The name `generate_key` takes: rsa-2048, rsa-3072, ec-p256 (other sizes and curves named alike)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec-p256" if isinstance(key.curve, ec.SECP256R1) else f"ec-{key.curve.name}"
    return f"rsa-{key.key_size}"


def build_csr(key: PrivateKey, subject: Subject) -> bytes:
    """A PEM certificate signing request for `subject`, signed with `key` (SHA-256)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject.name())
    if subject.sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(s) for s in subject.sans]),
                                        critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _general_name(san: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ip_address(san))
    except ValueError:
        pass
    if not _DNS_NAME.fullmatch(san):  # an internationalised name goes in as its A-label (xn--…), as RFC 5280 asks
        raise CertificateError(f"subject alternative name {san!r} is neither an IP address nor a DNS name "
                               "(letters, digits and hyphens, labels of at most 63, an optional leading *.)")
    return x509.DNSName(san)


_DNS_NAME = re.compile(r"(\*\.)?(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?", re.ASCII)
