"""An activation reaches every running process without a restart; in-flight messages end on their version.

Version 2 of the social-security bundle is the shipped one with a new `version` and one change the
sector can see: its `yes_no` code table sends a received material as "1"/"0" instead of "Y"/"N"
(`sfsj` of each `cllb.cl`). The simulator's decision hook records what each case was sent, so which
version delivered a case is read off the sector's side, not the gateway's.

First in one test process (two gateways on one database: two processes' views of the registry), then
with real processes: `yiwang serve` (no dispatcher) and two `yiwang worker`s on one SQLite file,
while cases keep coming.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.registry import default_bundles_dir
from adapters.simulators.social_security import SocialSecuritySimulator
from adapters.simulators.social_security import default_decide as social_security_decide
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import SystemClock
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from gateway.persistence.engine import make_engine
from gateway.persistence.uow import create_schema
from gateway.sectors.bundle_records import BundleStore, pack_folder, unpacked
from gateway.security.api_keys import ApiKeyStore
from tests.support.gateways import COMPLETE_APPLICATION, Keys, activate_shipped, drain

SECTOR = "social_security"
V2 = "2026.11.2-live"
V1_RECEIVED, V2_RECEIVED = "Y", "1"  # what each version sends as `sfsj` for a received material
YIWANG = str(Path(sys.executable).with_name("yiwang"))


def shipped_version() -> str:
    with unpacked(pack_folder(default_bundles_dir() / SECTOR)) as bundle:
        return bundle.version


V1 = shipped_version()


def make_v2(tmp_path: Path) -> Path:
    """The shipped bundle with a new version and the sector's new flag codes."""
    folder = tmp_path / "social_security_v2"
    shutil.copytree(default_bundles_dir() / SECTOR, folder)
    for name, old, new in (
        ("bundle.yaml", f'version: "{V1}"', f'version: "{V2}"'),
        ("submit_case.mapping.yaml", 'yes_no: {"true": "Y", "false": "N"}', 'yes_no: {"true": "1", "false": "0"}'),
    ):
        path = folder / name
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not once in the shipped {name}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    return folder


class Seen:
    """What the sector was sent, per case number, as its decision hook saw it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, set[str]] = {}

    def decide(self, fields: dict[str, Any]) -> tuple[bool, str]:
        flags = {m.get("sfsj", "") for m in fields.get("cllb") or []}
        with self._lock:
            self._flags.setdefault(fields["bjbh"], set()).update(flags)
        return social_security_decide(fields)

    def version_of(self, case_no: str) -> str | None:
        """Which bundle version rendered the case's submit, judged by the flags the sector received."""
        with self._lock:
            flags = self._flags.get(case_no)
        if flags == {V1_RECEIVED}:
            return V1
        if flags == {V2_RECEIVED}:
            return V2
        return None if flags is None else f"mixed {sorted(flags)}"

    @property
    def cases(self) -> set[str]:
        with self._lock:
            return set(self._flags)


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def sector(seen: Seen) -> Iterator[SocialSecuritySimulator]:
    with SocialSecuritySimulator(decision_delay_ms=100, decide=seen.decide) as sim:
        yield sim


# --- (a) two processes' views in one test process -------------------------------------------------------

REFRESH_MS = 200
SLACK_S = 1.0


def wait_for_version(gateway: Gateway, version: str, timeout_s: float) -> float:
    """Seconds until `gateway`'s registry serves `version` (asking as a delivery would)."""
    start = time.monotonic()
    while gateway.registry.get(SECTOR).version != version:
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"still {gateway.registry.get(SECTOR).version} after {timeout_s} s, not {version}")
        time.sleep(0.01)
    return time.monotonic() - start


def submit(gateway: Gateway) -> str:
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        answer = client.post("/v1/cases", json=COMPLETE_APPLICATION)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_no"])


def deliver(gateway: Gateway, case_no: str) -> None:
    drain(gateway, lambda: gateway.service.get(case_no).state == "approved")


@pytest.fixture
def two_views(make_gateway: Callable[..., Gateway], sector: SocialSecuritySimulator) -> tuple[Gateway, Gateway]:
    endpoints = {SECTOR: sector.url}
    return (make_gateway(registry_refresh_ms=REFRESH_MS, sector_endpoints=endpoints),
            make_gateway(registry_refresh_ms=REFRESH_MS, sector_endpoints=endpoints))


