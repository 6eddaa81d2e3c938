"""How one adapter is doing, for operators: recent calls, failures by class, and its circuit breakers.

`AdapterHealth` sees every call that reached the sector (the resilience chain records innermost, so
fast-failed circuit-open calls and rate-limit waits are not sector calls and are not counted here; the
breakers' `state`, the deliveries' and the queries', says when calls are being refused). Counts cover a
sliding window kept in a fixed ring of buckets: memory stays constant however many calls are made, and the
window is exact to one bucket.

`is_sector_failure` is the one judgment, shared with the circuit breaker, of whether a failure says the
sector is unwell.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from adapters.contract import DeliveryError, FailureClass

# What a sector's health is judged on: it did not answer, or answered "try again later".
_UNWELL = (FailureClass.TRANSPORT, FailureClass.TIMEOUT, FailureClass.SECTOR_FAULT)


def is_sector_failure(exc: BaseException) -> bool:
    """True for transport and timeout failures and retryable sector faults (HTTP 5xx, SOAP Server faults).

    Not for business rejections (non-retryable faults), mapping, validation or auth errors: they fail
    the same way against a perfectly healthy sector. Not for a 429 either (`retry_after_s` set): the sector
    is up and said when to come back, and the rate limiter's pause already holds every caller until then.
    Not for failures our own layers raise (`rate_limited`, `circuit_open`): they never reached the sector.
    """
    if not isinstance(exc, DeliveryError) or not exc.retryable or exc.failure not in _UNWELL:
        return False
    if getattr(exc, "rate_limited", False) or getattr(exc, "circuit_open", False):
        return False
    return getattr(exc, "retry_after_s", None) is None


class HasState(Protocol):
    """A circuit breaker as health sees it (keeps this module free of `adapters.resilience`)."""

    @property
    def state(self) -> str: ...


@dataclass(slots=True)
class _Bucket:
    index: int = -1  # which bucket-width slice of time these counts belong to
    calls: int = 0
    failures: int = 0
    sector_failures: int = 0
    by_class: Counter[str] = field(default_factory=Counter)  # at most one key per failure class


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _failure_class(exc: BaseException) -> str:
    # Adapters raise only DeliveryError; anything else is our bug, and must still show up.
    return str(exc.failure) if isinstance(exc, DeliveryError) else "unclassified"


class AdapterHealth:
    """Thread-safe health of one adapter over the last `window_s` seconds (wall clock, UTC in snapshots)."""

    def __init__(
        self,
        *,
        window_s: float = 300.0,
        buckets: int = 30,
        clock: Callable[[], float] = time.time,
        breaker: HasState | None = None,
    ) -> None:
        if window_s <= 0 or buckets < 1:
            raise ValueError(f"need window_s > 0 and buckets >= 1, got {window_s} and {buckets}")
        self.window_s = window_s
        self.breaker: HasState | None = breaker
        self.query_breaker: HasState | None = None  # bound with the deliveries' by `watch`
        self._width = window_s / buckets
        self._ring = [_Bucket() for _ in range(buckets)]
        self._clock = clock
        self._lock = threading.Lock()
        self._last_success: float | None = None
        self._last_failure: float | None = None
        self._last_failure_class: str | None = None
        self._total_calls = 0
        self._total_failures = 0

    def watch(self, breaker: HasState, query_breaker: HasState | None = None) -> None:
        """Report the breakers' states in snapshots (the composition binds the adapter's two: deliveries', queries')."""
        self.breaker, self.query_breaker = breaker, query_breaker

    def _current(self, now: float) -> _Bucket:
        index = int(now // self._width)
        bucket = self._ring[index % len(self._ring)]
        if bucket.index != index:  # a slot last used a whole window ago: its counts have slid out
            bucket.index, bucket.calls, bucket.failures, bucket.sector_failures = index, 0, 0, 0
            bucket.by_class.clear()
        return bucket

    def record_success(self) -> None:
        with self._lock:
            now = self._clock()
            self._current(now).calls += 1
            self._total_calls += 1
            self._last_success = now

    def record_failure(self, exc: BaseException) -> None:
        failure = _failure_class(exc)
        with self._lock:
            now = self._clock()
            bucket = self._current(now)
            bucket.calls += 1
            bucket.failures += 1
            bucket.sector_failures += is_sector_failure(exc)
            bucket.by_class[failure] += 1
            self._total_calls += 1
            self._total_failures += 1
            self._last_failure, self._last_failure_class = now, failure

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able picture: window counts, error rates (None before any call), last outcomes, breakers
        (`breaker`: the deliveries', `query_breaker`: the named queries')."""
        # Read outside our lock: a breaker has its own, and holding two at once invites lock-order trouble.
        breaker = self.breaker.state if self.breaker is not None else None
        query_breaker = self.query_breaker.state if self.query_breaker is not None else None
        with self._lock:
            newest = int(self._clock() // self._width)
            live = [b for b in self._ring if newest - len(self._ring) < b.index <= newest]
            calls = sum(b.calls for b in live)
            failures = sum(b.failures for b in live)
            sector_failures = sum(b.sector_failures for b in live)
            by_class: Counter[str] = sum((b.by_class for b in live), Counter())
            return {
                "breaker": breaker,
                "query_breaker": query_breaker,
                "window_s": self.window_s,
                "calls": calls,
                "failures": failures,
                "error_rate": failures / calls if calls else None,
                # Only the failures that say the sector is unwell (what the breaker counts).
                "sector_failures": sector_failures,
                "sector_error_rate": sector_failures / calls if calls else None,
                "failures_by_class": dict(sorted(by_class.items())),
                "last_success_at": _iso(self._last_success),
                "last_failure_at": _iso(self._last_failure),
                "last_failure_class": self._last_failure_class,
                "total_calls": self._total_calls,
                "total_failures": self._total_failures,
            }
