"""`yiwang serve --workers N`: several API processes on one port, each with a gateway of its own.

The processes are started as an operator starts them, on a fresh YIWANG_VAR_DIR (SQLite): which process
served a request is read from the audit log, whose chains are named after their writer
(`audit:<host>:<pid>:<random>`), so no public answer carries a pid for the test's sake.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.config import Settings
from gateway.persistence.engine import make_engine
from gateway.persistence.ledger_tables import ledger_checkpoints, ledger_records
from tests.support.gateways import COMPLETE_APPLICATION
from tests.support.processes import YIWANG, free_port, hall_key, with_shipped_bundle

BATCH = 8  # cases submitted at once, each on a connection of its own (a kept-alive one stays with one process)
MAX_BATCHES = 10  # two processes accepting on one socket: both have served long before this


@contextmanager
def api_processes(tmp_path: Path, workers: int, **settings: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`yiwang serve --workers N` until it answers /healthz; killed at the end if still running."""
    port = free_port()
    env = {**os.environ, "YIWANG_VAR_DIR": str(tmp_path / "var"), **settings}
    env.pop("YIWANG_DATABASE_URL", None)  # the embedded default: SQLite under the var dir
    with open(tmp_path / "serve.log", "wb") as log:
        parent = subprocess.Popen([YIWANG, "serve", "--workers", str(workers), "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: answers(url) or parent.poll() is not None, 60, "the API to start")
            assert parent.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-2000:]
            yield parent, url
        finally:
            if parent.poll() is None:  # the test has failed: a killed parent would leave its children running
                for pid in children(parent.pid):
                    os.kill(pid, signal.SIGKILL)
                parent.kill()
            parent.wait(timeout=10)


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(0.1)


def children(pid: int) -> set[int]:
    """The processes `pid` started (uvicorn's API processes and multiprocessing's resource tracker)."""
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def audit_chains(db_url: str) -> dict[str, tuple[int, int]]:
    """Each audit chain: (its last record's seq, its last signed checkpoint's seq; 0 for none)."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            heads = dict(conn.execute(select(ledger_records.c.chain, func.max(ledger_records.c.seq))
                                      .where(ledger_records.c.kind == "audit").group_by(ledger_records.c.chain)).all())
            signed = dict(conn.execute(select(ledger_checkpoints.c.chain, func.max(ledger_checkpoints.c.seq))
                                       .group_by(ledger_checkpoints.c.chain)).all())
    finally:
        engine.dispose()
    return {chain: (seq, signed.get(chain, 0)) for chain, seq in heads.items()}


def writer_pid(chain: str) -> int:
    return int(chain.split(":")[2])  # audit:<host>:<pid>:<random>


def stop(parent: subprocess.Popen[bytes], sig: signal.Signals, timeout_s: float = 30) -> set[int]:
    """Signal the parent; returns its children, which must all be gone with it within the timeout."""
    started = children(parent.pid)
    parent.send_signal(sig)
    assert parent.wait(timeout=timeout_s) == 0
    wait_for(lambda: not any(running(pid) for pid in started), timeout_s, f"the API processes {started} to end")
    return started


@pytest.mark.timeout(180)
def test_two_api_processes_serve_one_port_and_stop_together_on_sigterm(
    tmp_path: Path, simulator: SocialSecuritySimulator
) -> None:
    db_url = f"sqlite:///{tmp_path / 'var' / 'yiwang.db'}"
    (tmp_path / "var").mkdir()
    headers = hall_key(with_shipped_bundle(db_url))
    with api_processes(tmp_path, 2, YIWANG_SECTOR_ENDPOINTS=f"social_security={simulator.url}",
                       YIWANG_POLL_INTERVAL_MS="50") as (parent, url):
        statuses: list[int] = []
        with ThreadPoolExecutor(BATCH) as pool:
            for _ in range(MAX_BATCHES):  # until the audit log shows both processes served
                statuses += pool.map(lambda _: httpx.post(f"{url}/v1/cases", json=COMPLETE_APPLICATION,
                                                          headers=headers, timeout=30).status_code, range(BATCH))
                if len(audit_chains(db_url)) >= 2:
                    break
        assert statuses == [201] * len(statuses)
        # Each process's dispatcher takes cases from the one outbox: every case reaches the sector once.
        wait_for(lambda: simulator.counters["cases_created"] >= len(statuses), 60, "every case to be delivered")
        assert simulator.counters["submits_received"] == len(statuses)
        started = stop(parent, signal.SIGTERM)

    chains = audit_chains(db_url)
    writers = {writer_pid(chain) for chain in chains}
    assert len(chains) == len(writers) == 2 and writers <= started
    assert sum(seq for seq, _ in chains.values()) == len(statuses)  # one audit record per POST
    # Each process closed its gateway as it stopped: its chain's tail is signed, nothing left to cut off.
    assert all(seq == signed for seq, signed in chains.values()), chains


@pytest.mark.timeout(120)
def test_sigint_to_the_parent_stops_every_api_process(tmp_path: Path) -> None:
    with api_processes(tmp_path, 2) as (parent, _):
        assert len(stop(parent, signal.SIGINT)) >= 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "settings", "message"), [
    (("--workers", "0"), {}, "Invalid value for '--workers'"),
    ((), {"YIWANG_API_WORKERS": "x"}, "YIWANG_API_WORKERS must be a positive number, not 'x'"),
    (("--workers", "2"), {"YIWANG_API_WORKERS": "0"}, "YIWANG_API_WORKERS must be a positive number, not '0'"),
])
def test_a_bad_number_of_workers_is_a_readable_error_and_starts_nothing(
    tmp_path: Path, args: tuple[str, ...], settings: dict[str, str], message: str
) -> None:
    port = free_port()
    env = {**os.environ, "YIWANG_VAR_DIR": str(tmp_path / "var"), **settings}
    done = subprocess.run([YIWANG, "serve", "--port", str(port), *args], env=env, capture_output=True, text=True,
                          timeout=50)
    output = " ".join((done.stdout + done.stderr).split())  # rich wraps its error box
    assert done.returncode == 2, output
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "var").exists()  # no database, no key file: nothing was started


def test_the_number_of_api_processes_comes_from_the_environment() -> None:
    assert Settings.from_env({}).api_workers == 1
    assert Settings.from_env({"YIWANG_API_WORKERS": "3"}).api_workers == 3
