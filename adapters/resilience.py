"""Resilience around an adapter, as its bundle declares: retries, circuit breaker, rate limit, health.

`resilient()` composes one call chain per adapter, outermost first::

    retries ─► circuit breaker ─► rate limiter ─► health recording ─► the kind adapter (SOAP, REST)

Two breakers per adapter, one chain each: one for deliveries (the canonical operations the outbox sends), one
for the hall's named queries. The hall's traffic cannot open the circuit that holds cases back, and a sector
whose case intake is down may still answer queries (or the other way round); limiter and health are shared.

Why this order:

- **Retries outermost**, so *each attempt* passes the breaker and takes a token: a retry is one more
  call on the sector and is counted, throttled and refused like any other.
- **A circuit-open refusal ends the call at once** (`CircuitOpenError`: SECTOR_FAULT, not retryable,
  `circuit_open=True`): retrying within a backoff of milliseconds cannot outlast a breaker that waits
  `reset_after_s`, and would spend the policy's attempts on refusals. The error says when the breaker may
  close (`circuit_wait_s`) and carries the sector's last real answer (`last_response`, what opened it): the
  dispatcher makes the message due again then, without spending an attempt (bounded by the policy's
  `max_wait_ms`), and a query's Retry-After is that time.
- **Breaker outside the limiter**, so an open circuit spends no tokens and never queues for one.
- **Limiter outside health recording**, so health counts only calls that reached the sector, not our own
  waits and refusals, nor a request that could not be sent (`UnsendableRequest`). A 429 answer's
  Retry-After (`retry_after_s` on the `DeliveryError`) pauses the limiter, so every caller of this adapter
  in this process waits; the retry layer also waits at least that long before its own next attempt
  (capped, see `retry_after_cap_s`).

The breaker counts only failures that say the sector is unwell (`adapters.health.is_sector_failure`):
transport, timeout and retryable sector faults — not business rejections, mapping, validation or auth
errors, not 429s (the limiter's pause handles those), and not our own rate-limit refusals.

`RetryingAdapter` / `with_retries` remain usable alone (retries only). The last `DeliveryError` is
re-raised with `attempts` and `history` set (one entry per call made: when, its failure class, message
and duration), so a dead letter tells the whole story of its tries, not only how it ended.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity import sleep as tenacity_sleep
from tenacity.wait import wait_base

from adapters.contract import (
    Adapter,
    AnswerPending,
    CanonicalMessage,
    CanonicalResult,
    CaseEventType,
    DeliveryError,
    FailureClass,
    Operation,
    UnsendableRequest,
)
from adapters.health import AdapterHealth, is_sector_failure

T = TypeVar("T")
Sleep = Callable[[float], None]
OnSent = Callable[[], None] | None  # told just before a request leaves for the sector
Clock = Callable[[], float]
BreakerState = Literal["closed", "open", "half_open"]

# A sector's Retry-After is honoured up to this long: beyond it a worker is better released to other work
# (the dispatcher reschedules) than parked, and a hostile "Retry-After: 86400" cannot freeze an adapter.
RETRY_AFTER_CAP_S = 60.0
# Longest wait for a rate-limit slot when neither the caller nor the adapter (`timeout_s`) says.
DEFAULT_SLOT_WAIT_S = 30.0


# How long a message may wait for its sector's open circuit to close before it becomes a dead letter (class
# `circuit_open`), unless the bundle's `retry.max_wait_ms` says otherwise: an hour outlasts a restart or a
# short maintenance, and is still a morning's case, not tomorrow's.
DEFAULT_MAX_WAIT_MS = 3_600_000


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `attempts` tries in all; wait windows start at `initial_ms` and double, capped at `max_ms`.
    A message refused by an open circuit waits for it at most `max_wait_ms` in all (the dispatcher's rule)."""

    attempts: int
    initial_ms: int
    max_ms: int
    max_wait_ms: int = DEFAULT_MAX_WAIT_MS

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.initial_ms < 0 or self.max_ms < self.initial_ms:
            raise ValueError(f"need 0 <= initial_ms <= max_ms, got {self.initial_ms} and {self.max_ms}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {self.max_wait_ms}")


def retry_after_cap_s(policy: RetryPolicy) -> float:
    """The longest a Retry-After may stretch one wait: 10 x the policy's own longest backoff, at most 60 s."""
    return min(policy.max_ms * 10 / 1000, RETRY_AFTER_CAP_S)


