"""Guaranteed delivery under faults, proven on this machine's real PostgreSQL and RabbitMQ.

Each scenario runs a hundred applications through one `yiwang serve` and three `yiwang worker`s,
breaks something under load, and ends with the ledger check of `tests/support/fault_harness.py`: the sector
simulators applied exactly one effect per case the hall was told was accepted, no case or event is
missing, every stored state is what its events rebuild, nothing is left open. The negative control
shows the same check failing when the idempotency keys are (deliberately) not stable.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import Engine

from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.public_security import PublicSecuritySimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.domain.roles import Role
from gateway.persistence.repository import DeadLetter
from tests.support.fault_harness import (
    YIWANG,
    Cluster,
    LedgerReport,
    Load,
    PrivateBroker,
    create_database,
    drop_database,
    free_port,
    harness_engine,
    in_flight,
    ledger_check,
    prepare_database,
    rabbitmqctl,
    terminate_gateway_sessions,
    unpublished_notifications,
    vhost_connections,
    wait_until,
)
from tests.support.gateways import COMPLETE_APPLICATION, PARALLEL_APPLICATION
from tests.support.services import PG_ADMIN_URL, PG_HOW_TO_START, rabbitmq_vhost, service_missing

pytestmark = pytest.mark.cluster  # dealt to two xdist workers at most (tests/support/schedule.py)

# Applications per scenario: enough that the load outlasts its faults (four worker kills a second apart, a dozen
# database terminations 0.4 s apart, the broker stopped once a quarter of the cases reached the sector) with a
# sector call in flight each time; more cases add CPU (the API and workers are CPU-bound on this machine), not proof.
CASES = 100
LOAD_THREADS = 4  # the hall's concurrent submissions
SLOW_MS = 150  # how long the sector takes over every call while workers are being killed
ID_CARD_RENEWAL: dict[str, Any] = {  # 居民身份证换领: public security decides, and calls back
    "matter_code": "11150203MB0E00080E4000114002000", "channel": "city_window",
    "applicant": {"name": "王建国", "id_number": "150203198503120039"},
    "materials": [{"name": "居民户口簿"}, {"name": "原居民身份证"}],
}


@pytest.fixture
def database() -> Iterator[str]:
    """An empty PostgreSQL database of the test's own: terminating its sessions touches no one else."""
    try:
        url = create_database(PG_ADMIN_URL)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "missing"
        service_missing("PostgreSQL at 127.0.0.1:5432", PG_HOW_TO_START, exc)
    yield url
    drop_database(PG_ADMIN_URL, url)


@pytest.fixture
def social_security() -> Iterator[SocialSecuritySimulator]:
    """On a fixed port, so a scenario can stop the sector and start it again where the gateway looks."""
    simulator = SocialSecuritySimulator(port=free_port(), decision_delay_ms=50)
    with simulator:
        yield simulator


@pytest.fixture(params=["rabbitmq"])
def amqp_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The transport: a RabbitMQ virtual host of the test's own (closing its connections touches no one
    else), or None for the in-process transport (workers lease outbox rows in the database)."""
    if request.param == "in-process":
        yield None
        return
    with rabbitmq_vhost() as url:
        yield url


BOTH_TRANSPORTS = pytest.mark.parametrize("amqp_url", ["rabbitmq", "in-process"], indirect=True)


def cluster_for(database: str, tmp_path: Path, amqp_url: str | None, endpoints: dict[str, str],
                **worker_settings: str) -> Cluster:
    prepare_database(database, list(endpoints), tmp_path)
    return Cluster(database, tmp_path, endpoints, amqp_url=amqp_url, worker_settings=worker_settings)


def hall_load(cluster: Cluster) -> Load:
    """The online hall applying for unemployment benefit (失业保险金申领): the social-security system's."""
    return cluster.load(Role.HALL_CLIENT, COMPLETE_APPLICATION, CASES, sector="social_security",
                        threads=LOAD_THREADS)


def assert_clean(report: LedgerReport, cluster: Cluster) -> None:
    print(f"{report}\n  {cluster.kills} workers killed; {cluster.tracebacks()} tracebacks in the processes' logs")
    assert report.ok, f"{report}\n{cluster.logs()}"


# --------------------------------------------------------------------------- no fault at all

