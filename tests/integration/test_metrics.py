"""Every metric moves: real cases delivered to the simulator, dead letters, an open circuit, an overdue case, a
certificate, a backlog in the outbox — read back as Prometheus sees them, on SQLite and PostgreSQL. And a worker
serves the same registry on YIWANG_METRICS_PORT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import FixedClock
from ops.gateway_metrics import ERROR_CLASSES, Cached
from tests.support.cases import outbox_statuses, state, submit
from tests.support.gateways import PINNED, drain
from tests.support.pki import TestCA

SECTOR = "social_security"
YIWANG = str(Path(sys.executable).with_name("yiwang"))


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Gateway:
    return make_gateway(sector_endpoints={SECTOR: simulator.url}, metrics_cache_ms=0)


def sample(gateway: Gateway, metric: str, /, **labels: str) -> float | None:
    return gateway.metrics.get_sample_value(metric, labels)


def deliveries(gateway: Gateway, operation: str, outcome: str) -> float:
    return sample(gateway, "yiwang_deliveries_total", sector=SECTOR, operation=operation, outcome=outcome) or 0.0


def test_a_delivered_case_counts_times_and_shows_in_the_case_and_outbox_gauges(
    gateway: Gateway, simulator: SocialSecuritySimulator
) -> None:
    assert sample(gateway, "yiwang_cases", state="approved") == 0
    case_no = submit(gateway)
    assert sample(gateway, "yiwang_outbox_messages", status="pending") == 1
    drain(gateway, lambda: state(gateway, case_no) == "approved")
    assert deliveries(gateway, "submit_case", "delivered") == 1
    assert deliveries(gateway, "query_status", "delivered") >= 1  # polled until the sector decided
    timed = sample(gateway, "yiwang_delivery_duration_seconds_count", sector=SECTOR, operation="submit_case")
    assert timed == 1 and 0 < (sample(gateway, "yiwang_delivery_duration_seconds_sum", sector=SECTOR,
                                      operation="submit_case") or 0) < 5
    assert sample(gateway, "yiwang_delivery_duration_seconds_bucket", sector=SECTOR, operation="submit_case",
                  le="60.0") == 1
    assert sample(gateway, "yiwang_cases", state="approved") == 1
    assert sample(gateway, "yiwang_outbox_messages", status="pending") == 0
    assert sample(gateway, "yiwang_cases_overdue") == 0
    text = TestClient(create_app(gateway)).get("/metrics").text  # no key, as Prometheus scrapes
    assert f'yiwang_deliveries_total{{operation="submit_case",outcome="delivered",sector="{SECTOR}"}} 1.0' in text


def test_a_dead_letter_shows_by_sector_and_class_and_repeated_failures_open_the_circuit(
    gateway: Gateway, simulator: SocialSecuritySimulator
) -> None:
    for error_class in ERROR_CLASSES:  # every class shows a 0 first: an alert on the change sees the first one
        assert sample(gateway, "yiwang_dead_letters", sector=SECTOR, error_class=error_class) == 0
    assert sample(gateway, "yiwang_circuit_state", sector=SECTOR, breaker="delivery", state="closed") == 1
    simulator.set_fault("fail")  # 503 on every attempt: past the retry policy (3 attempts)
    submit(gateway)
    drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")])
    assert deliveries(gateway, "submit_case", "dead") == 1
    assert sample(gateway, "yiwang_dead_letters", sector=SECTOR, error_class="sector_fault") == 1
    assert sample(gateway, "yiwang_dead_letters", sector=SECTOR, error_class="transport") == 0
    assert sample(gateway, "yiwang_outbox_messages", status="dead") == 1
    assert sample(gateway, "yiwang_circuit_open", sector=SECTOR, breaker="delivery") == 0  # 3 failures: under 5

    submit(gateway)  # 2 more failures: the breaker opens, and the case waits for it instead of dying
    drain(gateway, lambda: deliveries(gateway, "submit_case", "waiting") == 1)
    assert [s for _, s in outbox_statuses(gateway)] == ["dead", "pending"]
    assert sample(gateway, "yiwang_dead_letters", sector=SECTOR, error_class="sector_fault") == 1
    assert sample(gateway, "yiwang_circuit_open", sector=SECTOR, breaker="delivery") == 1
    assert [sample(gateway, "yiwang_circuit_state", sector=SECTOR, breaker="delivery", state=s)
            for s in ("closed", "open", "half_open")] == [0, 1, 0]
    assert sample(gateway, "yiwang_circuit_open", sector=SECTOR, breaker="query") == 0  # the hall's queries go on

    [letter] = gateway.service.dead_letters()
    gateway.dead_letters.replay(letter.id, by="test", reason="test")  # an operator replays it: it waits no more
    assert sample(gateway, "yiwang_dead_letters", sector=SECTOR, error_class="sector_fault") == 0


def test_a_due_message_nobody_delivers_ages_in_the_outbox(
    make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator
) -> None:
    clock = FixedClock(PINNED)
    gateway = make_gateway(clock=clock, sector_endpoints={SECTOR: simulator.url}, metrics_cache_ms=0)
    submit(gateway)
    assert sample(gateway, "yiwang_outbox_oldest_due_seconds") == 0
    clock.advance(timedelta(minutes=10))  # no dispatcher ran
    assert sample(gateway, "yiwang_outbox_oldest_due_seconds") == 600
    drain(gateway, lambda: outbox_statuses(gateway)[0] == ("submit_case", "done"))
    assert sample(gateway, "yiwang_outbox_oldest_due_seconds") == 0  # the next poll is not due yet


def test_an_overdue_open_case_is_counted(make_gateway: Callable[..., Gateway]) -> None:
    clock = FixedClock(PINNED)  # Tuesday: the promise is 5 working days
    gateway = make_gateway(clock=clock, bundles=(), metrics_cache_ms=0)  # the back office decides
    case_no = submit(gateway)
    assert (state(gateway, case_no), sample(gateway, "yiwang_cases_overdue")) == ("accepted", 0)
    clock.advance(timedelta(days=10))
    gateway.service.tick()  # e-supervision flags it
    assert gateway.service.get(case_no).deadline.overdue  # type: ignore[union-attr]
    assert sample(gateway, "yiwang_cases_overdue") == 1
    assert sample(gateway, "yiwang_cases", state="accepted") == 1


def test_certificate_days_to_expiry_stand_beside_the_seconds(make_gateway: Callable[..., Gateway]) -> None:
    clock = FixedClock(PINNED)
    gateway = make_gateway(clock=clock, bundles=(), metrics_cache_ms=0)
    issued = TestCA(now=PINNED).issue("sector client", days=20)
    gateway.certs.import_pem("gjj-client", issued.cert_pem, sector="housing_fund", actor="test")
    labels = {"name": "gjj-client", "sector": "housing_fund"}
    days = sample(gateway, "yiwang_certificate_days_to_expiry", **labels)
    seconds = sample(gateway, "yiwang_certificate_expiry_seconds", **labels)
    assert days is not None and seconds is not None and abs(days - seconds / 86_400) < 1e-6
    assert abs(days - (issued.cert.not_valid_after_utc - PINNED).total_seconds() / 86_400) < 1e-6


def test_shared_gauges_are_cached_between_scrapes(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=(), metrics_cache_ms=60_000)
    assert sample(gateway, "yiwang_cases", state="accepted") == 0
    submit(gateway)
    assert sample(gateway, "yiwang_cases", state="accepted") == 0  # a scrape storm is answered from the cache


def test_a_failing_collector_yields_nothing_and_warns_once_a_minute(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]

    def broken() -> list[Metric]:
        raise ConnectionError("database gone")

    registry = CollectorRegistry()
    registry.register(Cached("broken", broken, cache_s=0, clock=lambda: now[0]))
    registry.register(Cached("fine", lambda: [GaugeMetricFamily("yiwang_fine", "fine", value=1)], cache_s=0))
    for step in (0.0, 30.0, 61.0):
        now[0] = step
        assert b"yiwang_fine 1.0" in generate_latest(registry)  # the rest of /metrics keeps answering
    captured = capsys.readouterr()  # structlog prints to stdout until the first configure_logging, then stderr
    assert (captured.out + captured.err).count("metrics collector failed") == 2  # at 0 and 61 s, not at 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_worker_serves_its_registry_on_the_metrics_port(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()
    env = {**os.environ, "YIWANG_DATABASE_URL": sqlite_url, "YIWANG_VAR_DIR": str(tmp_path / "var"),
           "YIWANG_METRICS_PORT": str(port), "YIWANG_DISPATCH_IDLE_MS": "50"}
    worker = subprocess.Popen([YIWANG, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
                break
            except httpx.TransportError:
                assert worker.poll() is None and time.monotonic() < deadline, "the worker serves no metrics"
                time.sleep(0.1)
        assert answer.status_code == 200
        assert "# TYPE yiwang_deliveries_total counter" in answer.text
        assert "yiwang_ready 1.0" in answer.text and 'yiwang_outbox_messages{status="pending"} 0.0' in answer.text
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
