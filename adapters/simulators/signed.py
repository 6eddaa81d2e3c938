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
    """A sector's gate: the clock (seconds or milliseconds) and the nonces it remembers.

    Two knobs, settable at any time, make a sector refuse a client that signs correctly, as a real one does
    when clocks drift or a request is sent twice (tests and rehearsals drive the refusals through the gateway
    this way): ``clock_offset_s`` is how far the sector's clock is ahead of true time (negative: behind) when
    it judges a request's timestamp — beyond MAX_SKEW_S every timestamp is stale; what the sector itself
    stamps (a signed answer's timestamp) keeps true time. ``every_nonce_seen`` makes every nonce count as
    already used, as if each request were a replay.
    """

    def __init__(self, unit_ms: int, *, clock_offset_s: float = 0.0, every_nonce_seen: bool = False) -> None:
        self._unit_ms = unit_ms
        self._nonces = NonceCache(2 * MAX_SKEW_S)  # twice the window: a nonce outlives any timestamp it rode with
        self.clock_offset_s = clock_offset_s
        self.every_nonce_seen = every_nonce_seen

    def stale(self, timestamp: str) -> bool:
        """Not digits, or further than MAX_SKEW_S either way from the sector's clock."""
        if not timestamp.isascii() or not timestamp.isdigit():
            return True
        now_ms = (time.time() + self.clock_offset_s) * 1000
        return abs(now_ms - int(timestamp) * self._unit_ms) > MAX_SKEW_S * 1000

    def replayed(self, nonce: str) -> bool:
        """Remember ``nonce``; True if already used (always, with ``every_nonce_seen``). Checked last, after
        the signature, so a forged request cannot burn a legitimate client's nonce."""
        first = self._nonces.first_use(nonce)
        return self.every_nonce_seen or not first