# The outbox sweep publishes again what has been queued this long unsettled, taking it for lost by the broker.
# The other scenarios make that 5 s, so a broker fault heals quickly; with no fault, nothing is lost, and at
# 5 s the sweep would re-publish messages merely waiting their turn while the workers start (a second copy
# then races the first to the sector). A production-like threshold, longer than the whole run:
NOTHING_LOST_MS = 120_000


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_parallel_cases_under_a_steady_load_without_faults_call_every_sector_once_and_log_no_error(
    database: str, tmp_path: Path, social_security: SocialSecuritySimulator, amqp_url: str
) -> None:
    """The hall submits parallel-approval cases (two sector systems each) and nothing goes wrong: the workers
    deliver a case's two tasks side by side, and no sector receives any submission twice — not even one its
    own duplicate check would have caught — and no process logs an error."""
    with HousingFundSimulator(decision_delay_ms=50) as housing_fund:
        sectors = {"social_security": social_security, "housing_fund": housing_fund}
        with cluster_for(database, tmp_path, amqp_url, {s: sim.url for s, sim in sectors.items()},
                         YIWANG_OUTBOX_REQUEUE_AFTER_MS=str(NOTHING_LOST_MS)) as cluster:
            load = cluster.load(Role.HALL_CLIENT, PARALLEL_APPLICATION, CASES // 2, sector=tuple(sectors),
                                threads=LOAD_THREADS)
            report = ledger_check(cluster, [load.run()], sectors)
    assert_clean(report, cluster)
    assert {tally.sector: tally.duplicate_submits for tally in report.sectors} == dict.fromkeys(sectors, 0), report
    assert cluster.error_lines() == []


# --------------------------------------------------------------------------- workers killed


def run_killing_workers(database: str, tmp_path: Path, simulator: SocialSecuritySimulator, amqp_url: str | None,
                        **worker_settings: str) -> tuple[LedgerReport, Cluster]:
    """The hall submits while a worker is SIGKILLed (and restarted) four times, each time at a moment the
    sector holds a call (every call takes SLOW_MS): a kill is likely to land between the sector applying
    a case and the worker storing that it did."""
    simulator.set_fault("slow", slow_ms=SLOW_MS)
    with cluster_for(database, tmp_path, amqp_url, {"social_security": simulator.url},
                     **worker_settings) as cluster:
        load = hall_load(cluster).start()
        cluster.kill_workers_repeatedly(4, every_s=1.0, busy=lambda: in_flight(simulator))
        report = ledger_check(cluster, [load.wait()], {"social_security": simulator}, quiet_s=2 * SLOW_MS / 1000)
    return report, cluster


@pytest.mark.slow
@pytest.mark.timeout(120)
@BOTH_TRANSPORTS
def test_workers_killed_mid_delivery_lose_nothing_and_apply_nothing_twice(
    database: str, tmp_path: Path, social_security: SocialSecuritySimulator, amqp_url: str | None
) -> None:
    report, cluster = run_killing_workers(database, tmp_path, social_security, amqp_url)
    assert cluster.kills >= 3
    assert_clean(report, cluster)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_negative_control_fresh_idempotency_keys_on_retry_make_the_ledger_report_duplicates(
    database: str, tmp_path: Path, social_security: SocialSecuritySimulator, amqp_url: str | None
) -> None:
    """The same run with a new idempotency key on every delivery: the sector cannot recognise the
    redelivery of a case it applied before the kill, so the check above must fail — and say why."""
    report, cluster = run_killing_workers(database, tmp_path, social_security, amqp_url,
                                          YIWANG_UNSAFE_FRESH_IDEMPOTENCY_KEYS="1")
    print(report)
    assert cluster.kills >= 3
    assert not report.ok
    assert any("duplicates" in problem for problem in report.problems), str(report)


# --------------------------------------------------------------------------- a job's holder killed

JOB_LEASE_MS = 2000  # the scheduled jobs' lease in this test (YIWANG_JOB_LEASE_MS)
NOTIFY_INTERVAL_MS = 500  # how often the hall's notifications go out (YIWANG_NOTIFY_INTERVAL_MS)
TAKEOVER_SLACK_S = 0.5  # the schedulers' own loop (YIWANG_DISPATCH_IDLE_MS) and a busy machine


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_job_of_a_worker_killed_while_running_it_is_taken_over_within_a_lease_and_an_interval(
    database: str, tmp_path: Path, social_security: SocialSecuritySimulator, amqp_url: str
) -> None:
    """The hall submits; the worker running the case-notifications job is SIGKILLed mid-run, holding its lease.
    Another worker takes the job over within one lease and one interval, and every event reaches the hall."""
    with cluster_for(database, tmp_path, amqp_url, {"social_security": social_security.url},
                     YIWANG_JOB_LEASE_MS=str(JOB_LEASE_MS), YIWANG_NOTIFY_INTERVAL_MS=str(NOTIFY_INTERVAL_MS)
                     ) as cluster:
        load = hall_load(cluster).start()  # case events keep coming: the job has work on every run
        wait_until(lambda: load.accepted >= 10, 60, "the first cases accepted")
        holder, killed_at = cluster.kill_job_holder("case-notifications")
        bound_s = (JOB_LEASE_MS + NOTIFY_INTERVAL_MS) / 1000 + TAKEOVER_SLACK_S
        taken_at = cluster.job_taken_over("case-notifications", holder, timeout_s=bound_s + 10)
        report = ledger_check(cluster, [load.wait()], {"social_security": social_security})
        wait_until(lambda: unpublished_notifications(database) == 0, 30, "every case event told to the hall")
    print(f"case-notifications taken over {taken_at - killed_at:.2f} s after its holder was killed")
    assert taken_at - killed_at <= bound_s
    assert_clean(report, cluster)


