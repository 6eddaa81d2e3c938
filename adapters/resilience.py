"""Retries around an adapter: only transient, classified failures are tried again.

The wrapper is itself an `Adapter`, so the registry hands out adapters that already retry, and the
dispatcher only ever sees the final outcome. The last `DeliveryError` is re-raised with
`attempts` set, so a dead letter can say how many tries were made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from adapters.contract import Adapter, CanonicalMessage, CanonicalResult, DeliveryError, Operation


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `attempts` tries in all; wait windows start at `initial_ms` and double, capped at `max_ms`."""

    attempts: int
    initial_ms: int
    max_ms: int

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.initial_ms < 0 or self.max_ms < self.initial_ms:
            raise ValueError(f"need 0 <= initial_ms <= max_ms, got {self.initial_ms} and {self.max_ms}")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.retryable


class RetryingAdapter:
    """An adapter that calls `inner` again on retryable `DeliveryError`s, with jittered backoff."""

    def __init__(self, inner: Adapter, policy: RetryPolicy) -> None:
        self.inner = inner
        self.policy = policy
        self.sector = inner.sector
        self.version = inner.version

    def _retrying(self) -> Retrying:
        # A fresh controller per call: Retrying keeps per-run statistics and is not meant to be shared.
        initial_s, max_s = self.policy.initial_ms / 1000, self.policy.max_ms / 1000
        return Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            # "Full jitter": each wait is random within a window that doubles from initial_ms up to
            # max_ms, so many workers retrying one recovering sector do not arrive in lockstep.
            wait=wait_random_exponential(multiplier=initial_s, max=max_s),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )

    def call(self, operation: Operation, message: CanonicalMessage) -> CanonicalResult:
        for attempt in self._retrying():
            with attempt:
                try:
                    return self.inner.call(operation, message)
                except DeliveryError as exc:
                    exc.attempts = attempt.retry_state.attempt_number
                    raise
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def render(self, operation: Operation, message: CanonicalMessage) -> Any:
        return self.inner.render(operation, message)


def with_retries(adapter: Adapter, policy: RetryPolicy) -> Adapter:
    """`adapter`, retrying its retryable failures under `policy`."""
    return RetryingAdapter(adapter, policy)
