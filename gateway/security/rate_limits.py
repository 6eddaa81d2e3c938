"""Per-identity rate limits: a token bucket per identity, in this process.

Each identity may make `burst` calls at once and `per_s` a second on average. The buckets live in
memory: with several API processes an identity gets each process's allowance (the limit is there
to stop one runaway client from starving the others, not to meter usage). `gateway.http.callers.require`
asks `wait_s` on every authenticated call; an answer above 0 becomes a 429 with `Retry-After`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, per_s: float, burst: int, *, timer: Callable[[], float] = time.monotonic) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.per_s = per_s
        self.burst = burst
        self._timer = timer  # tests pass a hand-moved one
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def wait_s(self, identity_id: str) -> float:
        """Take a token for `identity_id`: 0 when there was one, else how long until there will be."""
        now = self._timer()
        with self._lock:
            bucket = self._buckets.get(identity_id)
            if bucket is None:
                bucket = self._buckets[identity_id] = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_s)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.per_s


def retry_after_header(wait_s: float) -> str:
    """`Retry-After` counts whole seconds: round up, so a client that waits that long gets through."""
    return str(max(1, math.ceil(wait_s)))


def rate_limiter(per_s: float | None, burst: int | None) -> TokenBuckets | None:
    """The configured limiter, or None when no rate is set (the default: no limit)."""
    if not per_s:
        return None
    return TokenBuckets(per_s, burst or max(1, math.ceil(2 * per_s)))
