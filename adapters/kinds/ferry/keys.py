"""What a ferry batch does with one side's certificate and key: sign and verify, wrap and unwrap a content key.

The certificate decides the algorithm, never the file: an SM2 certificate signs with SM2-with-SM3 (the default
signer ID) and takes content keys by SM2 encryption (GM/T 0003.4); an RSA certificate signs with RSA-PSS
SHA-256 (digest-length salt) and takes content keys by RSA-OAEP with SHA-256. Any other key (EC P-256...) is
refused with `KeyUnfit` when a batch is sealed: the ferry speaks only what the issue names. Nothing here
puts key material into an error message.
"""

from __future__ import annotations

import functools
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from certstore import sm2
from certstore.credentials import Credential
from certstore.errors import CertificateError

KeyFamily = Literal["sm2", "rsa"]
SIGNATURES: dict[KeyFamily, str] = {"sm2": "sm2-sm3", "rsa": "rsa-pss-sha256"}
WRAPS: dict[KeyFamily, str] = {"sm2": "sm2", "rsa": "rsa-oaep-sha256"}
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class KeyUnfit(ValueError):
    """A credential the ferry cannot use: no private key where one is needed, or neither SM2 nor RSA."""


def family(credential: Credential) -> KeyFamily:
    """`sm2` or `rsa`: what the credential's certificate holds; `KeyUnfit` for anything else."""
    if sm2.is_sm2_certificate(credential.certificate_pem):
        return "sm2"
    try:
        public = x509.load_pem_x509_certificates(credential.certificate_pem)[0].public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise KeyUnfit(f"credential {credential.name!r}: not a certificate the ferry can read") from None
    if isinstance(public, rsa.RSAPublicKey):
        return "rsa"
    raise KeyUnfit(f"credential {credential.name!r}: the ferry signs and encrypts with SM2 or RSA keys only")


def check_pair(own: Credential) -> None:
    """`KeyUnfit` unless `own` holds an SM2 or RSA private key that belongs to its certificate."""
    if family(own) == "sm2":
        key, public = _sm2_private(own), sm2.sm2_public_key(own.certificate_pem)
        matches = sm2.sm2_key_matches(key, public)
    else:
        matches = _rsa_private(own).public_key().public_numbers() == _rsa_public(own).public_numbers()
    if not matches:
        raise KeyUnfit(f"credential {own.name!r}: its private key does not belong to its certificate")


def _sm2_private(credential: Credential) -> sm2.Sm2Key:
    pem = _private_pem(credential)
    try:
        ours = sm2.sm2_key(pem)
    except CertificateError:
        raise KeyUnfit(f"credential {credential.name!r}: its private key is not an SM2 key") from None
    # The Z value covers our public key: a PKCS#8 file without it takes it from the certificate.
    return ours if ours.public else sm2.Sm2Key(ours.private, sm2.sm2_public_key(credential.certificate_pem))


def _rsa_private(credential: Credential) -> rsa.RSAPrivateKey:
    pem = _private_pem(credential)
    try:
        key = _loaded_private_key(pem)
    except (ValueError, TypeError):
        raise KeyUnfit(f"credential {credential.name!r}: its private key is not readable") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyUnfit(f"credential {credential.name!r}: its private key is not an RSA key")
    return key


@functools.lru_cache(maxsize=8)
def _loaded_private_key(pem: bytes) -> PrivateKeyTypes:
    """The key in `pem`, loaded once per process: loading checks an RSA key's consistency, about a tenth of a
    second each time, which every batch sealed or opened would pay."""
    return serialization.load_pem_private_key(pem, password=None)


def _private_pem(credential: Credential) -> bytes:
    if credential.private_key_pem is None:
        raise KeyUnfit(f"credential {credential.name!r} has no private key")
    return credential.private_key_pem


def _rsa_public(credential: Credential) -> rsa.RSAPublicKey:
    public = x509.load_pem_x509_certificates(credential.certificate_pem)[0].public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise KeyUnfit(f"credential {credential.name!r}: its certificate's key is not an RSA key")
    return public


def sign(own: Credential, data: bytes) -> tuple[str, bytes]:
    """(signature algorithm, signature) of `data` with our key."""
    kind = family(own)
    try:
        if kind == "sm2":
            return SIGNATURES[kind], sm2.sm2_sign(_sm2_private(own), data)
        return SIGNATURES[kind], _rsa_private(own).sign(data, _PSS, hashes.SHA256())
    except CertificateError:
        raise KeyUnfit(f"credential {own.name!r}: its private key does not sign") from None


def verifies(peer: Credential, algorithm: str, data: bytes, signature: bytes) -> bool:
    """Whether `signature` over `data` is the peer's, in the algorithm its certificate implies."""
    try:
        kind = family(peer)
    except KeyUnfit:
        return False
    if algorithm != SIGNATURES[kind]:
        return False
    if kind == "sm2":
        return sm2.sm2_verify(sm2.sm2_public_key(peer.certificate_pem), data, signature)
    try:
        _rsa_public(peer).verify(signature, data, _PSS, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def wrap(recipient: Credential, content_key: bytes) -> tuple[str, bytes]:
    """(wrap method, the content key encrypted to the recipient's certificate)."""
    kind = family(recipient)
    if kind == "sm2":
        return WRAPS[kind], sm2.sm2_encrypt(sm2.sm2_public_key(recipient.certificate_pem), content_key)
    return WRAPS[kind], _rsa_public(recipient).encrypt(content_key, _OAEP)


def unwrap(own: Credential, method: str, wrapped: bytes) -> bytes | None:
    """The content key wrapped to our certificate; None if it does not open (changed, or wrapped to another)."""
    try:
        kind = family(own)
        if method != WRAPS[kind]:
            return None
        if kind == "sm2":
            return sm2.sm2_decrypt(_sm2_private(own), wrapped)
        return _rsa_private(own).decrypt(wrapped, _OAEP)
    except (KeyUnfit, CertificateError, ValueError):
        return None
