"""`GET /readyz`: ready, degraded by one sector's open circuit (still 200), and 503 when the database or the
broker does not answer — real connections to closed ports, never the shared services stopped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.persistence.engine import make_engine
from ops.gateway_metrics import register_gateway_metrics
from ops.readiness import build_readiness
from tests.support.cases import outbox_statuses, submit
from tests.support.gateways import drain

CLOSED_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1
CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"
PROBLEM = "application/problem+json"


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Gateway:
    return make_gateway(sector_endpoints={"social_security": simulator.url}, metrics_cache_ms=0)


def readyz(gateway: Gateway) -> Any:
    return TestClient(create_app(gateway)).get("/readyz")  # no key, like a load balancer's probe


def scrape_with(gateway: Gateway) -> CollectorRegistry:
    """The gateway's collectors, registered afresh on what `gateway` holds now (its engine, its readiness)."""
    registry = CollectorRegistry()
    register_gateway_metrics(registry, engine=gateway.engine, clock=gateway.service.clock, adapters=gateway.registry,
                             certs=gateway.certs, readiness=gateway.readiness, cache_s=0)
    return registry


def test_ready_names_each_check(gateway: Gateway) -> None:
    answer = readyz(gateway)
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["status"] == "up"
    assert body["checks"]["broker"] == {"status": "not_configured"}
    assert body["checks"]["adapters"]["social_security"]["circuit"] == "closed"
    assert body["checks"]["adapters"]["social_security"]["query_circuit"] == "closed"
    assert gateway.metrics.get_sample_value("yiwang_ready") == 1
    assert gateway.metrics.get_sample_value("yiwang_broker_up") is None  # no broker configured: no gauge


def test_an_open_circuit_degrades_but_keeps_the_gateway_ready(gateway: Gateway,
                                                              simulator: SocialSecuritySimulator) -> None:
    simulator.set_fault("fail")
    for _ in range(2):  # 2 deliveries x 3 attempts: past the breaker's threshold of 5
        submit(gateway)
    drain(gateway, lambda: [s for _, s in outbox_statuses(gateway)] == ["dead", "pending"])  # the 2nd waits
    answer = readyz(gateway)
    assert answer.status_code == 200  # one sector down must not pull every instance out of the balancer
    assert answer.json()["status"] == "degraded"
    assert answer.json()["checks"]["adapters"]["social_security"]["circuit"] == "open"
    assert gateway.metrics.get_sample_value("yiwang_ready") == 1


def test_an_unbuildable_bundle_degrades(make_gateway: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YIWANG_SECRET_GJJ_CLIENT_SECRET")  # the housing-fund bundle's secret is missing here
    gateway = make_gateway(bundles=("social_security", "housing_fund"))
    body = readyz(gateway).json()
    assert body["status"] == "degraded"
    assert body["checks"]["adapters"]["housing_fund"]["status"] == "unbuildable"
    assert "error" not in body["checks"]["adapters"]["housing_fund"]  # no key needed: the why stays in the log


def test_a_database_that_does_not_answer_makes_it_not_ready(gateway: Gateway) -> None:
    unreachable = make_engine(CLOSED_POSTGRES)
    settings = replace(gateway.settings, database_url=CLOSED_POSTGRES)
    down = replace(gateway, settings=settings, engine=unreachable,
                   readiness=build_readiness(settings, unreachable, gateway.registry))
    try:
        answer = readyz(down)
        assert answer.status_code == 503 and answer.headers["content-type"].startswith(PROBLEM)
        body = answer.json()
        assert (body["type"], body["status"], body["detail"]) == ("urn:yiwang:problem:not-ready", 503,
                                                                  "down: database")
        assert body["checks"]["database"] == {"status": "down", "error": "OperationalError"}
        assert body["checks"]["adapters"]["social_security"]["circuit"] == "closed"  # still reported
        scraped = scrape_with(down)  # /metrics keeps answering: the database's gauges are simply absent
        assert scraped.get_sample_value("yiwang_ready") == 0
        assert scraped.get_sample_value("yiwang_database_up") == 0
        assert scraped.get_sample_value("yiwang_outbox_messages", {"status": "pending"}) is None
        assert scraped.get_sample_value("yiwang_circuit_open", {"sector": "social_security", "breaker": "delivery"}) == 0
    finally:
        unreachable.dispose()


def test_a_broker_that_does_not_answer_makes_it_not_ready(gateway: Gateway) -> None:
    settings = replace(gateway.settings, amqp_url=CLOSED_BROKER)
    down = replace(gateway, settings=settings, readiness=build_readiness(settings, gateway.engine, gateway.registry))
    answer = readyz(down)
    assert answer.status_code == 503
    body = answer.json()
    assert body["detail"] == "down: broker"
    assert body["checks"]["broker"] == {"status": "down", "error": "AMQPConnectionError"}
    assert body["checks"]["database"]["status"] == "up"
    scraped = scrape_with(down)
    assert (scraped.get_sample_value("yiwang_broker_up"), scraped.get_sample_value("yiwang_ready")) == (0, 0)
    assert scraped.get_sample_value("yiwang_queue_messages", {"queue": "yiwang.dead-letters"}) is None
