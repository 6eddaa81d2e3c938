"""X.509 for the certificate store: read PEM and PKCS#12, describe certificates, make keys, CSRs and
self-signed certificates.

Keys are RSA and EC ones `cryptography` handles, or SM2 ones (`Sm2Key`, certstore.sm2), which it cannot load:
`cryptography` still reads an SM2 certificate's names, serial, dates and DER, all but its public key, which
comes from asn1crypto. An SM2 CSR is built with asn1crypto and signed by GmSSL.

Everything here is pure: bytes in, objects or bytes out, no storage. Bad input raises `CertificateError`
with a message a person can act on (it never repeats key material or a password).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

from asn1crypto import csr
from asn1crypto import x509 as asn1_x509
from asn1crypto.pem import armor
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from certstore.algorithms import digest
from certstore.errors import CertificateError as CertificateError
from certstore.sm2 import (
    SM2_WITH_SM3_OID,
    Sm2Key,
    is_sm2_certificate,
    is_sm2_key,
    sm2_certificate,
    sm2_generate_key,
    sm2_key,
    sm2_key_der,
    sm2_key_matches,
    sm2_public_key,
    sm2_public_key_info,
    sm2_self_signed,
    sm2_sign,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Sm2Key
SM2 = "sm2"
KEY_ALGORITHMS = ("rsa-2048", "rsa-3072", "ec-p256", SM2)


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
        public_key_sha256=hashlib.sha256(_public_key_info(certificate)).hexdigest(),
    )


def public_key_fingerprint(public_key: PublicKeyTypes) -> str:
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def key_fingerprint(key: PrivateKey) -> str:
    """SHA-256 of the key's SubjectPublicKeyInfo: equal to its certificate's `public_key_sha256`."""
    if isinstance(key, Sm2Key):
        return hashlib.sha256(sm2_public_key_info(_known_public(key)).dump()).hexdigest()
    return public_key_fingerprint(key.public_key())


def _public_key_info(certificate: x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo DER; for SM2, as the certificate carries it."""
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    if is_sm2_certificate(pem):
        return bytes(sm2_certificate(pem)["tbs_certificate"]["subject_public_key_info"].dump())
    return certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_key_algorithm(certificate: x509.Certificate) -> str:
    """What kind of key the certificate certifies, named as `key_algorithm` names keys."""
    if is_sm2_certificate(certificate.public_bytes(serialization.Encoding.PEM)):
        return SM2
    try:
        public = certificate.public_key()
    except UnsupportedAlgorithm:
        return "unknown"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return _ec_name(public.curve)
    return f"rsa-{public.key_size}" if isinstance(public, rsa.RSAPublicKey) else type(public).__name__.lower()


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
    """A PEM private key (PKCS#8, PKCS#1 or SEC1; encrypted ones need `password`; SM2 ones unencrypted)."""
    if password is None and is_sm2_key(pem):
        return sm2_key(pem)
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except UnsupportedAlgorithm as exc:  # an encrypted SM2 key decrypts, then cryptography knows not its curve
        raise CertificateError(f"the private key's algorithm is not supported here ({exc}); an encrypted SM2 key "
                               "must be imported unencrypted (openssl pkey -in KEY -out PLAIN)") from None
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
    except UnsupportedAlgorithm:
        raise CertificateError("the PKCS#12 file holds a key of an algorithm not supported here (an SM2 key: "
                               "import its certificate and key as PEM)") from None
    if leaf is None:
        raise CertificateError("the PKCS#12 file holds no certificate")
    return (_supported(key) if key is not None else None), [leaf, *extra]


def _supported(key: object) -> PrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError(f"unsupported key type {type(key).__name__}: RSA or EC keys only")
    return key


def check_pair(certificate: x509.Certificate, key: PrivateKey) -> PrivateKey:
    """The key, if it belongs to the certificate (an SM2 key completed with the certificate's public point)."""
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    public = sm2_public_key(certificate_pem) if is_sm2_certificate(certificate_pem) else None
    if isinstance(key, Sm2Key) or public is not None:
        if not isinstance(key, Sm2Key) or public is None or not sm2_key_matches(key, public):
            raise CertificateError("the private key does not belong to the certificate (an SM2 signature by the "
                                   "key does not verify under the certificate's public key)")
        return Sm2Key(key.private, public)
    if public_key_fingerprint(key.public_key()) != public_key_fingerprint(certificate.public_key()):
        raise CertificateError("the private key does not belong to the certificate (their public keys differ)")
    return key