# --------------------------------------------------------------------------- the broker


def vhost_of(amqp_url: str) -> str:
    return unquote(amqp_url.rsplit("/", 1)[1])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_broker_connections_closed_under_load_lose_nothing_and_apply_nothing_twice(
    database: str, tmp_path: Path, social_security: SocialSecuritySimulator, amqp_url: str
) -> None:
    """Every connection of the vhost (relays, consumers, dead-letter consumers) closed by the broker, again
    and again while the hall submits, each time with a sector call in flight: publishes go unconfirmed,
    deliveries unacknowledged, consumers reconnect."""
    social_security.set_fault("slow", slow_ms=SLOW_MS)
    with cluster_for(database, tmp_path, amqp_url, {"social_security": social_security.url}) as cluster:
        load = hall_load(cluster).start()
        closed: list[int] = []  # connections open (and closed) each time
        while len(closed) < 3 or (not load.done and len(closed) < 10):
            if not wait_for_a_call_in_flight(social_security, load, cluster):
                break  # the whole load applied already: nothing left to cut (the 3 are not reached)
            closed.append(vhost_connections(vhost_of(amqp_url)))
            rabbitmqctl("close_all_connections", "--vhost", vhost_of(amqp_url), "fault test: connections lost")
        report = ledger_check(cluster, [load.wait()], {"social_security": social_security},
                              quiet_s=2 * SLOW_MS / 1000)
    print(f"connections closed each time: {closed}")
    assert closed and all(closed), closed  # the processes were connected each time: something was cut
    assert_clean(report, cluster)


def wait_for_a_call_in_flight(simulator: SocialSecuritySimulator, load: Load, cluster: Cluster) -> bool:
    """True once the sector holds a call; False once every submitted case has reached it; an error naming
    the processes' logs when neither within 30 s (consumers that did not come back)."""
    def applied_all() -> bool:
        return load.done and simulator.counters["cases_created"] >= load.accepted

    try:
        wait_until(lambda: in_flight(simulator) or applied_all(), 30, "a sector call in flight")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; sector {simulator.counters}; {load.accepted} accepted\n{cluster.logs()}") from None
    return not applied_all() or in_flight(simulator)


