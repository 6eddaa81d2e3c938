"""ops/alerts.yml: every rule is complete, and every metric its expression names is one a running gateway
(PostgreSQL, RabbitMQ, a delivered case, a certificate) actually exposes — the ferry's, one its collector reads
from links in trouble. `promtool check rules` too, when promtool is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.bootstrap.ferry_links import StationLinks
from gateway.domain.clock import FixedClock
from gateway.persistence.ferry_tables import FERRY_TABLES
from gateway.transport.amqp_topology import DELIVER_EXCHANGE, Envelope, Topology, queue_name, routing_key
from ops.gateway_metrics import ferry_metrics
from tests.support.cases import state, submit
from tests.support.ferry_stations import FerryClock, make_link
from tests.support.gateways import drain
from tests.support.pki import TestCA
from tests.support.services import rabbitmq_vhost

RULES = Path(__file__).parents[2] / "ops" / "alerts.yml"
REQUIRED = {"DeadLettersRising", "CircuitOpen", "OutboxNotDraining", "CertificateExpiring", "CasesOverdue",
            "BrokerDown", "GatewayNotReady", "SectorAnswerMismatch", "SectorReferenceClash",
            "FerryGapOpen", "FerryBeaconLate", "FerryBatchesQuarantined", "FerryBatchesUnacknowledged",
            "FerryBatchesUnwritten", "FerryNoBeacon"}
# Words of PromQL that look like names but are not metrics.
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
SECTOR = "social_security"


def rules(group: str | None = None) -> list[dict[str, Any]]:
    """The rules of every group, or of one."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for g in document["groups"] if group in (None, g["name"]) for rule in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: what is left once label matchers, label lists, ranges,
    functions, aggregations and keywords are taken out."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", bare)
    return {name for name in names if name not in KEYWORDS}


def test_every_rule_is_complete_and_tells_the_operator_what_to_do() -> None:
    assert {rule["alert"] for rule in rules()} >= REQUIRED
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert "yiwang " in rule["annotations"]["description"] or "/readyz" in rule["annotations"]["description"]
        assert metric_names(rule["expr"]), f"{rule['alert']}: no metric in {rule['expr']!r}"
    severities = {rule["labels"]["severity"] for rule in rules() if rule["alert"] == "CertificateExpiring"}
    assert severities == {"warning", "critical"}  # < 30 days, then < 7


def test_the_name_parser_finds_metrics_only() -> None:
    assert metric_names('max by (sector) (delta(yiwang_dead_letters{status="x"}[15m])) > 0') == {"yiwang_dead_letters"}
    assert metric_names("min(a_metric) < 30 and min(b_metric offset 5m) >= 7") == {"a_metric", "b_metric"}


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    """A virtual host of this module's own: the message published below reaches no other test's worker."""
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator, broker_url: str) -> Gateway:
    gateway = make_gateway(sector_endpoints={SECTOR: simulator.url}, amqp_url=broker_url, metrics_cache_ms=0)
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:  # what a worker declares when it starts consuming the sector
        Topology(gateway.settings.delivery_limit).declare_sector(connection.channel(), SECTOR)
    finally:
        connection.close()
    return gateway


