"""What the three signing sectors (就业, 电子证照, 社会救助) check alike, each in its own words: the clock and
the nonce, in the order their documents give (docs/sectors/*.md), and the RFC 3986 sorted query.

Why a module of its own: the three sectors sign differently (HMAC-SHA256 over the request line, SM2 over
the body, an SM3 keyed digest over form fields) but refuse a stale timestamp and a replayed nonce the same
way, and a sector refuses before it does any business. Like the rest of adapters/simulators this imports
nothing from the gateway's signing code: the sector's side is written from its own page.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Final
from urllib.parse import parse_qsl, quote

from adapters.simulators.base import NonceCache

__all__ = ["MAX_SKEW_S", "Refusal", "Verdict", "sorted_query"]

MAX_SKEW_S: Final = 300


class Refusal(Enum):
    """Why a sector refused a request before reading it (each sector words these in Chinese)."""

    MISSING = "missing"  # a companion (app id, timestamp, nonce, signature) absent
    APP = "app"  # an app id / key the sector does not know
    STALE = "stale"  # timestamp further than MAX_SKEW_S from the sector's clock
    SIGNATURE = "signature"
    REPLAY = "replay"  # a nonce seen within the window


def sorted_query(query: str) -> str:
    """Parameters sorted by key then value (decoded text), each re-encoded RFC 3986 (upper-case hex, %20),
    ``k=v`` joined with ``&``; "" for no query."""
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}" for key, value in pairs)


class Verdict:
    """A sector's gate: the clock (seconds or milliseconds) and the nonces it remembers."""

    def __init__(self, unit_ms: int) -> None:
        self._unit_ms = unit_ms
        self._nonces = NonceCache(2 * MAX_SKEW_S)  # twice the window: a nonce outlives any timestamp it rode with

    def stale(self, timestamp: str) -> bool:
        """Not digits, or further than MAX_SKEW_S either way from now."""
        if not timestamp.isascii() or not timestamp.isdigit():
            return True
        return abs(time.time() * 1000 - int(timestamp) * self._unit_ms) > MAX_SKEW_S * 1000

    def replayed(self, nonce: str) -> bool:
        """Remember ``nonce``; True if already used. Checked last, after the signature, so a forged
        request cannot burn a legitimate client's nonce."""
        return not self._nonces.first_use(nonce)