def _retry_after(exc: BaseException | None) -> float | None:
    """The sector's Retry-After in seconds, if the error carries a usable one (NaN and negatives ignored)."""
    after = getattr(exc, "retry_after_s", None)
    return float(after) if isinstance(after, int | float) and after >= 0 else None


class WaitRetryAfter(wait_base):
    """A tenacity wait: `base`, but at least the failed attempt's Retry-After (capped at `cap_s`)."""

    def __init__(self, base: wait_base, cap_s: float) -> None:
        self.base = base
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self.base(retry_state)
        outcome = retry_state.outcome
        after = _retry_after(outcome.exception() if outcome is not None else None)
        return wait if after is None else max(wait, min(after, self.cap_s))


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.retryable


def _history_entry(exc: DeliveryError, at: datetime, started: float) -> dict[str, Any]:
    """One attempt as `DeliveryError.history` records it (JSON-able: it goes into the dead letter)."""
    return {
        "at": at.isoformat(timespec="milliseconds"),
        "failure": str(exc.failure),
        "message": exc.message,
        "elapsed_ms": round((time.monotonic() - started) * 1000),
    }


class RetryingAdapter:
    """An adapter that calls `inner` again on retryable `DeliveryError`s, with jittered backoff.

    A failure carrying `retry_after_s` (a 429) makes the next wait at least that long, capped by
    `retry_after_cap_s(policy)`. `sleep` is injectable for tests (default: tenacity's, i.e. `time.sleep`).
    """

    def __init__(self, inner: Adapter, policy: RetryPolicy, *, sleep: Sleep | None = None) -> None:
        self.inner = inner
        self.policy = policy
        self.sector = inner.sector
        self.version = inner.version
        self._sleep = sleep

    def _retrying(self) -> Retrying:
        # A fresh controller per call: Retrying keeps per-run statistics and is not meant to be shared.
        initial_s, max_s = self.policy.initial_ms / 1000, self.policy.max_ms / 1000
        return Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            # "Full jitter": each wait is random within a window that doubles from initial_ms up to
            # max_ms, so many workers retrying one recovering sector do not arrive in lockstep.
            # A 429's Retry-After stretches the wait (WaitRetryAfter); without one it is exactly the backoff.
            wait=WaitRetryAfter(
                wait_random_exponential(multiplier=initial_s, max=max_s), retry_after_cap_s(self.policy)
            ),
            retry=retry_if_exception(_retryable),
            reraise=True,
            sleep=tenacity_sleep if self._sleep is None else self._sleep,  # tenacity's default when none is given
        )

    def call(self, operation: Operation, message: CanonicalMessage, **options: Any) -> CanonicalResult:
        """`options` go to each attempt's `inner.call` as they are (ResilientAdapter passes its `on_sent`)."""
        history: list[dict[str, Any]] = []
        for attempt in self._retrying():
            with attempt:
                at, started = datetime.now(UTC), time.monotonic()
                try:
                    return self.inner.call(operation, message, **options)
                except DeliveryError as exc:
                    history.append(_history_entry(exc, at, started))
                    # A copy per error: only the last one leaves, and it must not change afterwards.
                    exc.history, exc.attempts = list(history), len(history)
                    raise
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def render(self, operation: Operation, message: CanonicalMessage) -> Any:
        return self.inner.render(operation, message)


def with_retries(adapter: Adapter, policy: RetryPolicy) -> Adapter:
    """`adapter`, retrying its retryable failures under `policy`."""
    return RetryingAdapter(adapter, policy)


class CircuitOpenError(DeliveryError):
    """Refused without calling the sector, whose breaker is open (or on trial). Not retried here: the breaker
    may close in `circuit_wait_s` seconds. `last_failure` and `last_response` are the sector's latest failure
    and real answer, for operators (a dead letter): they came from another call, so the message, which may
    reach the hall, does not quote them."""

    def __init__(self, message: str, wait_s: float, last_failure: str = "",
                 last_response: dict[str, Any] | None = None) -> None:
        super().__init__(FailureClass.SECTOR_FAULT, message, retryable=False)
        self.circuit_open = True  # what callers test, with getattr(error, "circuit_open", False)
        self.circuit_wait_s = wait_s
        self.last_failure = last_failure
        self.last_response = last_response


