"""The operators' overview (ops/overview.py) through `GET /v1/ops/overview` and `yiwang ops overview`: every figure
exact, each with the link to the list it counts, and the sector administrator's scope.

The scene (tests/support/overview.py): cases open, overdue and closed, a real dead letter and others over the
last days, an open circuit, a rehearsal's report, certificates expiring soon and not. Ferry links and RabbitMQ
queues have tests of their own. Both databases.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pika
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway
from gateway.bootstrap.cli import app as cli
from gateway.bootstrap.ferry_links import StationLinks
from gateway.domain.roles import Identity, NotAllowed, Role
from gateway.persistence import tables as t
from gateway.persistence.ferry_tables import FERRY_TABLES
from gateway.transport.amqp_topology import DEAD_LETTER_QUEUE, queue_name
from ops.overview import Overview, Scope
from ops.readiness import build_readiness
from tests.support.ferry_stations import LINK, FerryClock, LinkClock, make_link
from tests.support.overview import HF, OVERVIEW, SS, TREND, TREND_DAYS, Scene, overview_scene, replace_parts
from tests.support.services import rabbitmq_vhost


def link(page: str, **filter: Any) -> dict[str, Any]:
    return {"page": page, "filter": filter}


@pytest.fixture
def scene(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Scene:
    return overview_scene(make_gateway, simulator)


def test_operators_see_every_figure_exact_with_the_list_it_counts(scene: Scene) -> None:
    shown = scene.overview()
    assert (shown["at"], shown["sector"]) == ("2026-12-02T10:00:00.000+08:00", None)

    cases = shown["cases"]
    counts = {row["state"]: row["count"] for row in cases["by_state"] if row["count"]}
    assert counts == {"accepted": 2, "closed": 1}
    assert len(cases["by_state"]) == 14  # every state, the empty ones too
    assert cases["by_state"][1] == {"state": "accepted", "count": 2, "link": link("cases", state="accepted")}
    assert cases["overdue"] == {"count": 2, "link": link("cases", overdue=True)}  # the closed one is not

    outbox = shown["outbox"]
    assert outbox["pending"] == {"count": 2, "link": link("cases", outbox="pending")}
    assert outbox["queued"]["count"] == 0 and outbox["leased"] == {"count": 1, "link": link("cases", outbox="leased")}
    assert outbox["oldest_due_age_s"] == 8 * 86_400  # the withdrawn case's message, due since the first day
    assert outbox["oldest_due_link"] == link("cases", outbox="due")
    assert shown["queues"] == {"transport": "in_process", "broker": None, "items": [
        {"queue": "outbox", "count": 2, "link": link("cases", outbox="pending")}]}

    letters = shown["dead_letters"]
    assert letters["waiting"] == {"count": 6, "link": link("dead-letters")}
    assert [(r["sector"], r["error_class"], r["count"]) for r in letters["by_class"]] == [
        (HF, "timeout", 2), (HF, "mapping", 1), (SS, "sector_fault", 1), (SS, "timeout", 1), (SS, "transport", 1)]
    assert letters["by_class"][0]["link"] == link("dead-letters", sector=HF, error_class="timeout")
    assert [(d["day"], d["count"]) for d in letters["trend"]] == list(zip(TREND_DAYS, TREND, strict=True))
    assert letters["trend"][-1]["link"] == link("dead-letters", status="any", since="2026-12-02T00:00:00",
                                                until="2026-12-03T00:00:00")

    assert shown["circuits"] == [
        {"sector": HF, "delivery": "closed", "query": "closed", "link": link("adapters", sector=HF)},
        {"sector": SS, "delivery": "open", "query": "closed", "link": link("adapters", sector=SS)}]

    adapters = {a["sector"]: a for a in shown["adapters"]}
    assert sorted(adapters) == [HF, SS]
    social = adapters[SS]
    assert (social["active_version"], social["health"], social["link"]) == (scene.version, "built",
                                                                            link("adapters", sector=SS))
    assert social["versions"] == [{
        "version": scene.version, "status": "active", "test_outcome": None, "rehearsal_outcome": "failed",
        "rehearsed_at": "2026-12-02T09:00:00.000+08:00", "rehearsal_passed": 1, "rehearsal_total": 3,
        "link": link("adapters", sector=SS, version=scene.version)}]
    assert adapters[HF]["versions"][0]["rehearsal_outcome"] is None

    assert [(c["name"], c["sector"], c["days_left"]) for c in shown["certificates"]] == [
        ("gw-server", None, 2.0), ("ss-client", SS, 9.0), ("hf-client", HF, 19.0)]  # 400 days: not yet
    assert shown["certificates"][0]["not_after"] == "2026-12-04T10:00:00.000+08:00"
    assert shown["certificates"][1]["link"] == link("certificates", name="ss-client")
    assert shown["ferry"] == []


def test_a_sector_administrator_sees_their_own_sector_and_no_gateway_wide_figures(scene: Scene) -> None:
    shown = scene.overview(Role.SECTOR_ADMIN, sector=HF)
    assert (shown["sector"], shown["cases"], shown["outbox"], shown["queues"]) == (HF, None, None, None)
    letters = shown["dead_letters"]
    assert letters["waiting"] == {"count": 3, "link": link("dead-letters", sector=HF)}
    assert [(r["sector"], r["error_class"], r["count"]) for r in letters["by_class"]] == [(HF, "timeout", 2),
                                                                                         (HF, "mapping", 1)]
    assert [d["count"] for d in letters["trend"]] == [0, 0, 0, 1, 0, 0, 2]
    assert letters["trend"][3]["link"] == link("dead-letters", sector=HF, status="any", since="2026-11-29T00:00:00",
                                               until="2026-11-30T00:00:00")
    assert [c["sector"] for c in shown["circuits"]] == [HF]
    assert [a["sector"] for a in shown["adapters"]] == [HF]
    assert [c["name"] for c in shown["certificates"]] == ["hf-client"]  # not the gateway's own, not another's


def test_the_administrators_and_the_auditor_see_the_whole_gateway_and_others_nothing(scene: Scene) -> None:
    whole = scene.overview()
    for role in (Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDITOR):
        assert scene.overview(role) == whole
    for role in (Role.HALL_CLIENT, Role.WINDOW, Role.CATALOGUE_ADMIN):
        refused = scene.client(role).get(OVERVIEW)
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("application/problem+json")
    assert TestClient(scene.app).get(OVERVIEW).status_code == 401
    with pytest.raises(NotAllowed, match="总览只对"):  # the service's own door, as the console will call it
        Scope.of(Identity("id_clerk", "a clerk", frozenset({Role.CLERK}), department="x"))


def test_the_cli_shows_the_same_figures(scene: Scene) -> None:
    settings = scene.gateway.settings
    env = {"YIWANG_DATABASE_URL": settings.database_url, "YIWANG_VAR_DIR": str(settings.var_dir),
           "COLUMNS": "250", "YIWANG_LOG_LEVEL": "warning"}
    answer = CliRunner().invoke(cli, ["ops", "overview", "--json"], env=env)
    assert answer.exit_code == 0, answer.output
    printed, api = json.loads(answer.stdout), scene.overview()
    # The command's own clock is the real one (the lease has run out by it), and its process has called no sector
    # (its circuits are closed): what depends on neither is the API's to the letter.
    for part in ("cases", "adapters"):
        assert printed[part] == api[part]
    assert printed["dead_letters"]["by_class"] == api["dead_letters"]["by_class"]
    assert [printed["outbox"][n] for n in ("pending", "queued")] == [api["outbox"][n] for n in ("pending", "queued")]
    tables = CliRunner().invoke(cli, ["ops", "overview"], env=env)
    assert tables.exit_code == 0, tables.output
    lines = tables.stdout.splitlines()
    assert any(line.split() == ["housing_fund", "timeout", "2", "dead-letters", "sector=housing_fund",
                                "error_class=timeout"] for line in lines), tables.stdout
    assert any(line.split()[:3] == ["overdue", "(open)", "2"] for line in lines), tables.stdout


def test_a_bundle_this_process_cannot_build_has_no_circuits_and_shows_unbuildable(
        make_gateway: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YIWANG_SECRET_GJJ_CLIENT_SECRET")  # the housing-fund bundle's secret is missing here
    figures = make_gateway(bundles=(SS, HF)).overview.overview(Scope())
    assert [(c.sector, c.delivery, c.query) for c in figures.circuits] == [(HF, None, None), (SS, "closed", "closed")]
    assert [(a.sector, a.health) for a in figures.adapters] == [(HF, "unbuildable"), (SS, "built")]


# --------------------------------------------------------------------------- ferry links and queues


def test_a_ferry_link_with_a_gap_shows_its_lag_and_gap(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    stations = FerryClock()
    gateway = make_gateway(bundles=())
    link_ = make_link(gateway.engine, tmp_path / "ferry", stations)
    link_.send_up(4)
    link_.carry(link_.far, link_.near, drop=(2,))  # the 2nd batch is lost on the way
    link_.received_by_near()
    stations.advance(minutes=2)
    channels = StationLinks(gateway.engine, FERRY_TABLES, lambda: [link_.link_station])
    overview = replace_ferry(gateway, channels, stations)
    [figure] = overview.overview(Scope()).ferry
    assert (figure.channel, figure.sector, figure.lag, figure.open_gaps, figure.oldest_gap_age_s) == (
        LINK, LINK, 3, 1, 120.0)
    assert (figure.link.page, figure.link.filter) == ("ferry", {"channel": LINK})
    assert overview.overview(Scope(LINK)).ferry == [figure]
    assert overview.overview(Scope(HF)).ferry == []


def replace_ferry(gateway: Gateway, channels: StationLinks, clock: FerryClock) -> Overview:
    """The gateway's overview reading `channels`, on the stations' clock."""
    return replace_parts(gateway.overview, ferry=channels, clock=LinkClock(clock))


def test_queues_are_read_from_the_broker_and_unknown_where_it_cannot_tell(make_gateway: Callable[..., Gateway]
                                                                          ) -> None:
    gateway = make_gateway()
    with rabbitmq_vhost() as url:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = connection.channel()
            channel.queue_declare(queue_name(SS, False), durable=True)
            for n in range(3):
                channel.basic_publish("", queue_name(SS, False), f"message {n}".encode(),
                                      pika.BasicProperties(delivery_mode=2))
        finally:
            connection.close()
        queues = with_broker(gateway, url).overview(Scope()).queues
    assert queues is not None and (queues.transport, queues.broker) == ("amqp", "up")
    counts = {q.queue: q.count for q in queues.items}
    assert counts == {DEAD_LETTER_QUEUE: None, queue_name(SS, False): 3, queue_name(SS, True): None}  # not declared
    links = {q.queue: (q.link.page, q.link.filter) for q in queues.items}
    assert links[DEAD_LETTER_QUEUE] == ("dead-letters", {}) and links[queue_name(SS, True)] == ("adapters",
                                                                                                {"sector": SS})


def test_a_broker_that_does_not_answer_leaves_every_queue_unknown(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    queues = with_broker(gateway, "amqp://guest:guest@127.0.0.1:1/%2F").overview(Scope()).queues
    assert queues is not None and (queues.transport, queues.broker) == ("amqp", "down")
    assert [(q.queue, q.count) for q in queues.items] == [(DEAD_LETTER_QUEUE, None), (queue_name(SS, False), None),
                                                          (queue_name(SS, True), None)]


def with_broker(gateway: Gateway, url: str) -> Overview:
    settings = replace(gateway.settings, amqp_url=url, probe_timeout_ms=2000)
    return replace_parts(gateway.overview, broker=build_readiness(settings, gateway.engine, gateway.registry).broker)


def test_outbox_and_dead_letter_counts_match_the_metrics(scene: Scene) -> None:
    """The overview and /metrics read the same queries: they agree."""
    shown, metrics = scene.overview(), scene.gateway.metrics
    assert metrics.get_sample_value("yiwang_cases_overdue") == shown["cases"]["overdue"]["count"]
    pending = shown["outbox"]["pending"]["count"]
    assert metrics.get_sample_value("yiwang_outbox_messages", {"status": "pending"}) == pending
    assert metrics.get_sample_value("yiwang_outbox_oldest_due_seconds") == shown["outbox"]["oldest_due_age_s"]
    with scene.gateway.engine.connect() as conn:
        dead = conn.execute(select(t.dead_letters.c.id).where(t.dead_letters.c.status == "dead")).all()
    assert len(dead) == shown["dead_letters"]["waiting"]["count"]