def exposed(gateway: Gateway) -> set[str]:
    """The names of every sample one scrape of GET /metrics shows."""
    text = TestClient(create_app(gateway)).get("/metrics").text
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_every_metric_an_alert_names_is_exposed_by_a_running_gateway(gateway: Gateway) -> None:
    case_no = submit(gateway)
    drain(gateway, lambda: state(gateway, case_no) == "approved")  # the per-process counters have samples
    gateway.certs.import_pem("gw-client", TestCA().issue("gateway client", days=90).cert_pem, actor="test")
    names = exposed(gateway)
    assert {"yiwang_broker_up", "yiwang_queue_messages", "yiwang_deliveries_total"} <= names
    for rule in rules("yiwang"):
        missing = metric_names(rule["expr"]) - names
        assert not missing, f"{rule['alert']} uses {sorted(missing)}, which the gateway does not expose"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_queue_depths_come_from_the_broker(gateway: Gateway, broker_url: str) -> None:
    queue = queue_name(SECTOR, green=False)
    assert gateway.metrics.get_sample_value("yiwang_queue_messages", {"queue": queue}) == 0
    assert gateway.metrics.get_sample_value("yiwang_broker_up") == 1
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        body = Envelope(1, "NOPE", SECTOR, "submit_case", "NOPE:1:submit_case").body()
        channel.basic_publish(DELIVER_EXCHANGE, routing_key(SECTOR, green=False), body)
        assert gateway.metrics.get_sample_value("yiwang_queue_messages", {"queue": queue}) == 1
    finally:
        channel.queue_purge(queue)
        connection.close()


def test_every_metric_a_ferry_rule_names_is_exposed_for_links_in_trouble(engine: Engine, tmp_path: Path) -> None:
    """Two links made by real stations on the database: a two-way one whose far side receipts nothing and lost a
    batch on the way back, a one-way one whose far side beacons; what the collector reads of them at scrape time
    is what the rules compare."""
    clock = FerryClock()
    two_way = make_link(engine, tmp_path, clock, link="public_security", mode="two_way")
    one_way = make_link(engine, tmp_path, clock, link="civil_affairs", mode="one_way")
    for link in (two_way, one_way):
        link.send_down(2)
        link.send_up(3)
        link.carry(link.far, link.near, drop=(2,))
        link.received_by_near()
    clock.advance(minutes=1)
    one_way.far.beacon_due()
    one_way.carry(one_way.far, one_way.near)
    two_way.forged_into_near()
    for link in (two_way, one_way):
        link.received_by_near()
    clock.advance(minutes=20)
    links = StationLinks(engine, FERRY_TABLES, lambda: [two_way.link_station, one_way.link_station])
    scraped = ferry_metrics(links, FixedClock(clock()))
    value = {(s.name, tuple(s.labels.values())): s.value for family in scraped for s in family.samples}
    ps, ca = ("public_security",), ("civil_affairs",)
    assert value["yiwang_ferry_unacknowledged_batches", ps] == 2 and value["yiwang_ferry_unwritten_batches", ps] == 0
    assert value["yiwang_ferry_oldest_unacknowledged_seconds", ps] == 21 * 60
    assert value["yiwang_ferry_resend_after_seconds", ps] == 300
    assert ("yiwang_ferry_resend_after_seconds", ca) not in value  # one-way: no receipts, no resends
    assert value["yiwang_ferry_open_gaps", ps] == 1 and value["yiwang_ferry_oldest_gap_seconds", ps] == 21 * 60
    assert value["yiwang_ferry_lag_batches", ps] == 2  # 3 seen, 1 applied with none missing below
    assert value["yiwang_ferry_quarantined_total", ("public_security", "unreadable")] == 1
    assert value["yiwang_ferry_quarantined_total", ("civil_affairs", "unreadable")] == 0
    assert value["yiwang_ferry_met_again_total", ("public_security", "batch")] == 0  # counted: test_ferry_station
    assert value["yiwang_ferry_met_again_total", ("civil_affairs", "signal")] == 0
    assert value["yiwang_ferry_beacon_age_seconds", ca] == 20 * 60
    assert value["yiwang_ferry_beacon_interval_seconds", ca] == 60
    assert value["yiwang_ferry_last_batch_age_seconds", ("civil_affairs", "down")] == 21 * 60
    names = {name for name, _ in value}
    for rule in rules("yiwang-ferry"):
        missing = metric_names(rule["expr"]) - names
        assert not missing, f"{rule['alert']} uses {sorted(missing)}, which the ferry's collector does not expose"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Prometheus' own check)")
def test_promtool_accepts_the_rules() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