def test_an_activation_reaches_the_other_process_without_a_restart_and_rollback_returns(
        two_views: tuple[Gateway, Gateway], seen: Seen, tmp_path: Path) -> None:
    first, second = two_views
    assert first.registry.get(SECTOR).version == second.registry.get(SECTOR).version == V1
    before = submit(second)
    deliver(second, before)
    assert seen.version_of(before) == V1

    first.bundles.register(pack_folder(make_v2(tmp_path)), "test")
    second.registry.refresh()
    assert second.registry.get(SECTOR).version == V1  # registered is not active

    refreshed_at = time.monotonic()
    second.registry.refresh()
    first.bundles.activate(SECTOR, V2, "test", force=True)
    activated_at = time.monotonic()
    cached = second.registry.get(SECTOR).version
    if time.monotonic() - refreshed_at < REFRESH_MS / 1000 / 2:  # well inside the window: the view is cached
        assert cached == V1
    waited = wait_for_version(second, V2, REFRESH_MS / 1000 + SLACK_S)
    assert time.monotonic() - activated_at <= REFRESH_MS / 1000 + SLACK_S, waited

    after = submit(first)
    deliver(second, after)  # the other process delivers it, on the version it picked up
    assert seen.version_of(after) == V2

    assert second.bundles.rollback(SECTOR, "test").version == V1
    wait_for_version(first, V1, REFRESH_MS / 1000 + SLACK_S)
    back = submit(second)
    deliver(first, back)
    assert seen.version_of(back) == V1
    assert {v.version: v.status for v in first.bundles.versions(SECTOR)} == {V1: "active", V2: "inactive"}


def test_a_delivery_in_flight_finishes_on_the_version_it_started_with(
        two_views: tuple[Gateway, Gateway], sector: SocialSecuritySimulator, seen: Seen, tmp_path: Path) -> None:
    first, second = two_views
    first.bundles.register(pack_folder(make_v2(tmp_path)), "test")
    in_flight = submit(second)
    sector.set_fault("slow", count=1, slow_ms=1000)  # the sector takes its time over the submit
    errors: list[BaseException] = []

    def one_round() -> None:
        try:
            assert second.dispatcher.run_once() == 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    delivery = threading.Thread(target=one_round)
    delivery.start()
    deadline = time.monotonic() + 10
    while sector.counters["raw_requests"] == 0:  # the submit (rendered by v1) is with the sector
        assert time.monotonic() < deadline, "the delivery never reached the sector"
        time.sleep(0.01)
    first.bundles.activate(SECTOR, V2, "test", force=True)
    second.registry.refresh()
    assert second.registry.get(SECTOR).version == V2
    assert delivery.is_alive()  # still waiting on the sector, with the v1 adapter in hand
    delivery.join(timeout=15)
    assert not delivery.is_alive() and not errors, errors

    task = second.service.get(in_flight).tasks[0]
    assert (task.state, task.sector_ref is not None) == ("in_process", True)  # submitted, recorded
    deliver(second, in_flight)  # polled to the decision by v2
    assert seen.version_of(in_flight) == V1
    next_case = submit(second)
    deliver(second, next_case)
    assert seen.version_of(next_case) == V2
    assert sector.counters["cases_created"] == 2 and sector.counters["duplicate_submits"] == 0


# --- (b) real processes: two workers and an API, one SQLite file, cases arriving --------------------------

CASES = 40
SPACING_S = 0.1  # 40 cases over ~4 s
PROCESS_REFRESH_MS = 300
LATE_SLACK_S = 0.2  # beyond the refresh window, for a case submitted after activation to be on v2
EARLY_MARGIN_S = 1.5  # a case submitted this long before activation has long been delivered (on v1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """`yiwang ...` subprocesses with JSON logs in files of their own; all killed at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str, **settings: str) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([YIWANG, *args], env={**self.env, **settings}, stdout=log,
                                       stderr=subprocess.STDOUT)
        self.started.append((process, log_path))
        return process, log_path

    def stop(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
        for process, _ in self.started:
            process.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path, sqlite_url: str, sector: SocialSecuritySimulator) -> Iterator[Processes]:
    env = {**os.environ, "YIWANG_VAR_DIR": str(tmp_path / "var"), "YIWANG_DATABASE_URL": sqlite_url,
           "YIWANG_SECTOR_ENDPOINTS": f"{SECTOR}={sector.url}", "YIWANG_REGISTRY_REFRESH_MS": str(PROCESS_REFRESH_MS),
           "YIWANG_POLL_INTERVAL_MS": "50", "YIWANG_RETRY_ATTEMPTS": "3", "YIWANG_RETRY_INITIAL_MS": "5",
           "YIWANG_RETRY_MAX_MS": "20", "YIWANG_LOG_FORMAT": "json", "YIWANG_LOG_LEVEL": "info"}
    started = Processes(tmp_path, env)
    yield started
    started.stop()


