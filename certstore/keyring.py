"""Master keys, envelope encryption and sealed fields.

The master keys never touch the database. They come from `YIWANG_MASTER_KEY` (one or more
`id:base64key` items, comma-separated, the FIRST is current) or from the file `YIWANG_MASTER_KEY_FILE`
(one `id:base64key` per line, first is current). With neither, a development key is created once in the
var directory (owner-only file). Rotation: put a new key first and keep the old ones after it; everything
sealed under an old key still opens, and `rewrap`/`reseal` move a value to the current key.

- Envelope encryption (`seal_envelope`): private keys and secrets. Each value gets a fresh data key; the
  data key is wrapped by the current master key. Rotating the master key re-wraps the data key only.
- Sealed fields (`FieldSealer`): personal data in rows. A per-master-key field key is derived with HKDF
  (one AEAD call per value, no wrapped key per row), and the token names the master key and cipher:
  `yw1.<cipher>.<key id>.<base64url>`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from certstore.algorithms import CryptoError, FieldCipher, cipher
from certstore.keyfiles import write_once

TOKEN_PREFIX = "yw1."
MASTER_KEY_BYTES = 32
DEVELOPMENT_KEY_FILE = "master.key"  # in the var directory, made when no master key is configured


class MasterKeyError(ValueError):
    """The master key setting is malformed, or a value names a master key this process does not have."""


@dataclass(frozen=True)
class MasterKeys:
    """An ordered ring of master keys: the first is current, the rest still open older values."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise MasterKeyError("at least one master key is required")
        for key_id, key in self.keys:
            if not key_id or "." in key_id or len(key) != MASTER_KEY_BYTES:
                raise MasterKeyError(f"master key {key_id!r}: expected an id without dots and {MASTER_KEY_BYTES} bytes")

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    def key(self, key_id: str) -> bytes:
        for candidate, key in self.keys:
            if candidate == key_id:
                return key
        raise MasterKeyError(f"master key {key_id!r} is not configured (was it removed from the ring too soon?)")

    @classmethod
    def parse(cls, text: str) -> MasterKeys:
        items = [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]
        parsed = []
        for item in items:
            key_id, sep, encoded = item.partition(":")
            if not sep:
                raise MasterKeyError("each master key is `id:base64key`")
            try:
                parsed.append((key_id.strip(), base64.b64decode(encoded.strip(), validate=True)))
            except binascii.Error as exc:
                raise MasterKeyError(f"master key {key_id!r} is not valid base64") from exc
        return cls(tuple(parsed))

    @classmethod
    def from_env(cls, env: Mapping[str, str], var_dir: Path) -> MasterKeys:
        if env.get("YIWANG_MASTER_KEY"):
            return cls.parse(env["YIWANG_MASTER_KEY"])
        if env.get("YIWANG_MASTER_KEY_FILE"):
            return cls.parse(Path(env["YIWANG_MASTER_KEY_FILE"]).read_text())
        return cls.parse(_development_key(var_dir / DEVELOPMENT_KEY_FILE))

    @staticmethod
    def generate(key_id: str) -> str:
        """A new `id:base64key` item, for `yiwang certs new-master-key` and for tests."""
        return f"{key_id}:{base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode()}"


def _development_key(path: Path) -> str:
    return write_once(path, MasterKeys.generate("dev1"))


def _derive(master: bytes, purpose: str, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt=None, info=f"yiwang {purpose}".encode()).derive(master)


# --- envelope encryption ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    """A value sealed under its own data key, the data key wrapped by master key `key_id`."""

    key_id: str
    cipher: str
    wrapped_key: bytes
    ciphertext: bytes

    def to_text(self) -> str:
        return json.dumps({"key_id": self.key_id, "cipher": self.cipher,
                           "wrapped_key": _b64(self.wrapped_key), "ciphertext": _b64(self.ciphertext)})

    @classmethod
    def from_text(cls, text: str) -> Envelope:
        data = json.loads(text)
        return cls(data["key_id"], data["cipher"], _unb64(data["wrapped_key"]), _unb64(data["ciphertext"]))