@pytest.fixture
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    """A RabbitMQ node of the test's own (see PrivateBroker): stopping it stops no one else's broker."""
    broker = PrivateBroker(tmp_path_factory.mktemp("rabbitmq"))
    try:
        broker.start()
        print(f"private RabbitMQ node {broker.node} booted in {broker.boot_s:.1f} s")
        yield broker
    finally:
        broker.stop()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_broker_stopped_and_started_under_load_loses_nothing_and_applies_nothing_twice(
    database: str, tmp_path: Path, social_security: SocialSecuritySimulator, private_broker: PrivateBroker
) -> None:
    """`rabbitmqctl stop_app` for 2.5 s in the middle of the load (a node of the test's own, so the tests
    running beside it keep theirs), then `start_app`; the processes reconnect, the outbox relay catches up."""
    social_security.set_fault("slow", slow_ms=SLOW_MS)
    with cluster_for(database, tmp_path, private_broker.url, {"social_security": social_security.url}) as cluster:
        load = hall_load(cluster).start()
        wait_until(lambda: social_security.counters["raw_requests"] >= CASES // 4, 60, "deliveries under way")
        during = (load.accepted, social_security.counters["raw_requests"])
        with private_broker.app_stopped():
            time.sleep(2.5)
        loaded = load.wait()
        report = ledger_check(cluster, [loaded], {"social_security": social_security}, quiet_s=2 * SLOW_MS / 1000)
    print(f"broker stopped after (accepted cases, sector requests) {during}")
    assert_clean(report, cluster)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow
@pytest.mark.timeout(120)
@BOTH_TRANSPORTS
def test_database_sessions_terminated_under_load_answer_503_and_leave_no_half_case(
    database: str, tmp_path: Path, social_security: SocialSecuritySimulator, amqp_url: str | None
) -> None:
    with cluster_for(database, tmp_path, amqp_url, {"social_security": social_security.url}) as cluster:
        load = hall_load(cluster).start()
        wait_until(lambda: load.accepted >= 10, 60, "the first cases accepted")
        terminated = []
        while not load.done and len(terminated) < 12:
            terminated.append(terminate_gateway_sessions(database))
            time.sleep(0.4)
        loaded = load.wait()
        report = ledger_check(cluster, [loaded], {"social_security": social_security})
    print(f"terminated sessions per round: {terminated}")
    assert len(terminated) >= 3 and sum(terminated) > 0
    assert loaded.unavailable >= 1, f"no 503 seen: the terminations never caught a request ({loaded})"
    assert loaded.well_formed_unavailable == loaded.unavailable  # Retry-After and problem+json, every one
    assert_clean(report, cluster)  # no 500 among the answers, no half case


# --------------------------------------------------------------------------- a sector down


def replay_all(cluster: Cluster, engine: Engine) -> int:
    """What an operator does once the sector is back: replay one dead letter (`yiwang ops replay`), then
    the rest of the sector's in one bulk run (`yiwang ops replay-many`)."""
    dead = [letter for letter in dead_letters(cluster, engine) if letter.status == "dead"]
    if not dead:
        return 0
    reason = ["--reason", "the sector is back"]
    for command in (["replay", str(dead[0].id)], ["replay-many", "--sector", "social_security", "--yes"]):
        done = subprocess.run([YIWANG, "ops", *command, *reason], env=cluster.env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    return len(dead)


def dead_letters(cluster: Cluster, engine: Engine) -> list[DeadLetter]:
    return cluster.case_service(engine).dead_letters(limit=10 * CASES)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_sector_down_beyond_its_retry_budget_dead_letters_then_replay_delivers_each_case_once(
    database: str, tmp_path: Path, social_security: SocialSecuritySimulator, amqp_url: str | None
) -> None:
    sectors = {"social_security": social_security}
    with cluster_for(database, tmp_path, amqp_url, {"social_security": social_security.url}) as cluster:
        social_security.stop()  # the sector's system is down: connections refused, longer than any retry
        loaded = hall_load(cluster).run()
        assert not loaded.failures, loaded
        outage = ledger_check(cluster, [loaded], sectors, expect_dead=True)
        engine = harness_engine(database)
        try:
            letters = dead_letters(cluster, engine)
            assert len(letters) == len(loaded.accepted) == CASES, f"{len(letters)} dead letters\n{outage}"
            for letter in letters:  # what an operator needs to understand and replay each one
                assert letter.error_class and letter.attempts >= 1, letter
                assert len(letter.history) == letter.attempts and letter.rendered_request, letter
                assert letter.operation == "submit_case" and letter.outbox_id is not None, letter
            social_security.start()  # the sector is back, where the gateway looks for it
            rounds = []
            while (replayed := replay_all(cluster, engine)) and len(rounds) < 5:
                rounds.append(replayed)  # a replay may meet a breaker still open in a worker: again
                ledger_check(cluster, [loaded], sectors, expect_dead=True)
            classes = sorted({letter.error_class for letter in letters})
        finally:
            engine.dispose()
        report = ledger_check(cluster, [loaded], sectors)
    print(f"outage: {outage}\nerror classes {classes}; replayed per round {rounds}")
    assert outage.dead_letters == CASES and outage.sectors[0].cases_created == 0
    assert_clean(report, cluster)


# --------------------------------------------------------------------------- callbacks


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_callbacks_before_the_submit_answer_and_twice_decide_each_case_once(
    database: str, tmp_path: Path, amqp_url: str | None
) -> None:
    """Half the cases are called back before the sector answers their submission, the other half are
    called back twice; every case is decided once, with one conclusion event per task."""
    with PublicSecuritySimulator(decision_delay_ms=50) as police, \
            cluster_for(database, tmp_path, amqp_url, {"public_security": police.url}) as cluster:
        police.callback_url = f"{cluster.url}/callbacks/public_security"
        loads = []
        for fault in ("early_callback", "duplicate_callback"):
            police.set_fault(fault)  # until changed
            load = cluster.load(Role.WINDOW, ID_CARD_RENEWAL, CASES // 2, sector="public_security",
                                threads=LOAD_THREADS)
            loads.append(load.run())
            ledger_check(cluster, loads, {"public_security": police}, quiet_s=1)  # this half decided first
        police.set_fault(None)
        report = ledger_check(cluster, loads, {"public_security": police}, quiet_s=1)
        counters = police.counters
    print(f"callbacks: {counters}")
    accepted = sum(len(load.accepted) for load in loads)
    assert counters["faults_injected"] >= accepted  # every case met its fault
    assert counters["callbacks_delivered"] >= accepted + len(loads[1].accepted)  # the second half: twice
    assert_clean(report, cluster)