def log_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass  # a line cut short as the process was killed
    return events


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float, *alive: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for process in alive:
            assert process.poll() is None, f"a process exited ({process.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def prepared_database(sqlite_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """v1 active (as after `yiwang adapters register/activate`), a hall key and an operator key."""
    engine = make_engine(sqlite_url)
    try:
        create_schema(engine)
        activate_shipped(BundleStore(engine, SystemClock()), SECTOR)
        keys = ApiKeyStore(engine)
        _, hall = keys.issue("load hall", [Role.HALL_CLIENT])
        _, operator = keys.issue("release operator", [Role.OPERATOR])
    finally:
        engine.dispose()
    return {"Authorization": f"Bearer {hall}"}, {"Authorization": f"Bearer {operator}"}


def case_states(sqlite_url: str, case_nos: list[str]) -> dict[str, str]:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(t.cases.c.case_no, t.cases.c.state).where(t.cases.c.case_no.in_(case_nos)))
            return {r.case_no: r.state for r in rows}
    finally:
        engine.dispose()


def test_two_workers_pick_up_an_activation_under_load_losing_and_doubling_nothing(
        processes: Processes, sqlite_url: str, sector: SocialSecuritySimulator, seen: Seen, tmp_path: Path) -> None:
    hall, operator = prepared_database(sqlite_url)
    port = free_port()
    api, _ = processes.start("api", "serve", "--port", str(port), YIWANG_DISPATCH="off")
    workers = [processes.start(f"worker-{i}", "worker") for i in (1, 2)]
    url = f"http://127.0.0.1:{port}"

    def api_up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until("the API", api_up, 20, api)
    for process, log_path in workers:
        wait_until("a worker's dispatcher", lambda p=log_path: any(  # type: ignore[misc]
            e.get("event") == "dispatcher started" for e in log_events(p)), 20, process)

    with httpx.Client(base_url=url, timeout=10) as client:
        registered = client.post("/v1/adapters/bundles", content=pack_folder(make_v2(tmp_path)),
                                 headers={**operator, "Content-Type": "application/zip"})
        assert registered.status_code == 201, registered.text
        assert registered.json()["status"] == "registered"
        tested = client.post(f"/v1/adapters/{SECTOR}/versions/{V2}/test", headers=operator)
        assert tested.json()["test_outcome"] == "accepted", tested.text  # as a release is: tested, then activated

        submitted: list[tuple[str, float]] = []  # (case number, when its POST was sent)
        activated_at: float | None = None
        start = time.monotonic()
        for i in range(CASES):
            time.sleep(max(0.0, start + i * SPACING_S - time.monotonic()))
            if i == CASES // 2:
                answer = client.post(f"/v1/adapters/{SECTOR}/versions/{V2}/activate", headers=operator)
                assert answer.status_code == 200, answer.text
                activated_at = time.monotonic()
            sent_at = time.monotonic()
            body = copy.deepcopy(COMPLETE_APPLICATION)
            answer = client.post("/v1/cases", json=body, headers=hall)
            assert answer.status_code == 201, answer.text
            submitted.append((answer.json()["case_no"], sent_at))
    assert activated_at is not None
    case_nos = [case_no for case_no, _ in submitted]
    assert len(set(case_nos)) == CASES

    def all_decided() -> bool:
        return all(s in ("approved", "closed") for s in case_states(sqlite_url, case_nos).values())

    wait_until("every case decided", all_decided, 25, api, *(p for p, _ in workers))
    assert len(case_states(sqlite_url, case_nos)) == CASES

    # The sector: every case once, none twice, none lost.
    counters = sector.counters
    assert counters["cases_created"] == CASES, counters
    assert counters["duplicate_submits"] == 0, counters
    assert seen.cases == set(case_nos)

    # Which version rendered each case, as the sector saw it.
    versions = {case_no: seen.version_of(case_no) for case_no in case_nos}
    assert set(versions.values()) <= {V1, V2}, versions
    late = [c for c, sent in submitted if sent > activated_at + PROCESS_REFRESH_MS / 1000 + LATE_SLACK_S]
    early = [c for c, sent in submitted if sent < activated_at - EARLY_MARGIN_S]
    assert len(late) >= 10 and len(early) >= 3, (len(late), len(early))
    assert [versions[c] for c in late] == [V2] * len(late)
    assert [versions[c] for c in early] == [V1] * len(early)

    # The workers: both delivered; each submit once, by one worker, on the version the sector saw.
    submits: dict[str, list[tuple[int, str]]] = {}
    delivered_by = []
    for index, (_, log_path) in enumerate(workers):
        delivered = [e for e in log_events(log_path) if e.get("event") == "delivered"]
        delivered_by.append(len(delivered))
        for event in delivered:
            if event.get("operation") == "submit_case":
                submits.setdefault(event["case_no"], []).append((index, event["bundle_version"]))
        assert not [e for e in log_events(log_path) if e.get("level") in ("error", "critical")], log_path.read_text()
    assert all(n > 0 for n in delivered_by), delivered_by
    assert sorted(submits) == sorted(case_nos)
    assert {c: len(d) for c, d in submits.items() if len(d) != 1} == {}
    assert {c: d[0][1] for c, d in submits.items()} == versions
    assert {index for d in submits.values() for index, _ in d} == {0, 1}, "each worker delivered submits"
