"""Ed25519 signing keys for the gateway's own signatures (checkpoints of the tamper-evident logs).

`Ed25519Signer` implements `certstore.algorithms.Signer`. `load_or_create_signing_key(path, keys)` keeps
the private key sealed by envelope encryption under the master keys in one owner-only file, created once:
every process of a deployment on this machine signs with the same key, so every process can verify
every other's checkpoints. The key id is a fingerprint of the public key, stored with each signature.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from certstore.algorithms import CryptoError
from certstore.keyfiles import write_once
from certstore.keyring import Envelope, MasterKeys, open_envelope, rewrap, seal_envelope

SIGNING_KEY_AAD = b"yiwang signing key"


class Ed25519Signer:
    algorithm = "ed25519"

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._public: Ed25519PublicKey = private_key.public_key()

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        """`ed25519:` + the first 16 hex digits of SHA-256 over the raw public key."""
        raw = self._public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.algorithm}:{hashlib.sha256(raw).hexdigest()[:16]}"

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def verify(self, data: bytes, signature: bytes) -> None:
        try:
            self._public.verify(signature, data)
        except InvalidSignature as exc:
            raise CryptoError("the signature does not match the data and key") from exc

    def private_bytes(self) -> bytes:
        return self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def load_or_create_signing_key(path: Path, keys: MasterKeys) -> Ed25519Signer:
    """The signing key sealed in `path`; made on first use. Two processes starting together agree on one key."""
    if not path.exists():
        write_once(path, seal_envelope(keys, Ed25519Signer.generate().private_bytes(), SIGNING_KEY_AAD).to_text())
    raw = open_envelope(keys, Envelope.from_text(path.read_text()), SIGNING_KEY_AAD)
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(raw))


def rewrap_signing_key(path: Path, keys: MasterKeys) -> bool:
    """Re-wrap the sealed key file under the current master key (after a rotation); False if there is none."""
    if not path.exists():
        return False
    fresh = rewrap(keys, Envelope.from_text(path.read_text())).to_text()
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    with os.fdopen(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(fresh)
    os.replace(scratch, path)  # atomic: a process starting now reads the old file or the new, whole
    return True


def encode_signature(signature: bytes) -> str:
    return base64.b64encode(signature).decode()


def decode_signature(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise CryptoError("a signature is not valid base64") from exc
