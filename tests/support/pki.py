"""A small test PKI: a CA, certificates it issues (for a CSR, a server on 127.0.0.1, a client), PEM and
PKCS#12 files. Real keys and certificates made with `cryptography`; nothing is mocked.

    ca = TestCA()
    server = ca.issue("127.0.0.1", sans=("127.0.0.1", "localhost"), server=True)
    client = ca.issue("yiwang gateway", client=True)
    server.cert_pem, server.key_pem, ca.cert_pem       # bytes, ready for files or ssl contexts
    ca.sign_csr(csr_pem, days=365)                     # the certificate for a CSR (leaf PEM)

SM2 (which `cryptography` cannot sign with): `sm2_credential(name, days=30)` gives a self-signed SM2-with-SM3
certificate and its PKCS#8 key as PEM, made by `certstore.sm2_self_signed` (what `openssl x509 -verify`
accepts); `sm2_pair(name)` the same, made once per name and process; `sm2_store_entry(name)` a new one as a
certificate-store `Credential`; `sm2_sec1(key_pem)` the same key as SEC1 (`EC PRIVATE KEY`). (Only
tests/unit/test_sm2.py makes SM2 keys with the system's OpenSSL: its point is interoperability.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from ipaddress import ip_address
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certstore import Credential, MemoryCredentials, sm2_self_signed

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _name(common_name: str, organization: str = "Yiwang test PKI") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def new_key(algorithm: str = "ec") -> Key:
    return rsa.generate_private_key(65537, 2048) if algorithm == "rsa" else ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Key, password: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


@dataclass(frozen=True)
class Issued:
    key: Key
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # the issuing CA

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def key_der(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def pkcs12(self, password: bytes | None) -> bytes:
        encryption = (serialization.BestAvailableEncryption(password) if password
                      else serialization.NoEncryption())
        return pkcs12.serialize_key_and_certificates(b"test", self.key, self.cert, list(self.chain), encryption)

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """`stem.crt` (leaf + chain) and `stem.key` in `folder`, for ssl contexts and CLIs."""
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
        cert.write_bytes(self.cert_pem + self.chain_pem)
        key.write_bytes(self.key_pem)
        return cert, key


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, name: str = "Yiwang Test Root CA", now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)
        self.key = new_key("ec")
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(self.now - timedelta(days=1)).not_valid_after(self.now + timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, sans: tuple[str, ...] = (), days: float = 365, server: bool = False,
              client: bool = False, key: Key | None = None, not_before: datetime | None = None) -> Issued:
        """A leaf certificate (and its new key, unless one is given)."""
        key = key or new_key("ec")
        start = not_before or self.now - timedelta(hours=1)
        return Issued(key, self._sign(_name(common_name), key.public_key(), start, start + timedelta(days=days),
                                      sans, server, client), (self.cert,))

    def sign_csr(self, csr_pem: bytes, *, days: float = 365, server: bool = False, client: bool = True) -> bytes:
        """The CA's certificate for a CSR (its subject and SANs, checked signature), as PEM."""
        csr = x509.load_pem_x509_csr(csr_pem)
        assert csr.is_signature_valid, "the CSR's signature does not verify"
        try:
            sans = tuple(str(v) for v in csr.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)) + tuple(
                str(v) for v in csr.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            sans = ()
        start = self.now - timedelta(hours=1)
        cert = self._sign(csr.subject, csr.public_key(), start, start + timedelta(days=days), sans, server, client)
        return cert.public_bytes(serialization.Encoding.PEM)

    def _sign(self, subject: x509.Name, public_key: object, start: datetime, end: datetime, sans: tuple[str, ...],
              server: bool, client: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
                   .public_key(public_key).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(s) for s in sans]), critical=False)
        usages = [u for u, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, server),
                                      (ExtendedKeyUsageOID.CLIENT_AUTH, client)) if wanted]
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        return builder.sign(self.key, hashes.SHA256())


def sm2_credential(name: str, days: float = 30, *, now: datetime | None = None, key_pem: bytes | None = None
                   ) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM): a self-signed SM2 certificate for CN=`name` in the test PKI
    (`certstore.sm2_self_signed`), valid from an hour before `now` for `days` (negative: already expired);
    a new key unless `key_pem` is given (a renewal of the same key)."""
    return sm2_self_signed(name, days, organization="Yiwang test PKI", now=now, key_pem=key_pem)


@dataclass(frozen=True)
class Sm2Pair:
    """An SM2 certificate and its PKCS#8 key, PEM."""

    cert_pem: bytes
    key_pem: bytes


@cache
def sm2_pair(name: str) -> Sm2Pair:
    """`sm2_credential(name)` made once per name and process: what a simulator and a gateway must both hold."""
    return Sm2Pair(*sm2_credential(name))


def sm2_store_entry(name: str, common_name: str = "sector") -> Credential:
    """A new SM2 key and certificate (CN=`common_name`) as the certificate store gives them under `name`."""
    certificate, key = sm2_credential(common_name)
    return Credential(name, certificate, key)


# The electronic licence sector's test SM2 pairs (`sm2_pair`): the gateway's (registered with the sector) and the
# sector's own (it signs answers with it; the gateway verifies them with its certificate).
E_LICENCE_OURS = "yiwang-gateway"
E_LICENCE_SECTOR = "e-licence-sector"


def shipped_credentials() -> MemoryCredentials:
    """What the shipped bundles name in the certificate store, made for a test: the electronic licence sector's
    SM2 pair (`e_licence-signing`, ours, with its key; `e_licence-sector`, the sector's certificate), those
    `sm2_pair` gives, so a simulator made with them knows these."""
    ours, theirs = sm2_pair(E_LICENCE_OURS), sm2_pair(E_LICENCE_SECTOR)
    return MemoryCredentials({"e_licence-signing": [Credential("e_licence-signing", ours.cert_pem, ours.key_pem)],
                              "e_licence-sector": [Credential("e_licence-sector", theirs.cert_pem)]})


def sm2_sec1(key_pem: bytes) -> bytes:
    """The same SM2 key as SEC1 PEM (`EC PRIVATE KEY`), the other form sectors hand keys over in."""
    _kind, _headers, der = asn1_pem.unarmor(key_pem)
    return bytes(asn1_pem.armor("EC PRIVATE KEY", asn1_keys.PrivateKeyInfo.load(der)["private_key"].parsed.dump()))
