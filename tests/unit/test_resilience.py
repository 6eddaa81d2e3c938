"""Resilience per adapter: circuit breaker, rate limiter, Retry-After, health, and their composition.

No mock library: a tiny scripted adapter implements the contract and records its calls, and a fake
clock whose `sleep` advances time makes every wait instant and exact.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from adapters.contract import (
    AnswerPending,
    CanonicalMessage,
    CanonicalResult,
    DeliveryError,
    FailureClass,
    Operation,
)
from adapters.health import AdapterHealth, is_sector_failure
from adapters.resilience import (
    TRIAL_WAIT_S,
    CircuitBreaker,
    CircuitOpenError,
    RateLimitedError,
    RateLimiter,
    RetryingAdapter,
    RetryPolicy,
    resilient,
    retry_after_cap_s,
)

SUBMIT = Operation.SUBMIT_CASE
MESSAGE: CanonicalMessage = {"idempotency_key": "K-1", "sector_ref": None}
OK: CanonicalResult = {"sector_ref": "REF-1"}
NO_WAIT = RetryPolicy(attempts=1, initial_ms=0, max_ms=0)


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def transport() -> DeliveryError:
    return DeliveryError(FailureClass.TRANSPORT, "connection refused")


def outage() -> DeliveryError:
    return DeliveryError(FailureClass.SECTOR_FAULT, "HTTP 503", retryable=True)


def rejection() -> DeliveryError:
    return DeliveryError(FailureClass.SECTOR_FAULT, "applicant not eligible", retryable=False)


def too_many(after_s: float) -> DeliveryError:
    error = DeliveryError(FailureClass.SECTOR_FAULT, "HTTP 429", retryable=True)
    error.retry_after_s = after_s  # type: ignore[attr-defined]  # what the REST adapter sets on a 429
    return error


Outcome = CanonicalResult | Callable[[], DeliveryError]


class ScriptedAdapter:
    """An adapter implementing the contract: answers from a script (then OK), records every call."""

    sector = "fake_sector"
    version = "1"

    def __init__(self, *script: Outcome, clock: Callable[[], float] = time.monotonic, trace: list[str] | None = None):
        self.script = list(script)
        self.calls: list[float] = []  # when each call arrived
        self.clock = clock
        self.trace = trace
        self._lock = threading.Lock()

    def call(self, operation: Operation, message: CanonicalMessage) -> CanonicalResult:
        with self._lock:
            self.calls.append(self.clock())
            outcome = self.script.pop(0) if self.script else OK
        if self.trace is not None:
            self.trace.append("inner")
        if callable(outcome):
            raise outcome()
        return outcome

    def render(self, operation: Operation, message: CanonicalMessage) -> Any:
        return {"rendered": str(operation)}

    def query(self, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
        return {"query": name, **parameters}


def fails(breaker: CircuitBreaker, error: Callable[[], DeliveryError]) -> DeliveryError:
    def boom() -> CanonicalResult:
        raise error()

    with pytest.raises(DeliveryError) as caught:
        breaker.call(boom)
    return caught.value


# --- circuit breaker ---------------------------------------------------------------------------


def test_breaker_opens_after_threshold_and_then_fails_fast_without_calling() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=30, clock=clock)
    for _ in range(2):
        fails(breaker, transport)
    assert breaker.state == "closed"
    fails(breaker, outage)
    assert breaker.state == "open"

    called: list[int] = []
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: called.append(1))
    assert called == []
    error = refused.value
    assert isinstance(error, DeliveryError)
    assert (error.failure, error.retryable, error.circuit_open) == (FailureClass.SECTOR_FAULT, False, True)
    assert "next trial in 30 s" in str(error) and error.circuit_wait_s == breaker.wait_s() == 30


def test_half_open_admits_one_trial_whose_success_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=30, clock=clock)
    fails(breaker, transport)
    clock.advance(29.9)
    assert breaker.state == "open"
    clock.advance(0.1)
    assert breaker.state == "half_open"

    def trial() -> str:
        # While the trial is in flight every other caller is still refused, and told to ask again shortly.
        with pytest.raises(CircuitOpenError, match="trial call is in flight") as refused:
            breaker.call(lambda: "second")
        assert refused.value.circuit_wait_s == TRIAL_WAIT_S
        return "trial"

    assert breaker.call(trial) == "trial"
    assert breaker.state == "closed"
    assert breaker.call(lambda: "again") == "again"


def test_failed_trial_reopens_for_a_full_reset_period() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=10, clock=clock)
    fails(breaker, transport)
    fails(breaker, transport)
    clock.advance(10)
    fails(breaker, transport)  # the trial: one failure is enough to reopen
    assert breaker.state == "open"
    clock.advance(9)
    assert breaker.state == "open"
    clock.advance(1)
    assert breaker.state == "half_open"


@pytest.mark.parametrize(
    "error",
    [
        rejection,
        lambda: DeliveryError(FailureClass.MAPPING, "cannot render"),
        lambda: DeliveryError(FailureClass.VALIDATION, "hostile XML"),
        lambda: DeliveryError(FailureClass.AUTH, "bad credentials"),
        lambda: too_many(1.0),
    ],
    ids=["business", "mapping", "validation", "auth", "429"],
)
def test_failures_that_say_nothing_about_the_sector_do_not_open_the_breaker(
    error: Callable[[], DeliveryError],
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=30, clock=FakeClock())
    for _ in range(10):
        fails(breaker, error)
    assert breaker.state == "closed"
    assert not is_sector_failure(error())


def test_success_resets_the_streak_but_neutral_outcomes_do_not() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=30, clock=FakeClock())
    fails(breaker, transport)
    fails(breaker, transport)
    breaker.call(lambda: "ok")
    fails(breaker, transport)
    fails(breaker, rejection)
    fails(breaker, transport)
    assert breaker.state == "closed"  # 2, reset, then 2 consecutive sector failures around a rejection
    fails(breaker, transport)
    assert breaker.state == "open"


def test_a_trial_that_learns_nothing_frees_the_slot_for_the_next_caller() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    fails(breaker, transport)
    clock.advance(5)
    fails(breaker, rejection)
    assert breaker.state == "half_open"
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state == "closed"


@pytest.mark.parametrize(
    "refusal",
    [lambda: DeliveryError(FailureClass.AUTH, "HTTP 401 from GET /api: the sector refused our credentials"),
     lambda: DeliveryError(FailureClass.AUTH, "token endpoint unreachable: ConnectError", retryable=True)],
    ids=["401", "token-endpoint-down"],
)
def test_an_authentication_failure_on_the_trial_closes_the_breaker(refusal: Callable[[], DeliveryError]) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    fails(breaker, transport)
    clock.advance(5)
    fails(breaker, refusal)  # the trial: our credentials, not the sector's health
    assert breaker.state == "closed"
    fails(breaker, refusal)  # and they never count towards opening it
    assert breaker.state == "closed"


def test_exactly_one_trial_among_concurrent_callers() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    fails(breaker, transport)
    clock.advance(5)
    release = threading.Event()
    admitted: list[int] = []
    refused: list[int] = []

    def caller(i: int) -> None:
        def trial() -> None:
            admitted.append(i)
            release.wait(5)

        try:
            breaker.call(trial)
        except CircuitOpenError:
            refused.append(i)
            if len(refused) == 7:
                release.set()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert (len(admitted), len(refused)) == (1, 7)
    assert breaker.state == "closed"


def test_a_refusal_tells_the_time_left_and_the_sectors_last_real_answer() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=30, clock=clock)
    page = outage()
    page.last_response = {"status": 503, "headers": {}, "body": "<html>503 Service Unavailable</html>"}
    fails(breaker, lambda: page)
    fails(breaker, transport)  # then no answer at all: the 503 page stays the last one the sector gave
    clock.advance(10)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: "not called")
    assert refused.value.last_response == page.last_response
    assert refused.value.circuit_wait_s == breaker.wait_s() == 20
    assert refused.value.last_failure == "transport: connection refused"
    assert "connection refused" not in refused.value.message  # another call's: not for whoever was refused
    clock.advance(20)
    assert breaker.wait_s() == 0  # half-open: the next caller is the trial


def test_breaker_and_limiter_validate_their_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0, reset_after_s=1)
    with pytest.raises(ValueError, match="max_wait_ms"):
        RetryPolicy(attempts=1, initial_ms=0, max_ms=0, max_wait_ms=-1)
    with pytest.raises(ValueError, match="per_second"):
        RateLimiter(per_second=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(per_second=1, burst=0)


# --- rate limiter -------------------------------------------------------------------------------


def test_token_bucket_bounds_throughput() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(per_second=10, burst=5, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(15):
        limiter.acquire(timeout_s=10)
        times.append(clock.now)
    assert times[:5] == [0.0] * 5  # the burst goes at once
    assert clock.now == pytest.approx(1.0)  # then 10 more at 10/s
    assert all(b - a == pytest.approx(0.1) for a, b in zip(times[4:], times[5:]))

    clock.advance(10)  # idle long enough to refill the bucket, but no further than `burst`
    start = clock.now
    for _ in range(6):
        limiter.acquire(timeout_s=10)
    assert clock.now - start == pytest.approx(0.1)


def test_no_slot_within_the_timeout_is_a_retryable_timeout_that_takes_no_slot() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(per_second=1, burst=1, clock=clock, sleep=clock.sleep)
    limiter.acquire(timeout_s=0)
    with pytest.raises(RateLimitedError) as caught:
        limiter.acquire(timeout_s=0.5)
    error = caught.value
    assert (error.failure, error.retryable, error.rate_limited) == (FailureClass.TIMEOUT, True, True)
    assert error.retry_after_s == pytest.approx(1.0)
    assert "rate limit" in str(error) and clock.sleeps == []
    limiter.acquire(timeout_s=1.0)  # the refused caller did not take the slot at t=1
    assert clock.now == pytest.approx(1.0)


def test_pause_holds_every_caller_then_resumes_at_the_steady_rate() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(per_second=10, burst=5, clock=clock, sleep=clock.sleep)
    limiter.pause_for(2.0)
    times = []
    for _ in range(3):
        limiter.acquire(timeout_s=5)
        times.append(clock.now)
    assert times == pytest.approx([2.0, 2.1, 2.2])  # no burst right after a 429
    limiter.pause_until(clock.now + 3)
    with pytest.raises(RateLimitedError):
        limiter.acquire(timeout_s=1)


def test_a_sleeper_whose_slot_predates_a_pause_queues_behind_it() -> None:
    clock = FakeClock(start=0.0)

    def sleep(seconds: float) -> None:  # a 429 answered while this caller slept
        limiter.pause_until(5.0)
        clock.sleep(seconds)

    limiter = RateLimiter(per_second=1, burst=1, clock=clock, sleep=sleep)
    limiter.acquire(timeout_s=10)
    limiter.acquire(timeout_s=10)
    assert clock.now >= 5.0


# --- retries and Retry-After ---------------------------------------------------------------------


def test_retry_waits_at_least_retry_after_capped_by_policy() -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=3, initial_ms=1, max_ms=200)  # backoff <= 0.2 s; Retry-After cap 2 s
    inner = ScriptedAdapter(lambda: too_many(1.5), lambda: too_many(3600), clock=clock)
    assert RetryingAdapter(inner, policy, sleep=clock.sleep).call(SUBMIT, MESSAGE) == OK
    assert clock.sleeps[0] == pytest.approx(1.5)
    assert clock.sleeps[1] == pytest.approx(retry_after_cap_s(policy)) == pytest.approx(2.0)
    assert retry_after_cap_s(RetryPolicy(attempts=4, initial_ms=100, max_ms=30_000)) == 60.0


def test_without_retry_after_the_backoff_is_unchanged() -> None:
    clock = FakeClock()
    bad = too_many(math.nan)  # unusable Retry-After values are ignored
    inner = ScriptedAdapter(transport, lambda: bad, transport, clock=clock)
    adapter = RetryingAdapter(inner, RetryPolicy(attempts=4, initial_ms=1, max_ms=5), sleep=clock.sleep)
    assert adapter.call(SUBMIT, MESSAGE) == OK
    assert len(clock.sleeps) == 3 and all(0 <= s <= 0.005 for s in clock.sleeps)


def test_429_pauses_other_callers_of_the_same_adapter() -> None:
    clock = FakeClock()
    inner = ScriptedAdapter(lambda: too_many(2.0), clock=clock)
    limiter = RateLimiter(per_second=100, burst=10, clock=clock, sleep=clock.sleep)
    adapter = resilient(
        inner,
        retry=NO_WAIT,
        breaker=CircuitBreaker(3, 30, clock=clock),
        limiter=limiter,
        health=AdapterHealth(clock=clock),
        timeout_s=5,
    )
    start = clock.now
    with pytest.raises(DeliveryError, match="429"):
        adapter.call(SUBMIT, MESSAGE)  # caller A: no retries left
    assert adapter.call(SUBMIT, MESSAGE) == OK  # caller B waits for the pause
    assert inner.calls == [start, pytest.approx(start + 2.0)]
    assert adapter.breaker.state == "closed"


def test_429_retry_waits_then_succeeds_through_the_whole_chain() -> None:
    clock = FakeClock()
    inner = ScriptedAdapter(lambda: too_many(2.0), clock=clock)
    adapter = resilient(
        inner,
        retry=RetryPolicy(attempts=3, initial_ms=1, max_ms=1000),
        breaker=CircuitBreaker(1, 30, clock=clock),
        limiter=RateLimiter(100, 10, clock=clock, sleep=clock.sleep),
        health=AdapterHealth(clock=clock),
        sleep=clock.sleep,
    )
    start = clock.now
    assert adapter.call(SUBMIT, MESSAGE) == OK
    assert inner.calls[1] - start >= 2.0
    assert clock.sleeps[0] >= 2.0  # the retry's own wait honoured Retry-After
    assert adapter.breaker.state == "closed"  # a 429 says nothing about the sector's health


# --- health ------------------------------------------------------------------------------------


def test_health_snapshot_counts_a_sliding_window() -> None:
    clock = FakeClock(start=1_795_996_800.0)  # 2026-11-30T00:00:00Z, a wall-clock time
    health = AdapterHealth(window_s=300, buckets=30, clock=clock)
    assert health.snapshot()["error_rate"] is None
    for _ in range(6):
        health.record_success()
    clock.advance(60)
    health.record_failure(transport())
    health.record_failure(rejection())
    health.record_failure(rejection())
    clock.advance(1)
    health.record_success()

    snap = health.snapshot()
    json.dumps(snap)  # JSON-able
    assert snap["calls"] == 10 and snap["failures"] == 3
    assert snap["error_rate"] == pytest.approx(0.3)
    assert (snap["sector_failures"], snap["sector_error_rate"]) == (1, pytest.approx(0.1))
    assert snap["failures_by_class"] == {"sector_fault": 2, "transport": 1}
    assert snap["last_failure_at"] == "2026-11-30T00:01:00+00:00"
    assert snap["last_success_at"] == "2026-11-30T00:01:01+00:00"
    assert snap["last_failure_class"] == "sector_fault"
    assert snap["breaker"] is None

    clock.advance(250)  # the first six successes (at t=0) slide out of the 5-minute window
    assert (health.snapshot()["calls"], health.snapshot()["failures"]) == (4, 3)
    clock.advance(3600)
    snap = health.snapshot()
    assert (snap["calls"], snap["failures"], snap["error_rate"], snap["failures_by_class"]) == (0, 0, None, {})
    assert (snap["total_calls"], snap["total_failures"]) == (10, 3)
    assert snap["last_failure_class"] == "sector_fault"


def test_health_reports_the_breaker_and_only_calls_that_reached_the_sector() -> None:
    clock = FakeClock()
    inner = ScriptedAdapter(transport, transport, clock=clock)
    adapter = resilient(
        inner,
        retry=RetryPolicy(attempts=4, initial_ms=1, max_ms=5),
        breaker=CircuitBreaker(2, 30, clock=clock),
        limiter=None,
        health=AdapterHealth(clock=clock),
        sleep=clock.sleep,
    )
    with pytest.raises(CircuitOpenError) as caught:
        adapter.call(SUBMIT, MESSAGE)
    assert caught.value.attempts == 3  # two real failures, then a refusal that ends the call
    assert len(inner.calls) == 2
    snap = adapter.health.snapshot()
    assert (snap["calls"], snap["failures"], snap["breaker"]) == (2, 2, "open")


def test_a_message_waiting_for_its_answer_across_a_gap_spends_no_attempt_and_counts_for_nothing() -> None:
    """`AnswerPending` (the ferry kind): not retried, no call of the sector's in the health window or the breaker,
    and its `retry_after_s` pauses no other caller (it is no 429)."""
    clock = FakeClock()
    inner = ScriptedAdapter(*[lambda: AnswerPending("on its way", 300.0)] * 3, clock=clock)
    adapter = resilient(inner, retry=RetryPolicy(attempts=4, initial_ms=1, max_ms=5),
                        breaker=CircuitBreaker(1, 30, clock=clock),
                        limiter=RateLimiter(per_second=100, burst=10, clock=clock, sleep=clock.sleep),
                        health=AdapterHealth(clock=clock), sleep=clock.sleep)
    for _ in range(3):
        with pytest.raises(AnswerPending) as pending:
            adapter.call(SUBMIT, MESSAGE)
        assert pending.value.attempts == 1
    assert adapter.call(SUBMIT, MESSAGE) == OK
    assert len(inner.calls) == 4 and clock.sleeps == []  # no retry, no pause
    snap = adapter.health.snapshot()
    assert (snap["calls"], snap["failures"], snap["breaker"]) == (1, 0, "closed")


# --- composition -------------------------------------------------------------------------------


def traced(trace: list[str], clock: FakeClock, *script: Outcome, threshold: int = 5) -> Any:
    """The resilient chain with every layer writing to `trace` (subclasses, not mocks)."""

    class Breaker(CircuitBreaker):
        def call(self, fn: Callable[[], Any]) -> Any:
            trace.append("breaker")
            return super().call(fn)

    class Limiter(RateLimiter):
        def acquire(self, timeout_s: float | None = None) -> None:
            trace.append("limiter")
            super().acquire(timeout_s)

    class Health(AdapterHealth):
        def record_success(self) -> None:
            trace.append("health:ok")
            super().record_success()

        def record_failure(self, exc: BaseException) -> None:
            trace.append(f"health:{exc.failure}")  # type: ignore[attr-defined]
            super().record_failure(exc)

    def sleep(seconds: float) -> None:
        trace.append("sleep")
        clock.advance(1.0)  # a fixed step keeps the jittered backoff deterministic

    return resilient(
        ScriptedAdapter(*script, clock=clock, trace=trace),
        retry=RetryPolicy(attempts=3, initial_ms=1, max_ms=5),
        breaker=Breaker(threshold, 0.5, clock=clock),
        limiter=Limiter(100, 10, clock=clock, sleep=clock.sleep),
        health=Health(clock=clock),
        sleep=sleep,
    )


def test_each_retry_attempt_passes_breaker_limiter_and_health_in_order() -> None:
    trace: list[str] = []
    adapter = traced(trace, FakeClock(), transport)
    assert adapter.call(SUBMIT, MESSAGE) == OK
    attempt_1 = ["breaker", "limiter", "inner", "health:transport"]
    attempt_2 = ["breaker", "limiter", "inner", "health:ok"]
    assert trace == [*attempt_1, "sleep", *attempt_2]


def test_an_open_breaker_ends_the_call_at_once_saying_when_it_may_close() -> None:
    trace: list[str] = []
    adapter = traced(trace, FakeClock(), transport, threshold=1)
    # Attempt 1 opens the breaker; the retry's wait outlasts reset_after, so attempt 2 is the trial.
    assert adapter.call(SUBMIT, MESSAGE) == OK
    assert trace == ["breaker", "limiter", "inner", "health:transport", "sleep", "breaker", "limiter", "inner", "health:ok"]

    trace.clear()
    stuck = traced(trace, FakeClock(), transport, transport, transport, threshold=1)
    stuck.breaker.reset_after_s = 3600  # an outage that outlasts every retry
    with pytest.raises(CircuitOpenError) as caught:
        stuck.call(SUBMIT, MESSAGE)
    # No attempt is spent on refusals: the caller learns when the breaker may close (3600 s less the 1 s slept).
    assert (caught.value.attempts, caught.value.retryable, caught.value.circuit_wait_s) == (2, False, 3599)
    assert trace == ["breaker", "limiter", "inner", "health:transport", "sleep", "breaker"]


def test_render_and_extra_methods_pass_through_and_layers_are_exposed() -> None:
    inner = ScriptedAdapter()
    health = AdapterHealth()
    breaker = CircuitBreaker(5, 30)
    adapter = resilient(inner, retry=NO_WAIT, breaker=breaker, limiter=None, health=health)
    assert (adapter.inner, adapter.breaker, adapter.health) == (inner, breaker, health)
    assert (adapter.sector, adapter.version) == ("fake_sector", "1")
    assert adapter.render(SUBMIT, MESSAGE) == {"rendered": "submit_case"}
    assert adapter.query("housing_fund_balance", {"id": 1}) == {"query": "housing_fund_balance", "id": 1}
    assert inner.calls == []  # render and query are not guarded calls
    with pytest.raises(AttributeError):
        adapter._script  # noqa: B018 - private names of the inner adapter stay private
    assert health.breaker is breaker


def test_named_queries_and_deliveries_pass_breakers_of_their_own() -> None:
    clock = FakeClock()
    inner = ScriptedAdapter(transport, transport, clock=clock)
    adapter = resilient(inner, retry=NO_WAIT, breaker=CircuitBreaker(2, 30, clock=clock), limiter=None,
                        health=AdapterHealth(clock=clock))
    for _ in range(2):
        with pytest.raises(DeliveryError):
            adapter.call("housing_fund_balance", {"query": {}})  # type: ignore[arg-type]  # a query, by name
    assert (adapter.query_breaker.state, adapter.breaker.state) == ("open", "closed")
    assert adapter.call(SUBMIT, MESSAGE) == OK  # cases still go
    with pytest.raises(CircuitOpenError):
        adapter.call("housing_fund_balance", {"query": {}})  # type: ignore[arg-type]
    snapshot = adapter.health.snapshot()
    assert (snapshot["breaker"], snapshot["query_breaker"]) == ("closed", "open")


# --- thread safety -----------------------------------------------------------------------------


def test_threads_sharing_one_adapter_keep_counts_exact() -> None:
    rejections = [rejection if i % 10 == 0 else OK for i in range(1600)]
    inner = ScriptedAdapter(*rejections)
    adapter = resilient(
        inner,
        retry=RetryPolicy(attempts=2, initial_ms=0, max_ms=0),
        breaker=CircuitBreaker(3, 30),
        limiter=RateLimiter(per_second=1e9, burst=1000),
        health=AdapterHealth(),
    )
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            try:
                adapter.call(SUBMIT, MESSAGE)
                result = "ok"
            except DeliveryError:
                result = "rejected"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    snap = adapter.health.snapshot()
    assert len(inner.calls) == len(outcomes) == 1600
    assert outcomes.count("rejected") == 160
    assert (snap["calls"], snap["failures"], snap["total_calls"]) == (1600, 160, 1600)
    assert snap["breaker"] == "closed"  # rejections never count against the sector
