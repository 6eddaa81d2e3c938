"""Real `yiwang` processes for a test: launched on a database with the shipped bundles, a hall key, stopped
after."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.domain.clock import SystemClock
from gateway.domain.roles import Role
from gateway.persistence.engine import make_engine
from gateway.persistence.uow import create_schema
from gateway.sectors.bundle_records import BundleStore
from gateway.security.api_keys import ApiKeyStore
from tests.support.gateways import activate_shipped

YIWANG = str(Path(sys.executable).with_name("yiwang"))


Launch = Callable[..., subprocess.Popen[bytes]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start `yiwang ...` with the given settings; every process is killed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **settings: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "YIWANG_VAR_DIR": str(tmp_path / "var"), "YIWANG_POLL_INTERVAL_MS": "50",
               "YIWANG_RETRY_ATTEMPTS": "3", "YIWANG_RETRY_INITIAL_MS": "5", "YIWANG_RETRY_MAX_MS": "20", **settings}
        log = open(tmp_path / f"proc-{len(started)}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([YIWANG, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def with_shipped_bundle(db_url: str) -> str:
    """The database ready as after `yiwang adapters register/activate` of the social-security bundle."""
    engine = make_engine(db_url)
    create_schema(engine)
    activate_shipped(BundleStore(engine, SystemClock()), "social_security")
    engine.dispose()
    return db_url


def hall_key(db_url: str) -> dict[str, str]:
    """Issue a hall client's key straight into the shared database (as `yiwang keys issue` would)."""
    engine = make_engine(db_url)
    _, key = ApiKeyStore(engine).issue("test hall", [Role.HALL_CLIENT])
    engine.dispose()
    return {"Authorization": f"Bearer {key}"}


def serve(launch: Launch, **settings: str) -> tuple[subprocess.Popen[bytes], str]:
    [served] = serve_side_by_side(launch, 1, **settings)
    return served


def serve_side_by_side(launch: Launch, count: int, **settings: str) -> list[tuple[subprocess.Popen[bytes], str]]:
    """`count` `yiwang serve`s with the same settings, booting at once (as a deployment starts them); returns
    once each answers its health check."""
    started = []
    for _ in range(count):
        port = free_port()
        started.append((launch("serve", "--port", str(port), **settings), f"http://127.0.0.1:{port}"))
    deadline = time.monotonic() + 30
    for process, url in started:
        wait_until_healthy(process, url, deadline)
    return started


def wait_until_healthy(process: subprocess.Popen[bytes], url: str, deadline: float) -> None:
    """Return once the `yiwang serve` at `url` answers its health check; fail if it exits or `deadline`
    (a `time.monotonic()` instant) passes first."""
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"yiwang serve did not come up (exit {process.poll()})")
        time.sleep(0.1)
