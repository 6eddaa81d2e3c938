"""Real processes: killed and restarted, racing each other, sharing one database.

Each test starts `yiwang serve` / `yiwang worker` as subprocesses on loopback ports and talks to
them over real HTTP; the sector simulator runs in the test process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, text

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.catalogue.matters import Catalogue
from gateway.config import DEFAULT_CATALOGUE
from gateway.persistence import tables as t
from gateway.persistence.engine import make_engine
from gateway.persistence.uow import create_schema
from tests.support.gateways import COMPLETE_APPLICATION
from tests.support.processes import (  # noqa: F401 - `launch`: fixture
    Launch,
    hall_key,
    launch,
    serve,
    serve_side_by_side,
    with_shipped_bundle,
)


def wait_for_state(db_url: str, case_no: str, wanted: str, timeout_s: float = 30) -> None:
    engine = make_engine(db_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                current = conn.execute(select(t.cases.c.state).where(t.cases.c.case_no == case_no)).scalar()
            if current == wanted:
                return
            time.sleep(0.1)
        raise AssertionError(f"case {case_no} is {current}, not {wanted}")
    finally:
        engine.dispose()


def count_rows(db_url: str, table: t.Table) -> int:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    engine.dispose()
    return n


def test_killed_after_commit_before_dispatch_the_case_is_delivered_once_after_restart(
    launch: Launch, sqlite_url: str, simulator: SocialSecuritySimulator
) -> None:
    endpoints = f"social_security={simulator.url}"
    api, url = serve(launch, YIWANG_DATABASE_URL=with_shipped_bundle(sqlite_url), YIWANG_DISPATCH="off",
                     YIWANG_SECTOR_ENDPOINTS=endpoints)
    case_no = httpx.post(f"{url}/v1/cases", json=COMPLETE_APPLICATION, headers=hall_key(sqlite_url),
                         timeout=10).json()["case_no"]
    api.send_signal(signal.SIGKILL)  # committed, never dispatched
    api.wait(timeout=10)
    assert simulator.counters["raw_requests"] == 0

    worker = launch("worker", YIWANG_DATABASE_URL=sqlite_url, YIWANG_SECTOR_ENDPOINTS=endpoints)
    wait_for_state(sqlite_url, case_no, "approved")
    assert simulator.counters["cases_created"] == 1
    assert simulator.counters["submits_received"] == 1
    worker.send_signal(signal.SIGTERM)  # a worker stops cleanly on SIGTERM
    assert worker.wait(timeout=15) == 0


def test_killed_during_the_sector_call_the_retry_is_recognised_and_applied_once(
    launch: Launch, sqlite_url: str, simulator: SocialSecuritySimulator
) -> None:
    endpoints = f"social_security={simulator.url}"
    simulator.set_fault("slow", count=1, slow_ms=1500)  # the sector applies it, but too late for the caller
    api, url = serve(launch, YIWANG_DATABASE_URL=with_shipped_bundle(sqlite_url), YIWANG_SECTOR_ENDPOINTS=endpoints,
                     YIWANG_LEASE_MS="1000")
    case_no = httpx.post(f"{url}/v1/cases", json=COMPLETE_APPLICATION, headers=hall_key(sqlite_url),
                         timeout=10).json()["case_no"]
    deadline = time.monotonic() + 10
    while simulator.counters["raw_requests"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the headers are in; let the body follow while the sector "works" (1.5 s)
    api.send_signal(signal.SIGKILL)  # mid-call: the sector applies it, the outcome is never stored
    api.wait(timeout=10)

    launch("worker", YIWANG_DATABASE_URL=sqlite_url, YIWANG_SECTOR_ENDPOINTS=endpoints, YIWANG_LEASE_MS="1000")
    wait_for_state(sqlite_url, case_no, "approved")
    deadline = time.monotonic() + 10  # the killed call may still be "working" in the sector: let it land
    while simulator.counters["submits_received"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    counters = simulator.counters
    assert counters["submits_received"] == 2  # the first (killed) call and the redelivery
    assert counters["cases_created"] == 1  # ... applied once: the idempotency key was the same
    assert counters["duplicate_submits"] == 1


def test_an_idempotency_key_holds_across_two_api_processes(launch: Launch, db_url: str) -> None:
    settings = {"YIWANG_DATABASE_URL": db_url, "YIWANG_DISPATCH": "off"}
    (_, first), (_, second) = serve_side_by_side(launch, 2, **settings)
    headers = {"Idempotency-Key": "hall-retry-1", **hall_key(db_url)}
    a = httpx.post(f"{first}/v1/cases", json=COMPLETE_APPLICATION, headers=headers, timeout=10)
    b = httpx.post(f"{second}/v1/cases", json=COMPLETE_APPLICATION, headers=headers, timeout=10)
    assert a.status_code == b.status_code == 201
    assert a.json()["case_no"] == b.json()["case_no"]
    assert count_rows(db_url, t.cases) == 1


RACER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from sqlalchemy import event
    from gateway.catalogue.calendar_file import load_calendar
    from gateway.catalogue.matters import Catalogue
    from gateway.config import DEFAULT_CATALOGUE
    from gateway.domain.case import Actor, ActorKind, Applicant, SubmittedMaterial
    from gateway.domain.clock import SystemClock
    from certstore.keyring import FieldSealer, MasterKeys
    from gateway.persistence.blind_index import BlindIndex
    from gateway.persistence.personal_data import PersonalData
    from gateway.persistence.engine import make_engine
    from gateway.persistence.uow import UnitsOfWork
    from gateway.cases.service import CaseService, SubmitCase

    url, gate, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    engine = make_engine(url)

    @event.listens_for(engine, "after_cursor_execute")
    def widen_the_window(conn, cursor, statement, *args):  # between reading the day's counter and writing it
        if statement.lstrip().startswith("SELECT case_counters.last_seq"):
            time.sleep(0.005)

    catalogue = Catalogue(engine)
    catalogue.seed_if_empty(DEFAULT_CATALOGUE)
    personal = PersonalData(BlindIndex(b"k" * 32), FieldSealer(MasterKeys.parse("t:" + "A" * 43 + "=")))
    service = CaseService(UnitsOfWork(engine, personal), catalogue, load_calendar(), SystemClock())
    command = SubmitCase("12150200MB1A00010L3000805001000", Applicant("王建国", "111", "150203198503120039"),
                         (SubmittedMaterial("居民身份证"),), {"insured_months": 36, "separation_date": "2026-10-31"})
    matter, command = service._check(command)
    (gate / str(os.getpid())).touch()  # ready; go when both are, however long the other took to start
    give_up = time.monotonic() + 30
    while len(list(gate.iterdir())) < 2 and time.monotonic() < give_up:
        time.sleep(0.001)
    for _ in range(n):  # one try each: submit()'s retry on a duplicate number would hide a lost update
        print(service._submit_once(matter, command, Actor(ActorKind.APPLICANT, "racer"), None,
                                     command.fingerprint()).case["case_no"],
              flush=True)
    """
)


