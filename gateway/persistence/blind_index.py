"""A keyed blind index: find "my cases" by ID number without storing the number in a searchable form.

HMAC-SHA256 under a secret key, so the index cannot be reversed by hashing every possible ID number
(there are only ~10^11 of them). The key lives in a file of its own under the var directory, created
on first start with owner-only permissions, or comes from YIWANG_BLIND_INDEX_KEY.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from certstore import write_once


class BlindIndex:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the blind-index key must be at least 16 bytes")
        self._key = key

    def __call__(self, value: str) -> str:
        return hmac.new(self._key, value.strip().upper().encode(), hashlib.sha256).hexdigest()


def load_or_create_key(path: Path, env_hex: str | None = None) -> bytes:
    if env_hex:
        return bytes.fromhex(env_hex)
    return bytes.fromhex(write_once(path, secrets.token_hex(32)).strip())