def seal_envelope(keys: MasterKeys, plaintext: bytes, aad: bytes, cipher_name: str = "aes-256-gcm") -> Envelope:
    chosen = cipher(cipher_name)
    data_key = secrets.token_bytes(chosen.key_bytes)
    return Envelope(keys.current_id, chosen.name, _wrap(keys, keys.current_id, data_key, chosen),
                    chosen.seal(data_key, plaintext, aad))


def open_envelope(keys: MasterKeys, envelope: Envelope, aad: bytes) -> bytes:
    chosen = cipher(envelope.cipher)
    data_key = chosen.open(_kek(keys, envelope.key_id, chosen), envelope.wrapped_key, b"data key")
    return chosen.open(data_key, envelope.ciphertext, aad)


def rewrap(keys: MasterKeys, envelope: Envelope) -> Envelope:
    """The same data under the current master key: only the data key is re-encrypted."""
    chosen = cipher(envelope.cipher)
    data_key = chosen.open(_kek(keys, envelope.key_id, chosen), envelope.wrapped_key, b"data key")
    return Envelope(keys.current_id, chosen.name, _wrap(keys, keys.current_id, data_key, chosen), envelope.ciphertext)


def _kek(keys: MasterKeys, key_id: str, chosen: FieldCipher) -> bytes:
    return _derive(keys.key(key_id), f"key wrapping {chosen.name}", chosen.key_bytes)


def _wrap(keys: MasterKeys, key_id: str, data_key: bytes, chosen: FieldCipher) -> bytes:
    return chosen.seal(_kek(keys, key_id, chosen), data_key, b"data key")


# --- sealed fields ---------------------------------------------------------------------------------------


class FieldSealer:
    """Seals personal data for storage: `seal_json(obj)` → token text; `open_json(token)` → obj.

    `aad` binds a token to its purpose (e.g. "cases.applicant"), so a token copied into another
    column does not open there.
    """

    def __init__(self, keys: MasterKeys, cipher_name: str = "aes-256-gcm") -> None:
        self._keys = keys
        self._cipher = cipher(cipher_name)
        self._field_keys: dict[tuple[str, str], bytes] = {}

    def seal(self, plaintext: str, aad: str = "") -> str:
        key_id = self._keys.current_id
        sealed = self._cipher.seal(self._field_key(key_id, self._cipher), plaintext.encode(), aad.encode())
        return f"{TOKEN_PREFIX}{self._cipher.name}.{key_id}.{_b64(sealed)}"

    def open(self, token: str, aad: str = "") -> str:
        if not is_sealed(token):
            raise CryptoError("not a sealed value")
        try:
            cipher_name, key_id, body = token[len(TOKEN_PREFIX):].split(".", 2)
            sealed = _unb64(body)
        except (ValueError, binascii.Error) as exc:
            raise CryptoError("a sealed value is malformed") from exc
        chosen = cipher(cipher_name)
        return chosen.open(self._field_key(key_id, chosen), sealed, aad.encode()).decode()

    def seal_json(self, value: Any, aad: str = "") -> str:
        return self.seal(json.dumps(value, ensure_ascii=False, separators=(",", ":")), aad)

    def open_json(self, token: Any, aad: str = "") -> Any:
        """Opens a token; a value stored before sealing existed (plain JSON) is returned as it is."""
        return json.loads(self.open(token, aad)) if is_sealed(token) else token

    def is_current(self, token: str) -> bool:
        """Sealed under the current master key and this sealer's cipher (nothing to re-seal)?"""
        return token.startswith(f"{TOKEN_PREFIX}{self._cipher.name}.{self._keys.current_id}.")

    def reseal(self, token: str, aad: str = "") -> str:
        """The same value under the current master key and cipher (for key rotation)."""
        return self.seal(self.open(token, aad), aad)

    def _field_key(self, key_id: str, chosen: FieldCipher) -> bytes:
        cached = self._field_keys.get((key_id, chosen.name))
        if cached is None:
            cached = _derive(self._keys.key(key_id), f"field sealing {chosen.name}", chosen.key_bytes)
            self._field_keys[(key_id, chosen.name)] = cached
        return cached


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
