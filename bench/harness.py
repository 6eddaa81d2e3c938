"""What the benchmark sections share to run the gateway for real: `yiwang` processes with their logs,
a sector simulator in a process of its own, a PostgreSQL database and a RabbitMQ vhost of the run's own
(dropped afterwards), CPU accounting from /proc, and small waiting and percentile helpers.

A section starts what it measures with these, so every section's gateway is started the way an operator
starts it (`yiwang serve`, `yiwang worker`) and every process is stopped at the end, whatever happens.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import create_engine, text

YIWANG = str(Path(sys.executable).with_name("yiwang"))
BUNDLES = Path(__file__).resolve().parents[1] / "adapters" / "bundles"
PG_ADMIN_URL = os.environ.get("YIWANG_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def yiwang(env: dict[str, str], *args: str) -> str:
    """One `yiwang` command as an operator would type it; its output, or an error that shows it."""
    done = subprocess.run([YIWANG, *args], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"yiwang {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def register_and_activate(env: dict[str, str], bundle: Path) -> None:
    """As a sector team would: register its bundle folder, test the version against the sector system (running,
    at the address `env`'s YIWANG_SECTOR_ENDPOINTS gives), then activate it (refused unless the test passed)."""
    yiwang(env, "adapters", "register", str(bundle))
    fields = dict(line.split(":", 1) for line in (bundle / "bundle.yaml").read_text(encoding="utf-8").splitlines()
                  if line.startswith(("sector:", "version:")))
    sector, version = fields["sector"].strip(), fields["version"].strip().strip("'\"")
    yiwang(env, "adapters", "test", sector, version)
    yiwang(env, "adapters", "activate", sector, version)


def issue_key(env: dict[str, str], role: str = "hall_client", name: str = "bench hall") -> str:
    issued = yiwang(env, "keys", "issue", "--name", name, "--role", role)
    return next(line.split("key:", 1)[1].strip() for line in issued.splitlines() if line.startswith("key:"))


def percentile(values: list[float], p: int) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return round(ordered[0], 1)
    return round(statistics.quantiles(ordered, n=100, method="inclusive")[p - 1], 1)


class Processes:
    """`yiwang` processes of one deployment, logging into the work folder, stopped at the end."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.started[name] = subprocess.Popen([YIWANG, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def pids(self) -> dict[str, Callable[[], list[int]]]:
        return {name: (lambda pid=p.pid: [pid]) for name, p in self.started.items()}

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_: object) -> None:
        for process in self.started.values():
            process.terminate()
        for process in self.started.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class Sector:
    url: str
    pid: int
    _ask: Any
    _answer: Any

    def counters(self) -> dict[str, int]:
        """The simulator's counters now (cases_created, duplicate_submits, queries_received, ...)."""
        self._ask.put("counters")
        return dict(self._answer.get(timeout=30))


SIMULATORS = {  # sector -> "module:class" of its simulator
    "social_security": "adapters.simulators.social_security:SocialSecuritySimulator",
    "housing_fund": "adapters.simulators.housing_fund:HousingFundSimulator",
    "civil_affairs": "adapters.simulators.civil_affairs:CivilAffairsSimulator",
    "public_security": "adapters.simulators.public_security:PublicSecuritySimulator",
}


def _sector_main(sector: str, options: dict[str, Any], ask: Any, answer: Any) -> None:
    module, _, name = SIMULATORS[sector].partition(":")
    simulator_class = getattr(importlib.import_module(module), name)
    with simulator_class(**options) as simulator:
        answer.put(simulator.url)
        while ask.get() == "counters":
            answer.put(simulator.counters)


@contextmanager
def sector_process(sector: str = "social_security", **options: Any) -> Iterator[Sector]:
    """A sector's simulator in a process of its own, so its CPU is counted apart from the load client's.
    `options` go to the simulator (by default the sector decides ten minutes later: runs measure delivery)."""
    context = multiprocessing.get_context("spawn")
    ask, answer = context.Queue(), context.Queue()
    options = {"decision_delay_ms": 600_000, **options}
    process = context.Process(target=_sector_main, args=(sector, options, ask, answer), daemon=True)
    process.start()
    try:
        yield Sector(answer.get(timeout=60), int(process.pid or 0), ask, answer)
    finally:
        ask.put("stop")
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"yiwang_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    vhost = f"yiwang-bench-{uuid.uuid4().hex[:10]}"
    rabbitmqctl = shutil.which("rabbitmqctl") or "rabbitmqctl"
    subprocess.run([rabbitmqctl, "-q", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run([rabbitmqctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True, timeout=60)
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"
    finally:
        subprocess.run([rabbitmqctl, "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


def service_pids(prefix: str) -> Callable[[], list[int]]:
    """PostgreSQL's or RabbitMQ's processes on this machine, found again at each reading (PostgreSQL starts
    a backend per connection): their CPU counts against the run too."""
    def find() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (entry / "comm").read_text().startswith(prefix):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    return find


class CpuMeter:
    """CPU seconds (user + system) of named groups of processes, as shares of the machine over a run.
    A process that ended during the run takes its time with it (short-lived PostgreSQL backends)."""

    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.start = {pid: _cpu_seconds(pid) for find in groups.values() for pid in find()}

    def share(self, wall_s: float) -> dict[str, float]:
        cpus = len(os.sched_getaffinity(0))
        return {name: round(sum(_cpu_seconds(pid) - self.start.get(pid, 0.0) for pid in find())
                            / (wall_s * cpus), 3)
                for name, find in self.groups.items()}


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CpuMeter.TICKS  # utime, stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        time.sleep(0.05)



PY_SPY = str(Path(sys.executable).with_name("py-spy"))
PROFILES = Path(__file__).resolve().parents[1] / "var" / "bench-profiles"  # folded stacks; git-ignored


@contextmanager
def profiled(pids: dict[str, int], folder: Path) -> Iterator[dict[str, Path]]:
    """Sample the named processes with py-spy while the block runs (100 Hz, only the thread holding the GIL: where Python spends CPU, not where it waits), into
    `folder/<name>.collapsed` (one stack per line, folded: open with speedscope or `top_functions`)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.collapsed" for name in pids}
    spies = [subprocess.Popen([PY_SPY, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--gil",
                               "--output", str(files[name]), "--nonblocking"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name, pid in pids.items()]
    try:
        yield files
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()


OWN_CODE = ("gateway/", "adapters/", "mappings/", "certstore/", "ops/")  # frames' paths as py-spy prints them


def owned_shares(collapsed: Path, count: int = 8) -> list[str]:
    """Where a folded py-spy profile's samples go, each given to the innermost frame of the project's own code
    on its stack (the libraries it calls count as its time: SQLAlchemy under the ledger, httpx under the
    adapter) or, with none, to the package at its top (uvicorn, asyncio); as 'share module.function'."""
    shares: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit() or not stack:
            continue
        frames = stack.split(";")
        ours = [frame for frame in frames if _frame_path(frame).startswith(OWN_CODE)]
        owner = _owner(ours[-1]) if ours else _frame_path(frames[-1]).split("/")[0].removesuffix(".py")
        shares[owner] = shares.get(owner, 0) + int(samples)
        total += int(samples)
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])[:count]
    return [f"{n / (total or 1):.0%} {name}" for name, n in ranked]


def _frame_path(frame: str) -> str:
    """'submit (gateway/http/routers/cases.py:260)' -> 'gateway/http/routers/cases.py'."""
    return frame.rpartition("(")[2].rpartition(":")[0]


def _owner(frame: str) -> str:
    """'submit (gateway/http/routers/cases.py:260)' -> 'gateway.http.routers.cases.submit'."""
    return f"{_frame_path(frame).removesuffix('.py').replace('/', '.')}.{frame.partition(' (')[0]}"


def children(pid: int) -> list[int]:
    """The processes `pid` started (any of its threads), from /proc; [] once it has ended."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def top_functions(collapsed: Path, count: int = 12) -> list[tuple[str, float]]:
    """The functions a folded py-spy profile spent most of its samples in (inclusive), as shares."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        total += int(samples)
        for frame in set(stack.split(";")):
            inclusive[frame] = inclusive.get(frame, 0) + int(samples)
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])
    return [(frame, round(n / total, 3)) for frame, n in ranked[:count]] if total else []
