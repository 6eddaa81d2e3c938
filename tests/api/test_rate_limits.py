"""Per-identity rate limits: token buckets, and a 429 problem with Retry-After from every guarded route."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from gateway.bootstrap.app import Gateway, create_app
from gateway.config import ConfigError, Settings
from gateway.domain.roles import Role
from gateway.security.rate_limits import TokenBuckets, rate_limiter, retry_after_header
from tests.support.gateways import Keys


class HandTimer:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    timer = HandTimer()
    buckets = TokenBuckets(per_s=2, burst=3, timer=timer)
    assert [buckets.wait_s("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.wait_s("a") == pytest.approx(0.5)  # one token comes back every half second
    timer.now += 0.5
    assert buckets.wait_s("a") == 0
    assert buckets.wait_s("a") > 0
    timer.now += 60  # a long pause refills to the burst, no further
    assert [buckets.wait_s("a") for _ in range(4)][-1] > 0


def test_each_identity_has_its_own_bucket() -> None:
    buckets = TokenBuckets(per_s=1, burst=1, timer=HandTimer())
    assert buckets.wait_s("a") == 0 and buckets.wait_s("a") > 0
    assert buckets.wait_s("b") == 0


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert [retry_after_header(w) for w in (0.01, 1.0, 1.2)] == ["1", "1", "2"]


def test_no_rate_means_no_limiter_and_the_burst_defaults_to_twice_the_rate() -> None:
    assert rate_limiter(None, None) is None
    limiter = rate_limiter(2.5, None)
    assert limiter is not None and limiter.burst == 5


@pytest.mark.parametrize(("env", "message"), [
    ({"YIWANG_RATE_LIMIT_PER_S": "0"}, "YIWANG_RATE_LIMIT_PER_S must be a positive number"),
    ({"YIWANG_RATE_LIMIT_PER_S": "fast"}, "invalid setting"),
    ({"YIWANG_RATE_LIMIT_BURST": "0"}, "YIWANG_RATE_LIMIT_BURST must be a positive number"),
])
def test_bad_settings_are_readable_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_settings_are_read() -> None:
    settings = Settings.from_env({"YIWANG_RATE_LIMIT_PER_S": "0.5", "YIWANG_RATE_LIMIT_BURST": "3"})
    assert (settings.rate_limit_per_s, settings.rate_limit_burst) == (0.5, 3)
    assert Settings.from_env({}).rate_limit_per_s is None  # off by default


def test_over_the_limit_is_a_429_problem_with_retry_after(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=(), rate_limit_per_s=0.5, rate_limit_burst=2)
    app = create_app(gateway)
    busy = TestClient(app, headers=Keys.of(gateway, Role.HALL_CLIENT))
    other = TestClient(app, headers=Keys.of(gateway, Role.HALL_CLIENT))

    assert [busy.get("/v1/matters").status_code for _ in range(2)] == [200, 200]
    refused = busy.get("/v1/matters")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:yiwang:problem:rate-limited"
    assert refused.headers["Retry-After"] == "2"  # one token every 2 s
    assert busy.post("/v1/cases/lookup", json={"id_number": "x"}).status_code == 429  # every guarded route
    assert other.get("/v1/matters").status_code == 200  # another identity is not slowed down
    assert TestClient(app).get("/v1/matters").status_code == 401  # no key: no bucket to spend


def test_refused_calls_cost_a_token_too(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=(), rate_limit_per_s=0.5, rate_limit_burst=2)
    prober = TestClient(create_app(gateway), headers=Keys.of(gateway, Role.HALL_CLIENT))
    assert [prober.get("/v1/identities").status_code for _ in range(3)] == [403, 403, 429]


def test_without_a_limit_many_calls_pass(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=())
    client = TestClient(create_app(gateway), headers=Keys.of(gateway, Role.HALL_CLIENT))
    assert {client.get("/healthz").status_code for _ in range(5)} == {200}
    assert {client.post("/v1/cases/lookup", json={"id_number": "x"}).status_code for _ in range(50)} == {200}
