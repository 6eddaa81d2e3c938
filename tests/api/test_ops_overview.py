"""The operators' overview (ops/overview.py) through `GET /v1/ops/overview` and `yiwang ops overview`: every figure
exact, each with the link to the list it counts, and the sector administrator's scope.

The scene, on a pinned clock (Tuesday 2026-11-24 10:00 in Beijing, then eight days on): two cases to a failing
social-security system — the first's submission dies (a real dead letter), the second meets the circuit the
failures opened and waits — and a third withdrawn (closed); eight days later e-supervision flags the two open
ones overdue. Dead letters written through the repository spread over the last days (one just before and one
just after a Beijing midnight), one of them since discarded; a rehearsal's report kept for the social-security
version; certificates expiring in 2, 9, 19 and 400 days. Ferry links and RabbitMQ queues have tests of their own.
Both databases.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.bootstrap.cli import app as cli
from gateway.bootstrap.ferry_links import StationLinks
from gateway.domain.clock import FixedClock
from gateway.domain.roles import Identity, NotAllowed, Role
from gateway.persistence import tables as t
from gateway.persistence.ferry_tables import FERRY_TABLES
from gateway.persistence.repository import Failure
from gateway.transport.amqp_topology import DEAD_LETTER_QUEUE, queue_name
from ops.overview import Overview, Scope
from ops.readiness import build_readiness
from tests.support.cases import outbox_statuses, submit
from tests.support.ferry_stations import LINK, FerryClock, make_link
from tests.support.gateways import PINNED, Keys, drain
from tests.support.pki import TestCA
from tests.support.services import rabbitmq_vhost

OVERVIEW = "/v1/ops/overview"
NOW = PINNED + timedelta(days=8)  # Wednesday 2026-12-02 10:00 in Beijing
SS, HF = "social_security", "housing_fund"
# sector, error class, Beijing time it died, its status now
LETTERS = [
    (SS, "timeout", "2026-11-20T12:00", "dead"),  # before the trend's week
    (HF, "mapping", "2026-11-29T15:00", "dead"),
    (SS, "auth", "2026-11-30T08:00", "discarded"),  # in the trend, no longer waiting
    (SS, "transport", "2026-12-01T23:30", "dead"),  # 15:30 UTC: still Tuesday in Beijing
    (HF, "timeout", "2026-12-02T00:10", "dead"),  # 16:10 UTC on the 1st: Wednesday in Beijing
    (HF, "timeout", "2026-12-02T09:00", "dead"),
]
TREND_DAYS = ["2026-11-26", "2026-11-27", "2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]


@dataclass
class Scene:
    gateway: Gateway
    clock: FixedClock
    version: str  # the social-security bundle's active version
    app: Any

    def client(self, role: Role, **scope: str) -> TestClient:
        return TestClient(self.app, headers=Keys.of(self.gateway, role, **scope))

    def overview(self, role: Role = Role.OPERATOR, **scope: str) -> dict[str, Any]:
        answer = self.client(role, **scope).get(OVERVIEW)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


def beijing(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00").astimezone(UTC)


def link(page: str, **filter: Any) -> dict[str, Any]:
    return {"page": page, "filter": filter}


@pytest.fixture
def scene(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Scene:
    clock = FixedClock(PINNED)
    gateway = make_gateway(clock=clock, sector_endpoints={SS: simulator.url}, bundles=(SS, HF))
    simulator.set_fault("fail")
    first, _ = submit(gateway), submit(gateway)  # 2 deliveries x 3 attempts: past the breaker's threshold of 5
    drain(gateway, lambda: [s for _, s in outbox_statuses(gateway)] == ["dead", "pending"])
    withdrawn = submit(gateway)
    hall = TestClient(create_app(gateway), headers=Keys.issue(gateway).hall)
    assert hall.post(f"/v1/cases/{withdrawn}/withdraw", json={"reason": "不再需要"}).status_code == 200
    clock.advance(NOW - PINNED)
    assert gateway.service.tick() == 2  # the two accepted cases are past their deadline (Tuesday 12-01)
    with gateway.engine.begin() as conn:  # a worker is delivering the withdrawn case's message right now
        conn.execute(update(t.outbox).where(t.outbox.c.case_no == withdrawn)
                     .values(lease_owner="worker-1", lease_until=NOW + timedelta(seconds=30)))
    with gateway.service.uow() as uow:
        for sector, error_class, at, status in LETTERS:
            about = {"case_no": first, "sector": sector, "operation": "submit_case",
                     "idempotency_key": f"{first}:{at}"}
            letter_id = uow.dead_letters.add(None, Failure(error_class, "failed"), beijing(at), about=about)
            if status != "dead":
                uow.conn.execute(update(t.dead_letters).where(t.dead_letters.c.id == letter_id).values(status=status))
        uow.commit()
    version = next(v.version for v in gateway.bundles.versions(SS))
    gateway.bundles.record_rehearsal(SS, version, {"outcome": "failed", "at": "2026-12-02T01:00:00+00:00",
                                                   "run": "r1", "passed": 1, "total": 3, "unreachable": False,
                                                   "items": [], "cleanup": [], "note": None})
    ca = TestCA(now=NOW)
    for name, sector, days in (("gw-server", None, 2), ("ss-client", SS, 9), ("hf-client", HF, 19),
                               ("far", SS, 400)):
        issued = ca.issue(name, days=days + 1, not_before=NOW - timedelta(days=1))
        gateway.certs.import_pem(name, issued.cert_pem, issued.key_pem, sector=sector, actor="test")
    return Scene(gateway, clock, version, create_app(gateway))


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
    assert [(d["day"], d["count"]) for d in letters["trend"]] == list(zip(TREND_DAYS, [0, 0, 0, 1, 1, 1, 2],
                                                                          strict=True))
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
    return replace_parts(gateway.overview, ferry=channels, clock=_Clock(clock))


def replace_parts(overview: Overview, **parts: Any) -> Overview:
    kept = {"engine": overview.engine, "clock": overview.clock, "desk": overview.desk, "bundles": overview.bundles,
            "adapters": overview.adapters, "certs": overview.certs, "ferry": overview.ferry,
            "broker": overview.broker}
    return Overview(**{**kept, **parts})


@dataclass
class _Clock:
    stations: FerryClock

    def now(self) -> datetime:
        return self.stations()


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