def race(sqlite_url: str, script: str, per_process: int, gate: Path) -> tuple[list[int], list[str], list[str]]:
    """Two processes submitting at the same instant; returns exit codes, case numbers, error tails."""
    engine = make_engine(sqlite_url)
    create_schema(engine)
    Catalogue(engine).seed_if_empty(DEFAULT_CATALOGUE)
    engine.dispose()
    # Each racer starts submitting once both are ready (a file each in `gate`): a racer starting late would
    # race nobody, and the negative control would see no lost update (seen on a loaded machine with a fixed
    # start 4 s ahead).
    gate.mkdir()
    racers = [
        subprocess.Popen([sys.executable, "-c", script, sqlite_url, str(gate), str(per_process)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=60) for r in racers]
    numbers = [line for out, _ in outputs for line in out.decode().split()]
    return [r.returncode for r in racers], numbers, [err.decode()[-2000:] for _, err in outputs]


def test_two_processes_racing_read_then_write_on_sqlite_lose_no_update(sqlite_url: str, tmp_path: Path) -> None:
    codes, numbers, errors = race(sqlite_url, RACER, 40, tmp_path / "gate")
    assert codes == [0, 0], errors
    assert len(numbers) == len(set(numbers)) == 80  # every case its own number
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(select(t.case_counters.c.last_seq)).scalar_one() == 80
    engine.dispose()


def test_negative_control_without_begin_immediate_the_race_breaks(sqlite_url: str, tmp_path: Path) -> None:
    """The same race on pysqlite's default (deferred BEGIN) fails: the check above can fail."""
    naive = RACER.replace("make_engine(url)", "create_engine(url, connect_args={'timeout': 30})").replace(
        "import os, sys, time", "import os, sys, time\nfrom sqlalchemy import create_engine")
    codes, numbers, _ = race(sqlite_url, naive, 40, tmp_path / "gate")
    assert codes != [0, 0] or len(set(numbers)) < 80


@pytest.mark.timeout(60)
def test_a_writing_thread_waits_for_another_on_our_queue_not_in_sqlites_busy_handler(sqlite_url: str) -> None:
    """B asks to write while A holds the write transaction: B's BEGIN IMMEDIATE goes to SQLite only once A
    is done (SQLite's busy handler would have had B sleep and retry meanwhile)."""
    engine = make_engine(sqlite_url)
    create_schema(engine)
    moments: dict[str, float] = {}

    @event.listens_for(engine, "before_cursor_execute")
    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement == "BEGIN IMMEDIATE" and threading.current_thread().name == "B":
            moments["B begins"] = time.monotonic()

    def a() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO case_counters (scope, last_seq) VALUES ('a', 1)"))
            time.sleep(0.4)
            moments["A done"] = time.monotonic()

    def b() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO case_counters (scope, last_seq) VALUES ('b', 1)"))

    first = threading.Thread(target=a, name="A")
    first.start()
    time.sleep(0.1)
    second = threading.Thread(target=b, name="B")
    second.start()
    first.join(timeout=30)
    second.join(timeout=30)
    engine.dispose()
    assert moments["B begins"] >= moments["A done"]
