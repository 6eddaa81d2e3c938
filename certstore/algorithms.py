"""The algorithms the certificate store offers, behind small interfaces so a deployment can choose.

Hashing: SHA-256 (default) or SM3 (GB/T 32905). Field encryption: AES-256-GCM (default) or SM4-GCM
(GB/T 32907), both authenticated. A deployment that must use the national algorithms sets
`YIWANG_FIELD_CIPHER=sm4-gcm` and `YIWANG_DIGEST=sm3`. SM2 signatures are not in `cryptography`: a
`Signer` for SM2 would be registered here from another library without touching the callers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
TAG_BYTES = 16


class CryptoError(ValueError):
    """Ciphertext that does not open: a wrong key, a changed byte, or not ours at all."""


class Digest(Protocol):
    @property
    def name(self) -> str: ...  # read-only: a frozen dataclass is a Digest

    def digest(self, data: bytes) -> bytes: ...


class FieldCipher(Protocol):
    """Authenticated encryption with associated data; `seal` output is nonce || ciphertext || tag."""

    name: str
    key_bytes: int

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, key: bytes, sealed: bytes, aad: bytes) -> bytes: ...


class Signer(Protocol):
    """Signs with a private key; `verify` raises CryptoError on a bad signature."""

    algorithm: str

    def sign(self, data: bytes) -> bytes: ...

    def verify(self, data: bytes, signature: bytes) -> None: ...


@dataclass(frozen=True)
class _HashDigest:
    name: str
    algorithm: type[hashes.HashAlgorithm]

    def digest(self, data: bytes) -> bytes:
        h = hashes.Hash(self.algorithm())
        h.update(data)
        return h.finalize()


class AesGcm:
    name = "aes-256-gcm"
    key_bytes = 32

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)

    def open(self, key: bytes, sealed: bytes, aad: bytes) -> bytes:
        try:
            return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except (InvalidTag, ValueError) as exc:
            raise CryptoError("the ciphertext does not open with this key (changed, or sealed elsewhere)") from exc


class Sm4Gcm:
    name = "sm4-gcm"
    key_bytes = 16

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        return nonce + encryptor.update(plaintext) + encryptor.finalize() + encryptor.tag

    def open(self, key: bytes, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise CryptoError("the ciphertext is too short to be ours")
        nonce, body, tag = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:-TAG_BYTES], sealed[-TAG_BYTES:]
        decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        try:
            return decryptor.update(body) + decryptor.finalize()
        except InvalidTag as exc:
            raise CryptoError("the ciphertext does not open with this key (changed, or sealed elsewhere)") from exc


DIGESTS: Mapping[str, Digest] = {
    "sha256": _HashDigest("sha256", hashes.SHA256),
    "sm3": _HashDigest("sm3", hashes.SM3),
}
CIPHERS: Mapping[str, FieldCipher] = {c.name: c for c in (AesGcm(), Sm4Gcm())}


def digest(name: str) -> Digest:
    try:
        return DIGESTS[name]
    except KeyError:
        raise ValueError(f"unknown digest {name!r}; choose one of {', '.join(sorted(DIGESTS))}") from None


def cipher(name: str) -> FieldCipher:
    try:
        return CIPHERS[name]
    except KeyError:
        raise ValueError(f"unknown field cipher {name!r}; choose one of {', '.join(sorted(CIPHERS))}") from None