# While another caller's trial is in flight, when to ask again (at most the breaker's own reset_after_s).
TRIAL_WAIT_S = 1.0


Settled = Literal["success", "failure", "credentials", "neutral"]


def _settled(exc: BaseException) -> Settled:
    """How a failed call settles the breaker: a sector failure, refused credentials, or nothing learnt."""
    if is_sector_failure(exc):
        return "failure"
    if isinstance(exc, DeliveryError) and exc.failure is FailureClass.AUTH:
        return "credentials"
    return "neutral"


class CircuitBreaker:
    """Closed → open after `failure_threshold` consecutive sector failures; open → half-open after
    `reset_after_s`, when exactly one trial call goes through: success closes, a sector failure reopens.

    Outcomes that say nothing about the sector (see `is_sector_failure`) neither count nor reset the streak;
    if the trial ends that way, the trial slot is freed for the next caller. An authentication failure
    (refused credentials, a token endpoint that gave no token) is not the sector's health either, but ends a
    trial by closing the breaker: otherwise it would stay half-open for as long as the credentials are wrong,
    every call a lone trial; closed, calls fail as `auth` where operators see them. Thread-safe.
    """

    def __init__(self, failure_threshold: int, reset_after_s: float, clock: Clock = time.monotonic) -> None:
        if failure_threshold < 1 or reset_after_s < 0:
            raise ValueError(
                f"need failure_threshold >= 1 and reset_after_s >= 0, got {failure_threshold} and {reset_after_s}"
            )
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0  # consecutive sector failures while closed
        self._opened_at = 0.0
        self._trial = False  # a half-open trial call is in flight
        self._last_failure = ""  # the latest sector failure, as it was told
        self._last_answer: dict[str, Any] | None = None  # the sector's latest answer among its failures

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state_now(self._clock())

    def _state_now(self, now: float) -> BreakerState:
        # Open turns half-open by the passage of time alone; no timer thread needed.
        if self._state == "open" and now - self._opened_at >= self.reset_after_s:
            self._state, self._trial = "half_open", False
        return self._state

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()` if the breaker admits it, else `CircuitOpenError` without calling `fn`."""
        trial = self._admit()
        try:
            result = fn()
        except BaseException as exc:
            self._settle(trial, _settled(exc), exc)
            raise
        self._settle(trial, "success")
        return result

    def _admit(self) -> bool:
        """Whether this call is the half-open trial; raises while open or while another trial runs."""
        with self._lock:
            now = self._clock()
            state = self._state_now(now)
            if state == "closed":
                return False
            if state == "half_open" and not self._trial:
                self._trial = True
                return True
            wait, last_failure, last_answer = self._wait_s(now), self._last_failure, self._last_answer
        when = "a trial call is in flight" if state == "half_open" else f"next trial in {wait:.3g} s"
        raise CircuitOpenError(f"circuit open after {self.failure_threshold} consecutive failures; {when}",
                               wait, last_failure, last_answer)

    def _wait_s(self, now: float) -> float:
        """How long until this breaker may admit a call: the rest of the open period, or a moment while a
        trial is in flight; 0 when closed."""
        if self._state == "open":
            return max(0.0, self._opened_at + self.reset_after_s - now)
        if self._state == "half_open" and self._trial:
            return min(TRIAL_WAIT_S, self.reset_after_s)
        return 0.0

    def wait_s(self) -> float:
        """How long until this breaker may admit a call (0: it admits one now)."""
        with self._lock:
            now = self._clock()
            self._state_now(now)
            return self._wait_s(now)

    def _settle(self, trial: bool, outcome: Settled, exc: BaseException | None = None) -> None:
        with self._lock:
            if outcome == "failure" and exc is not None:
                self._remember(exc)
            if trial:
                if outcome in ("success", "credentials"):
                    self._state, self._failures, self._trial = "closed", 0, False
                elif outcome == "failure":
                    self._open()
                else:
                    self._trial = False  # learnt nothing: let the next caller be the trial
            elif self._state == "closed":  # calls admitted before the breaker opened no longer decide
                if outcome == "success":
                    self._failures = 0
                elif outcome == "failure":
                    self._failures += 1
                    if self._failures >= self.failure_threshold:
                        self._open()

    def _remember(self, exc: BaseException) -> None:
        """What an operator needs of the failures that open the breaker: the latest, and the sector's latest
        answer among them (a connection refused has none; the 503 page before it is kept)."""
        self._last_failure = str(exc)
        answer = getattr(exc, "last_response", None)
        if answer is not None:
            self._last_answer = answer

    def _open(self) -> None:
        self._state, self._opened_at, self._failures, self._trial = "open", self._clock(), 0, False

    def like(self) -> CircuitBreaker:
        """A new breaker with this one's settings and clock (closed)."""
        return CircuitBreaker(self.failure_threshold, self.reset_after_s, self._clock)


class RateLimitedError(DeliveryError):
    """No rate-limit slot within the call's timeout. `retry_after_s` says when the slot would have come."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(FailureClass.TIMEOUT, message, retryable=True)
        self.rate_limited = True  # our own refusal: the sector was not called, its health is not in question
        self.retry_after_s = retry_after_s


class RateLimiter:
    """A token bucket of `burst` tokens refilled at `per_second`, shared by every thread calling one adapter.

    Kept as one number, the theoretical arrival time of the next call (GCRA): a caller reserves the next
    slot under the lock and sleeps outside it, so callers are served in order and nobody polls.
    `pause_until(t)` (a 429's Retry-After) holds every caller until `t`; afterwards calls resume at the
    steady rate, not in a burst, so the sector that just said "too many" is not hit by the whole queue.
    """

    def __init__(
        self, per_second: float, burst: int, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError(f"need per_second > 0 and burst >= 1, got {per_second} and {burst}")
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._sleep = sleep
        self._interval = 1.0 / per_second
        self._tolerance = (burst - 1) * self._interval  # how far ahead of the steady rate a burst may run
        self._tat = -math.inf  # when the next call would be due at the steady rate
        self._paused_until = -math.inf
        self._lock = threading.Lock()

    def acquire(self, timeout_s: float | None = None) -> None:
        """Wait for a slot; `RateLimitedError` (TIMEOUT) at once if none comes within `timeout_s`."""
        deadline = math.inf if timeout_s is None else self.clock() + timeout_s
        while True:
            with self._lock:
                now = self.clock()
                go_at = max(now, self._tat - self._tolerance)
                if go_at > deadline:  # refuse now rather than sleep in vain; the slot is not taken
                    raise RateLimitedError(f"rate limit: no slot within {timeout_s:.3g} s", go_at - now)
                self._tat = max(self._tat, go_at) + self._interval
            if go_at <= now:
                return
            self._sleep(go_at - now)
            with self._lock:
                if self._paused_until <= go_at:
                    return
            # A 429 paused the adapter while we slept: our slot predates the pause, so queue behind it.

    def pause_until(self, t: float) -> None:
        """Hold every caller until `t` (this limiter's clock), e.g. a sector's Retry-After."""
        with self._lock:
            self._paused_until = max(self._paused_until, t)
            self._tat = max(self._tat, t + self._tolerance)  # the first slot after the pause is at t

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self.clock() + seconds)


class _Attempt:
    """One attempt, inside the retries: breaker → rate limit → health recording → the kind adapter."""

    def __init__(
        self,
        inner: Adapter,
        breaker: CircuitBreaker,
        limiter: RateLimiter | None,
        health: AdapterHealth,
        timeout_s: float,
    ) -> None:
        self.inner, self.breaker, self.limiter, self.health = inner, breaker, limiter, health
        self.timeout_s = timeout_s
        self.sector, self.version = inner.sector, inner.version

    def call(self, operation: Operation, message: CanonicalMessage, on_sent: OnSent = None) -> CanonicalResult:
        return self.breaker.call(lambda: self._limited(operation, message, on_sent))

    def render(self, operation: Operation, message: CanonicalMessage) -> Any:
        return self.inner.render(operation, message)

    def _limited(self, operation: Operation, message: CanonicalMessage, on_sent: OnSent) -> CanonicalResult:
        if self.limiter is None:
            return self._recorded(operation, message, on_sent)
        self.limiter.acquire(self.timeout_s)
        try:
            return self._recorded(operation, message, on_sent)
        except DeliveryError as exc:
            after = _retry_after(exc)
            if after is not None and exc.retryable:  # the sector said "too many": every caller of this adapter waits
                self.limiter.pause_for(min(after, RETRY_AFTER_CAP_S))
            raise

    def _recorded(self, operation: Operation, message: CanonicalMessage, on_sent: OnSent) -> CanonicalResult:
        if on_sent is not None:  # past the breaker and the limiter: this attempt goes to the sector
            on_sent()
        try:
            result = self.inner.call(operation, message)
        except AnswerPending:  # on its way across a gap: the sector was not called, neither success nor failure
            raise
        except Exception as exc:
            if not isinstance(exc, UnsendableRequest):  # a request that never left is no call of the sector's
                self.health.record_failure(exc)
            raise
        self.health.record_success()
        return result


QUERY_BREAKER, DELIVERY_BREAKER = "query", "delivery"  # which of an adapter's breakers (metrics' label)
# Deliveries (retried under the bundle's policy, behind the deliveries' breaker): the canonical operations and the
# case events a bundle subscribes to; any other name is a named query.
_OPERATIONS = frozenset(str(name) for name in (*Operation, *CaseEventType))


class ResilientAdapter:
    """The adapter the registry hands out: `inner` behind retries, breaker, rate limit and health.

    A canonical operation passes `breaker` (deliveries), any other name — a named query — `query_breaker`.
    A `DeliveryError` leaving `call` has `circuit_wait_s`: how long until that breaker may admit a call (0: now).
    `render` and any other public attribute of `inner` (e.g. a REST adapter's `query`) pass straight
    through, unguarded.
    """

    def __init__(
        self,
        inner: Adapter,
        *,
        retry: RetryPolicy,
        breaker: CircuitBreaker,
        query_breaker: CircuitBreaker,
        limiter: RateLimiter | None,
        health: AdapterHealth,
        timeout_s: float,
        sleep: Sleep | None = None,
    ) -> None:
        self.inner = inner
        self.breaker = breaker
        self.query_breaker = query_breaker
        self.limiter = limiter
        self.health = health
        self.retry = retry
        self.sector = inner.sector
        self.version = inner.version
        health.watch(breaker, query_breaker)
        self._deliveries, self._queries = (
            RetryingAdapter(_Attempt(inner, b, limiter, health, timeout_s), retry, sleep=sleep)
            for b in (breaker, query_breaker))

    def call(self, operation: Operation | str, message: CanonicalMessage, *, on_sent: OnSent = None
             ) -> CanonicalResult:
        """`on_sent` is called before each attempt the breaker and the limiter let through, just before the
        request leaves (the message log records it then: a refused call was never sent)."""
        delivery = str(operation) in _OPERATIONS
        chain, breaker = (self._deliveries, self.breaker) if delivery else (self._queries, self.query_breaker)
        try:
            # Queries go by name (a str), which Adapter.call's `Operation` does not admit.
            return chain.call(operation, message, on_sent=on_sent)  # type: ignore[arg-type]  # a query's name
        except DeliveryError as error:
            if not hasattr(error, "circuit_wait_s"):  # the failures may just have opened it: say for how long
                error.circuit_wait_s = breaker.wait_s()  # type: ignore[attr-defined]  # set only past a breaker
            raise

    def render(self, operation: Operation, message: CanonicalMessage) -> Any:
        return self.inner.render(operation, message)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this wrapper lacks; read `inner` from __dict__ so a half-built object
        # (copy, pickle) raises AttributeError instead of recursing.
        inner = self.__dict__.get("inner")
        if name.startswith("_") or inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


def resilient(
    adapter: Adapter,
    *,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
    limiter: RateLimiter | None,
    health: AdapterHealth,
    query_breaker: CircuitBreaker | None = None,
    timeout_s: float | None = None,
    sleep: Sleep | None = None,
) -> ResilientAdapter:
    """`adapter` behind retries → breaker → rate limit → health (see the module docstring for why).

    `breaker` guards deliveries, `query_breaker` named queries (default: a new breaker like `breaker`).

    `timeout_s` bounds the wait for a rate-limit slot (the bundle's `timeout_ms` / 1000); by default the
    adapter's own `timeout_s` attribute if it has one, else `DEFAULT_SLOT_WAIT_S`. `sleep` is the retries'
    (tests pass a fake); the limiter has its own clock and sleep.
    """
    if timeout_s is None:
        timeout_s = getattr(adapter, "timeout_s", None) or DEFAULT_SLOT_WAIT_S
    return ResilientAdapter(
        adapter, retry=retry, breaker=breaker, query_breaker=query_breaker or breaker.like(), limiter=limiter,
        health=health, timeout_s=timeout_s, sleep=sleep,
    )
