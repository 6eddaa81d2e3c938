"""SM2 (GB/T 32918, GM/T 0003) signatures with SM3: keys and certificates read with asn1crypto, signing by GmSSL.

`cryptography` cannot load SM2 keys nor sign with them, so this module does both with two maintained libraries:
`gmssl-pyx` (a C extension over GmSSL 3.2, the reference implementation of the GM/T standards: its own
CSPRNG for the per-signature nonce, a configurable signer ID, the Z pre-hash optional) and `asn1crypto`
(PKCS#8 and SEC1 private keys, X.509 certificates whose public key is on the SM2 curve).

- `sm2_key(pem)` reads our private key (PKCS#8 or SEC1 PEM on curve 1.2.156.10197.1.301);
- `sm2_public_key(certificate_pem)` reads the public key of an SM2 certificate (the leaf, the first PEM block);
- `sm2_generate_key()` makes a key (GmSSL's CSPRNG); `sm2_key_der` / `sm2_key_pem` write it as PKCS#8, what
  the certificate store seals; `sm2_public_key_info` is its SubjectPublicKeyInfo (for CSRs and fingerprints);
- `sm2_self_signed(common_name, days)` a self-signed SM2-with-SM3 certificate and its new key (PEM): what a
  sector without a CA hands over, and what the demo and tests make;
- `sm2_sign` / `sm2_verify` sign and check, with the signer ID (default `1234567812345678`; `None`: no Z
  value, the message is hashed alone) and the signature as DER (`SEQUENCE {r, s}`) or raw `r‖s` (64 bytes);
- `sm2_encrypt` / `sm2_decrypt` public-key encryption (GM/T 0003.4, ciphertext as GmSSL writes it: DER
  `SEQUENCE {x, y, hash, ciphertext}`) of a short secret, 1 to `SM2_MAX_PLAINTEXT` bytes: a content key.
Bad input raises `CertificateError` with a message a person can act on; never key material. GmSSL writes a
two-line trace to stderr when a signature does not verify; the answer (False) is what counts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import gmssl_pyx
from asn1crypto import keys, pem, x509
from asn1crypto.algos import DSASignature

from certstore.errors import CertificateError

SM2_CURVE_OID = "1.2.156.10197.1.301"
SM2_WITH_SM3_OID = "1.2.156.10197.1.501"
SM2_DEFAULT_ID = b"1234567812345678"  # GM/T 0009's default distinguishing ID, what nearly every sector uses

# asn1crypto knows no key size for the SM2 curve: without one it writes a private scalar with a leading zero
# byte as 31 bytes, which SEC1 does not allow.
keys.NamedCurve.register("sm2", SM2_CURVE_OID, 32)

SM2_MAX_PLAINTEXT = 255  # GmSSL's limit for one SM2 encryption: room for any content key, not for data

SignatureEncoding = Literal["der", "raw"]
SIGNATURE_ENCODINGS: tuple[SignatureEncoding, ...] = ("der", "raw")


@dataclass(frozen=True)
class Sm2Key:
    """Our SM2 private key: the 32-byte scalar and the 64-byte public point `x‖y` (from the key file or the
    certificate it belongs to)."""

    private: bytes = field(repr=False)
    public: bytes | None


def _der(data: bytes, what: str) -> tuple[str, bytes]:
    if not pem.detect(data):
        raise CertificateError(f"{what}: expected PEM text")
    try:
        kind, _headers, der = pem.unarmor(data, multiple=False)
    except ValueError as exc:
        raise CertificateError(f"{what}: not readable PEM ({exc})") from None
    return str(kind), bytes(der)


def _curve(parameters: object) -> str | None:
    chosen = getattr(parameters, "chosen", None)
    return getattr(chosen, "dotted", None)


def _point(raw: bytes | None) -> bytes | None:
    """An uncompressed point `04‖x‖y` as the 64 bytes GmSSL takes; None if absent."""
    if not raw:
        return None
    try:
        return bytes(gmssl_pyx.normalize_sm2_public_key(bytes(raw)))
    except gmssl_pyx.InvalidValueError:
        raise CertificateError("the public key is not a point on the SM2 curve") from None


def is_sm2_key(key_pem: bytes) -> bool:
    """Whether `key_pem` is a private key on the SM2 curve (False for RSA, P-256, or anything unreadable)."""
    try:
        sm2_key(key_pem)
    except CertificateError:
        return False
    return True


def sm2_key(key_pem: bytes) -> Sm2Key:
    """Our SM2 private key from unencrypted PEM: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC`/`SM2 PRIVATE KEY`)."""
    kind, der = _der(key_pem, "SM2 private key")
    try:
        if kind == "PRIVATE KEY":
            info = keys.PrivateKeyInfo.load(der)
            algorithm = info["private_key_algorithm"]
            if algorithm["algorithm"].dotted != "1.2.840.10045.2.1" or _curve(algorithm["parameters"]) != SM2_CURVE_OID:
                raise CertificateError("SM2 private key: the key is not on the SM2 curve")
            ec = info["private_key"].parsed
        elif kind in ("EC PRIVATE KEY", "SM2 PRIVATE KEY"):  # OpenSSL writes SEC1 SM2 keys as the latter
            ec = keys.ECPrivateKey.load(der)
            if _curve(ec["parameters"]) not in (SM2_CURVE_OID, None):
                raise CertificateError("SM2 private key: the key is not on the SM2 curve")
        else:
            raise CertificateError(f"SM2 private key: expected PRIVATE KEY or EC PRIVATE KEY, got {kind}")
        scalar = ec["private_key"].contents.rjust(32, b"\0")[-32:]
        public = ec["public_key"].native
    except CertificateError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CertificateError(f"SM2 private key: not a readable key ({type(exc).__name__})") from None
    if len(scalar) != 32 or not any(scalar):
        raise CertificateError("SM2 private key: the private scalar is not 32 bytes")
    return Sm2Key(scalar, _point(public))


def sm2_generate_key() -> Sm2Key:
    public, private = gmssl_pyx.sm2_key_generate()
    return Sm2Key(bytes(private), bytes(public))


def _curve_parameters() -> keys.ECDomainParameters:
    return keys.ECDomainParameters(name="named", value=SM2_CURVE_OID)


def sm2_key_der(key: Sm2Key) -> bytes:
    """Unencrypted PKCS#8 DER (id-ecPublicKey on the SM2 curve, the public point included), as OpenSSL writes."""
    if key.public is None:
        raise CertificateError("SM2 private key: its public key is unknown (pair it with its certificate first)")
    ec = keys.ECPrivateKey({"version": "ecPrivkeyVer1", "private_key": int.from_bytes(key.private, "big"),
                            "parameters": _curve_parameters(), "public_key": b"\x04" + key.public})
    algorithm = keys.PrivateKeyAlgorithm({"algorithm": "ec", "parameters": _curve_parameters()})
    return bytes(keys.PrivateKeyInfo({"version": 0, "private_key_algorithm": algorithm, "private_key": ec}).dump())


def sm2_key_pem(key: Sm2Key) -> bytes:
    return bytes(pem.armor("PRIVATE KEY", sm2_key_der(key)))


def sm2_public_key_info(public: bytes) -> keys.PublicKeyInfo:
    """The SubjectPublicKeyInfo of a 64-byte public point `x‖y`, as in an SM2 certificate or CSR."""
    algorithm = keys.PublicKeyAlgorithm({"algorithm": "ec", "parameters": _curve_parameters()})
    return keys.PublicKeyInfo({"algorithm": algorithm, "public_key": b"\x04" + public})


def sm2_certificate(certificate_pem: bytes) -> x509.Certificate:
    """The leaf (first) certificate of `certificate_pem` if its key is on the SM2 curve."""
    kind, der = _der(certificate_pem, "SM2 certificate")
    if kind != "CERTIFICATE":
        raise CertificateError(f"SM2 certificate: expected CERTIFICATE, got {kind}")
    try:
        certificate = x509.Certificate.load(der)
        spki = certificate["tbs_certificate"]["subject_public_key_info"]
        curve = _curve(spki["algorithm"]["parameters"])
    except CertificateError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CertificateError(f"SM2 certificate: not a readable certificate ({type(exc).__name__})") from None
    if curve != SM2_CURVE_OID:
        raise CertificateError("SM2 certificate: its public key is not on the SM2 curve")
    return certificate


def is_sm2_certificate(certificate_pem: bytes) -> bool:
    try:
        sm2_certificate(certificate_pem)
    except CertificateError:
        return False
    return True


def sm2_public_key(certificate_pem: bytes) -> bytes:
    """The 64-byte public point `x‖y` of an SM2 certificate."""
    spki = sm2_certificate(certificate_pem)["tbs_certificate"]["subject_public_key_info"]
    point = _point(spki["public_key"].native)
    if point is None:
        raise CertificateError("SM2 certificate: it carries no public key")
    return point


def _to_der(signature: bytes, encoding: SignatureEncoding) -> bytes:
    if encoding == "der":
        return signature
    if len(signature) != 64:
        raise CertificateError(f"a raw SM2 signature is 64 bytes (r‖s), got {len(signature)}")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    return bytes(DSASignature({"r": r, "s": s}).dump())


def _from_der(signature: bytes, encoding: SignatureEncoding) -> bytes:
    if encoding == "der":
        return signature
    parsed = DSASignature.load(signature).native
    return int(parsed["r"]).to_bytes(32, "big") + int(parsed["s"]).to_bytes(32, "big")


def sm2_sign(key: Sm2Key, data: bytes, *, signer_id: bytes | None = SM2_DEFAULT_ID,
             encoding: SignatureEncoding = "der") -> bytes:
    """The SM2 signature of `data` (SM3 over Z‖data with `signer_id`, or over `data` alone when it is None)."""
    if signer_id is not None and key.public is None:
        raise CertificateError("SM2 signing with a signer ID needs the public key (the Z value covers it)")
    try:
        der = gmssl_pyx.sm2_sign(key.private, key.public or b"\0" * 64, data, signer_id=signer_id)
    except gmssl_pyx.GmsslInnerError as exc:
        raise CertificateError(f"SM2 signing failed: {type(exc).__name__}") from None
    return _from_der(bytes(der), encoding)


def sm2_verify(public: bytes, data: bytes, signature: bytes, *, signer_id: bytes | None = SM2_DEFAULT_ID,
               encoding: SignatureEncoding = "der") -> bool:
    """Whether `signature` is the SM2 signature of `data` under the 64-byte public point `public`.

    Anything malformed (a short raw signature, DER that is not `SEQUENCE {r, s}`) is simply not valid."""
    try:
        der = _to_der(signature, encoding)
        return bool(gmssl_pyx.sm2_verify(public, data, der, signer_id=signer_id))
    except (CertificateError, ValueError, TypeError, gmssl_pyx.GmsslInnerError):
        return False


def sm2_encrypt(public: bytes, plaintext: bytes) -> bytes:
    """`plaintext` (1 to SM2_MAX_PLAINTEXT bytes) encrypted to the 64-byte public point `public`."""
    if not 0 < len(plaintext) <= SM2_MAX_PLAINTEXT:
        raise CertificateError(f"SM2 encryption takes 1 to {SM2_MAX_PLAINTEXT} bytes, got {len(plaintext)}")
    try:
        return bytes(gmssl_pyx.sm2_encrypt(public, plaintext))
    except (gmssl_pyx.InvalidValueError, gmssl_pyx.GmsslInnerError, ValueError, TypeError):
        raise CertificateError("SM2 encryption failed: the public key is not a point on the SM2 curve") from None


def sm2_decrypt(key: Sm2Key, ciphertext: bytes) -> bytes:
    """What `sm2_encrypt` encrypted to this key's public point; `CertificateError` if the ciphertext was
    changed, cut, or encrypted to another key (the SM3 check inside it fails)."""
    try:
        return bytes(gmssl_pyx.sm2_decrypt(key.private, ciphertext))
    except (gmssl_pyx.InvalidValueError, gmssl_pyx.GmsslInnerError, ValueError, TypeError):
        raise CertificateError("SM2 decryption failed: changed, cut, or encrypted to another key") from None


def sm2_key_matches(key: Sm2Key, public: bytes) -> bool:
    """Whether the private key belongs to the public point: a signature by one verifies under the other."""
    probe = b"yiwang: does this key belong to this certificate?"
    return sm2_verify(public, probe, sm2_sign(Sm2Key(key.private, public), probe))


def sm2_self_signed(common_name: str, days: float = 365, *, organization: str = "Yiwang", now: datetime | None = None,
                    key_pem: bytes | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM): a self-signed SM2-with-SM3 certificate (default signer ID) for
    CN=`common_name`, O=`organization`, valid from an hour before `now` for `days` (negative: already expired).
    A new key unless `key_pem` is given (a renewal of the same key)."""
    key = sm2_key(key_pem) if key_pem else sm2_generate_key()
    if key.public is None:
        raise CertificateError("SM2 private key: its public key is unknown (pair it with its certificate first)")
    start = (now or datetime.now(UTC)).replace(microsecond=0) - timedelta(hours=1)
    subject = x509.Name.build({"country_name": "CN", "organization_name": organization, "common_name": common_name})
    algorithm = {"algorithm": SM2_WITH_SM3_OID}
    tbs = x509.TbsCertificate({
        "version": "v3", "serial_number": secrets.randbits(159) | 1 << 158, "signature": algorithm,
        "issuer": subject, "subject": subject, "subject_public_key_info": sm2_public_key_info(key.public),
        "validity": {"not_before": _time(start), "not_after": _time(start + timedelta(days=days))},
        "extensions": [{"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": False}}]})
    certificate = x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": algorithm,
                                    "signature_value": sm2_sign(key, tbs.dump())})
    return bytes(pem.armor("CERTIFICATE", certificate.dump())), sm2_key_pem(key)


def _time(instant: datetime) -> x509.Time:
    return x509.Time(name="utc_time" if instant.year < 2050 else "general_time", value=instant)