# --- the private key at rest ------------------------------------------------------------------------


def key_to_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER: what the store seals into an envelope (and nothing else ever sees)."""
    if isinstance(key, Sm2Key):
        return sm2_key_der(key)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def der_to_pem(der: bytes) -> bytes:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except UnsupportedAlgorithm:  # SM2: already the PKCS#8 that certstore.sm2 reads
        return bytes(armor("PRIVATE KEY", der))
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
    if algorithm == SM2:
        return sm2_generate_key()
    raise CertificateError(f"unknown key algorithm {algorithm!r}; choose one of {', '.join(KEY_ALGORITHMS)}")


def key_algorithm(key: PrivateKey) -> str:
    """The name `generate_key` takes: rsa-2048, rsa-3072, ec-p256, sm2 (other sizes and curves named alike)."""
    if isinstance(key, Sm2Key):
        return SM2
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _ec_name(key.curve)
    return f"rsa-{key.key_size}"


def _ec_name(curve: ec.EllipticCurve) -> str:
    return "ec-p256" if isinstance(curve, ec.SECP256R1) else f"ec-{curve.name}"


def _known_public(key: Sm2Key) -> bytes:
    if key.public is None:
        raise CertificateError("the SM2 private key carries no public key: import it with its certificate")
    return key.public


def build_csr(key: PrivateKey, subject: Subject) -> bytes:
    """A PEM certificate signing request for `subject`, signed with `key` (SHA-256; SM2 keys: SM2 with SM3)."""
    sans = x509.SubjectAlternativeName([_general_name(s) for s in subject.sans]) if subject.sans else None
    if isinstance(key, Sm2Key):
        return _sm2_csr(key, subject.name(), sans)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject.name())
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def self_signed(common_name: str, algorithm: str = SM2, days: float = 365, *, organization: str = "Yiwang",
                now: datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM): a new key of `algorithm` (`KEY_ALGORITHMS`) and a self-signed
    certificate for CN=`common_name`, O=`organization`, valid from an hour before `now` for `days`: an identity
    two parties exchange by hand and pin (the ferry's sides), not one a CA vouches for. SM2 keys: SM2 with SM3."""
    if algorithm == SM2:
        return sm2_self_signed(common_name, days, organization=organization, now=now)
    key = generate_key(algorithm)
    if isinstance(key, Sm2Key):  # generate_key makes SM2 keys only for SM2, handled above
        raise CertificateError(f"unknown key algorithm {algorithm!r}")
    start = (now or datetime.now(UTC)).replace(microsecond=0) - timedelta(hours=1)
    name = Subject(common_name, organization).name()
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start)
                   .not_valid_after(start + timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    return to_pem([certificate]), der_to_pem(key_to_der(key))


def _sm2_csr(key: Sm2Key, name: x509.Name, sans: x509.SubjectAlternativeName | None) -> bytes:
    """PKCS#10 written with asn1crypto (`cryptography` cannot sign with SM2): the subject and SANs encoded by
    `cryptography` as for any CSR, the CertificationRequestInfo signed with SM2 and the default signer ID, as
    GM/T 0015 CAs expect (`openssl req -verify -vfyopt distid:1234567812345678` checks it)."""
    attributes = []
    if sans is not None:
        extension = {"extn_id": "subject_alt_name", "critical": False,
                     "extn_value": asn1_x509.GeneralNames.load(sans.public_bytes())}
        attributes.append({"type": "extension_request", "values": [[extension]]})
    info = csr.CertificationRequestInfo({
        "version": "v1", "subject": asn1_x509.Name.load(name.public_bytes()),
        "subject_pk_info": sm2_public_key_info(_known_public(key)), "attributes": attributes})
    request = csr.CertificationRequest({
        "certification_request_info": info, "signature_algorithm": {"algorithm": SM2_WITH_SM3_OID},
        "signature": sm2_sign(key, info.dump())})
    return bytes(armor("CERTIFICATE REQUEST", request.dump()))


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
