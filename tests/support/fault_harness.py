"""The fault tests' harness: a cluster of real `yiwang` processes, a load client, and the ledger check.

Why a harness of its own: a fault test must show that *nothing is lost and nothing happens twice*
(DESIGN invariants 1-3) while processes die, the broker drops connections and the database kills
sessions. That needs real processes on one PostgreSQL (and RabbitMQ when given), a client that behaves
like the online hall (one Idempotency-Key per application, retried on 503 and on lost answers), and
an independent account at the end: the sector simulators' own count of applied effects against the
cases the client was told were accepted, and every stored case checked against its events.

`tests/faults/test_faults.py` composes these; nothing here is a test by itself.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import httpx
from sqlalchemy import Engine, create_engine, func, select, text

from adapters.registry import default_bundles_dir
from adapters.simulators.base import SimulatorBase
from certstore.keyring import MasterKeys
from gateway.bootstrap.app import personal_data
from gateway.cases.service import CaseService
from gateway.catalogue.calendar_file import load_calendar
from gateway.catalogue.matters import Catalogue
from gateway.config import Settings
from gateway.domain.case import Actor, CaseEvent, CaseState, Trigger, state_from_events
from gateway.domain.clock import SystemClock
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from gateway.persistence.engine import make_engine
from gateway.persistence.personal_data import PersonalData
from gateway.persistence.uow import UnitsOfWork, create_schema
from gateway.sectors.bundle_records import BundleStore, pack_folder
from gateway.security.api_keys import ApiKeyStore
from tests.support.processes import wait_until_healthy

YIWANG = str(Path(sys.executable).with_name("yiwang"))
# The harness's own database sessions carry this name, so a test that terminates "the gateway's
# connections" spares the connection it is checking the ledger with.
HARNESS_APP = "yiwang-fault-harness"
UNDECIDED = frozenset({CaseState.SUBMITTED, CaseState.ACCEPTED, CaseState.IN_PROCESS, CaseState.SUSPENDED,
                       CaseState.SUPPLEMENT_REQUIRED})
OPEN_OUTBOX = ("pending", "queued")
RETRY_AFTER_CAP_S = 2.0  # the load client honours a 503's Retry-After up to this long
EXAMPLES = 5  # a problem lists at most this many cases by name
# A line at error level or above: structlog's console renderer (`[error    ]`), uvicorn's and Python's logging
# (`ERROR:`), or the first line of a traceback.
ERROR_LINE = re.compile(r"\[(error|critical|exception)\s*\]|^(ERROR|CRITICAL)\b|^Traceback ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` every 20 ms; an AssertionError naming `what` if it does not hold in time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)


def in_flight(simulator: SimulatorBase) -> bool:
    """Whether the sector is holding a call right now: a request counted on arrival (`raw_requests`) but
    not yet handled (`submits_received`, `queries_received` count after the "slow" fault's delay)."""
    counters = simulator.counters
    return counters["raw_requests"] > counters["submits_received"] + counters["queries_received"]


# --------------------------------------------------------------------------- services


def create_database(admin_url: str) -> str:
    """A PostgreSQL database of one test's own (terminating its sessions touches nobody else)."""
    name = f"yiwang_fault_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, db_url: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    finally:
        admin.dispose()


def harness_engine(db_url: str) -> Engine:
    if db_url.startswith("sqlite"):  # one file, no sessions to tell apart
        return make_engine(db_url)
    separator = "&" if "?" in db_url else "?"
    return make_engine(f"{db_url}{separator}application_name={HARNESS_APP}")


def terminate_gateway_sessions(db_url: str) -> int:
    """`pg_terminate_backend` every session of the test database but the harness's own; returns how many."""
    database = db_url.rsplit("/", 1)[1].split("?")[0]
    engine = harness_engine(db_url)
    try:
        with engine.connect() as conn:
            killed = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :db "
                "AND pid <> pg_backend_pid() AND coalesce(application_name, '') <> :me"),
                {"db": database, "me": HARNESS_APP}).scalar_one()
            conn.commit()
        return int(killed)
    finally:
        engine.dispose()


def rabbitmqctl(*args: str, timeout_s: float = 60) -> str:
    """Run `rabbitmqctl`; a failure raises with its output (the broker is part of the test)."""
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done.stdout


def vhost_connections(vhost: str) -> int:
    """How many client connections the broker has open in `vhost`."""
    listed = rabbitmqctl("list_connections", "-p", vhost, "--quiet", "--no-table-headers", "name")
    return sum(1 for line in listed.splitlines() if line.strip())


# Where Debian's package keeps RabbitMQ's own scripts: /usr/sbin/rabbitmq-server is a wrapper that, run by root,
# becomes the `rabbitmq` user with that user's home (and cookie); a private node runs the script itself, as us.
RABBITMQ_SCRIPTS = Path("/usr/lib/rabbitmq/bin")


def listener_port() -> int:
    """A free loopback port BELOW the kernel's ephemeral range, for a listener that must bind the same port again.

    `stop_app` closes the node's AMQP listener; while it is closed, any outgoing connection on the machine may be
    handed that port as its local port if it is in the ephemeral range, and `start_app` then fails with
    eaddrinuse (seen once in a full run). Ports below the range are never handed out that way."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = list(range(max(1024, low - 12000), low))
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free loopback port below {low}")


class PrivateBroker:
    """A RabbitMQ node of one test's own, on loopback ports of its own, that the test may stop and start.

    The machine's broker serves every other test running beside this one; stopping it would break them.
    This node has its own name, ports, data and log folders under `workdir`, its own Erlang cookie (so
    no command meant for it can reach another node), no plugins and no config of the machine's. Booting
    it takes 5-10 s on this machine. `stop()` kills it and removes its folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = listener_port()
        self.node = f"yiwang-test-{uuid.uuid4().hex[:8]}@localhost"
        home = workdir / "home"
        for folder in (home, workdir / "mnesia", workdir / "log"):
            folder.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        (workdir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (workdir / "enabled_plugins").write_text("[].\n")  # no management plugin, no listener of its own
        (workdir / "rabbitmq-env.conf").write_text("")  # not the machine's (it names the machine's node)
        self.env = {**os.environ, "HOME": str(home), "RABBITMQ_NODENAME": self.node,
                    "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(free_port()),
                    "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
                    "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
                    "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"), "RABBITMQ_LOG_BASE": str(workdir / "log"),
                    "ERL_EPMD_ADDRESS": "127.0.0.1"}
        self.process: subprocess.Popen[bytes] | None = None
        self.boot_s = 0.0

    @property
    def url(self) -> str:
        """Its default virtual host: the whole node is the test's."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self, timeout_s: float = 60) -> Self:
        """Boot the node; returns once it accepts AMQP connections."""
        started = time.monotonic()
        with open(self.workdir / "server.out", "wb") as out:
            self.process = subprocess.Popen([str(RABBITMQ_SCRIPTS / "rabbitmq-server")], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        while not self._accepting():
            if self.process.poll() is not None or time.monotonic() - started > timeout_s:
                raise AssertionError(f"the private RabbitMQ node did not come up in {timeout_s} s "
                                     f"(exit {self.process.poll()})\n{self._log_tail()}")
            time.sleep(0.1)
        self.boot_s = time.monotonic() - started
        return self

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        """`rabbitmqctl` against this node only."""
        done = subprocess.run([str(RABBITMQ_SCRIPTS / "rabbitmqctl"), "-n", self.node, *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    @contextmanager
    def app_stopped(self) -> Iterator[None]:
        """`stop_app` for the body; `start_app` (and waiting for it) even if the body fails."""
        self.ctl("stop_app")
        try:
            yield
        finally:
            self.ctl("start_app")
            self.ctl("await_startup", timeout_s=120)

    def stop(self) -> None:
        """Kill the node and remove its folder. Not `rabbitmqctl stop`: nothing of the node outlives the test,
        so a graceful halt (another Erlang VM booted to ask for it, then the node's own shutdown: seconds
        on this machine) would only be waited for."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the node and its children
            self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _accepting(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def _log_tail(self, lines: int = 30) -> str:
        logs = sorted((self.workdir / "log").glob("*.log")) + [self.workdir / "server.out"]
        return "\n".join("\n".join(p.read_text(errors="replace").splitlines()[-lines:]) for p in logs if p.exists())


def job_holder(engine: Engine, job: str) -> str | None:
    """The owner of `job`'s lease while a run holds it; None between runs."""
    with engine.connect() as conn:
        return conn.execute(select(t.job_leases.c.owner).where(t.job_leases.c.job == job,
                                                               t.job_leases.c.lease_until.is_not(None))).scalar()


def unpublished_notifications(db_url: str) -> int:
    """Case events the hall has not been told of yet."""
    engine = harness_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.case_notifications)
                                    .where(t.case_notifications.c.status != "published")).scalar_one())
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- the deployment


# What the fault tests change in a shipped bundle, as a sector team would for a test deployment: a short
# timeout, a circuit breaker that tries again after 200 ms (not 30 s) once the sector is back, messages that
# wait for it 2 s at most (not an hour) before they are dead letters, and no rate limit in the way of a few
# hundred cases a minute.
TUNING = {
    r"(?m)^timeout_ms: \d+": "timeout_ms: 2000",
    r"(?m)^retry: \{(.*)\}$": r"retry: {\1, max_wait_ms: 2000}",
    r"(?m)^circuit_breaker: .*$": "circuit_breaker: {failure_threshold: 5, reset_after_ms: 200}",
    r"(?m)^rate_limit: .*$": "rate_limit: {per_second: 1000, burst: 1000}",
    r'(?m)^version: "': 'version: "faults-',
}


def prepare_database(db_url: str, sectors: Sequence[str], workdir: Path) -> None:
    """The schema, and each sector's shipped bundle (tuned, see TUNING) registered and activated."""
    engine = make_engine(db_url)
    try:
        create_schema(engine)
        store = BundleStore(engine, SystemClock())
        for sector in sectors:
            folder = workdir / "bundles" / sector
            shutil.copytree(default_bundles_dir() / sector, folder)
            descriptor = folder / "bundle.yaml"
            tuned = descriptor.read_text(encoding="utf-8")
            for pattern, replacement in TUNING.items():
                tuned = re.sub(pattern, replacement, tuned, count=1)
            descriptor.write_text(tuned, encoding="utf-8")
            version = store.register(pack_folder(folder), "fault-tests").version
            store.activate(sector, version, "fault-tests", force=True)
    finally:
        engine.dispose()


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class Cluster:
    """One `yiwang serve` (no dispatcher of its own) and N `yiwang worker`s sharing one database (and one
    RabbitMQ vhost when `amqp_url` is given), configured by environment as a deployment would be.

    Every process shares the var dir and explicit keys, so any of them (and the harness) reads what the
    others sealed. Workers can be SIGKILLed and restarted; `stop()` ends everything that was started.
    """

    def __init__(self, db_url: str, workdir: Path, endpoints: Mapping[str, str], *, amqp_url: str | None = None,
                 workers: int = 3, worker_settings: Mapping[str, str] | None = None,
                 **settings: str) -> None:
        self.db_url = db_url
        self.amqp_url = amqp_url
        self.workdir = workdir
        self.worker_count = workers
        # Workers deliver on 8 threads: 6 + 4 connections each (at 4 + 4 a lease ran out while a thread waited
        # for one, and a sector got a submission twice); the API process (the env below) serves submissions
        # and callbacks at once and needs more (at 4 + 4 its pool ran dry under the callback fault load).
        self.worker_settings = {"YIWANG_DB_POOL_SIZE": "6", "YIWANG_DB_MAX_OVERFLOW": "4", **(worker_settings or {})}
        self.master_key = MasterKeys.generate("faults")
        self.blind_index_key = os.urandom(32).hex()
        self.env = {
            **os.environ,
            "YIWANG_VAR_DIR": str(workdir / "var"),
            "YIWANG_DATABASE_URL": db_url,
            "YIWANG_MASTER_KEY": self.master_key,
            "YIWANG_BLIND_INDEX_KEY": self.blind_index_key,
            "YIWANG_MATERIAL_LINK_KEY": os.urandom(32).hex(),
            "YIWANG_SECTOR_ENDPOINTS": ",".join(f"{s}={u}" for s, u in endpoints.items()),
            "YIWANG_DISPATCH": "off",  # the API process only takes cases; workers deliver
            "YIWANG_POLL_INTERVAL_MS": "100",
            "YIWANG_RETRY_ATTEMPTS": "3",
            "YIWANG_RETRY_INITIAL_MS": "10",
            "YIWANG_RETRY_MAX_MS": "50",
            "YIWANG_LEASE_MS": "3000",
            "YIWANG_DISPATCH_IDLE_MS": "50",
            "YIWANG_REGISTRY_REFRESH_MS": "500",
            "YIWANG_OUTBOX_SWEEP_MS": "1000",
            "YIWANG_OUTBOX_REQUEUE_AFTER_MS": "5000",
            "YIWANG_AMQP_HEARTBEAT_S": "5",
            "YIWANG_LOG_LEVEL": "info",
            # Four processes at up to pool + overflow connections each (one cluster used 37 at 4 + 10), and two
            # clusters may run at once beside the other workers' tests: at 20 + 10 a full run met PostgreSQL's
            # max_connections (100). The API process: 8 + 8; the workers: 6 + 4 (worker_settings above).
            "YIWANG_DB_POOL_SIZE": "8",
            "YIWANG_DB_MAX_OVERFLOW": "8",
            "PYTHONUNBUFFERED": "1",  # a SIGKILLed process's last lines are in its log, not lost in a buffer
            **settings,
        }
        if amqp_url:
            self.env["YIWANG_AMQP_URL"] = amqp_url
        else:
            self.env.pop("YIWANG_AMQP_URL", None)  # never a broker from the caller's environment by accident
        self.api: Proc | None = None
        self.workers: list[Proc] = []
        self.retired: list[Proc] = []  # killed workers: their logs still tell the story
        self.url = ""
        self.kills = 0
        self.loads: list[Load] = []
        self._starts = 0

    # ----- lifecycle

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Self:
        """The API and the workers at once, as a deployment starts them (whichever comes first seeds the
        catalogue; the others find it seeded); returns once all are up."""
        port = free_port()
        self.api = self._launch("api", ["serve", "--port", str(port)], {})
        self.url = f"http://127.0.0.1:{port}"
        self.workers = [self._start_worker(i) for i in range(self.worker_count)]  # booting beside the API
        try:
            wait_until_healthy(self.api.process, self.url, time.monotonic() + 60)
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n{self.logs()}") from None
        self.wait_workers_ready()  # the load meets a working cluster, not one still importing
        return self

    def stop(self) -> None:
        """End the loads still submitting (a failed test), SIGTERM every live process, then SIGKILL what is
        still there after 10 s."""
        for load in self.loads:
            load.cancel()
        procs = [p for p in [self.api, *self.workers] if p is not None]
        for proc in procs:
            if proc.process.poll() is None:
                proc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait(timeout=10)

    def _start_worker(self, index: int) -> Proc:
        return self._launch(f"worker{index}", ["worker"], self.worker_settings)

    def _launch(self, name: str, args: list[str], extra: Mapping[str, str]) -> Proc:
        self._starts += 1
        log = self.workdir / "logs" / f"{self._starts:02d}-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:  # the child keeps its own descriptor
            process = subprocess.Popen([YIWANG, *args], env={**self.env, **extra}, stdout=out,
                                       stderr=subprocess.STDOUT)
        return Proc(name, process, log)

    def kill_worker(self, index: int) -> None:
        """SIGKILL: no cleanup, no ack, no lease released — as a machine losing power."""
        proc = self.workers[index]
        proc.process.send_signal(signal.SIGKILL)
        proc.process.wait(timeout=10)
        self.retired.append(proc)
        self.kills += 1

    def restart_worker(self, index: int) -> None:
        self.workers[index] = self._start_worker(index)

    def kill_job_holder(self, job: str, timeout_s: float = 30) -> tuple[str, float]:
        """SIGKILL the worker that holds `job`'s lease in the middle of a run. Runs take milliseconds, so the
        holder is frozen (SIGSTOP) the moment its lease is seen held, and killed only if the lease is still
        held once it is frozen (else thawed, and the next run watched for). Returns the lease owner killed
        and when (epoch seconds); the worker is not restarted."""
        engine = harness_engine(self.db_url)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                owner = job_holder(engine, job)
                proc = self._worker_of(owner)
                if owner is None or proc is None:
                    time.sleep(0.002)
                    continue
                proc.process.send_signal(signal.SIGSTOP)
                time.sleep(0.1)  # what it had already sent the database is done by now
                if job_holder(engine, job) == owner:
                    self.kill_worker(self.workers.index(proc))
                    return owner, time.time()
                proc.process.send_signal(signal.SIGCONT)
        finally:
            engine.dispose()
        raise AssertionError(f"no worker was caught holding the {job!r} lease within {timeout_s} s\n{self.logs()}")

    def job_taken_over(self, job: str, holder: str, timeout_s: float) -> float:
        """When (epoch seconds, the new holder's own clock) a process other than `holder` started `job`."""
        engine = harness_engine(self.db_url)
        started: list[float] = []

        def taken() -> bool:
            with engine.connect() as conn:
                row = conn.execute(select(t.job_leases.c.owner, t.job_leases.c.last_started_at)
                                   .where(t.job_leases.c.job == job)).one()
            started[:] = [row.last_started_at.timestamp()] if row.owner != holder else []
            return bool(started)

        try:
            wait_until(taken, timeout_s, f"another process taking over {job!r} from the killed {holder}")
        finally:
            engine.dispose()
        return started[0]

    def _worker_of(self, owner: str | None) -> Proc | None:
        """The live worker whose lease owner name (host:pid:nonce) this is."""
        pid = owner.split(":")[1] if owner and owner.count(":") == 2 else None
        return next((p for p in self.workers if str(p.process.pid) == pid and p.process.poll() is None), None)

    def kill_workers_repeatedly(self, kills: int, every_s: float, busy: Callable[[], bool]) -> None:
        """SIGKILL a running worker (round robin) at a moment `busy()` says a sector call is in flight, every
        `every_s` at the soonest, restarting each at once; `kills` of them. A worker still starting up is
        not a target: the point is to kill one in the middle of its deliveries. Gives up waiting for a
        busy moment after 30 s (the test then sees fewer kills)."""
        for n in range(kills):
            deadline = time.monotonic() + 30
            while not busy():
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
            index = n % len(self.workers)
            self._wait_ready(self.workers[index], deadline)
            self.kill_worker(index)
            self.restart_worker(index)
            time.sleep(every_s)

    def wait_workers_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        for proc in self.workers:
            self._wait_ready(proc, deadline)

    def _wait_ready(self, proc: Proc, deadline: float) -> None:
        """Until the worker printed its start line (its gateway built, the database reached)."""
        while "delivering" not in proc.log.read_text(errors="replace"):
            if proc.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{proc.name} did not start (exit {proc.process.poll()})\n{self.logs()}")
            time.sleep(0.05)

    # ----- what the harness needs of the deployment

    def settings(self) -> Settings:
        return Settings(var_dir=self.workdir / "var", database_url=self.db_url, master_key=self.master_key,
                        blind_index_key=self.blind_index_key)

    def personal(self) -> PersonalData:
        return personal_data(self.settings())

    def case_service(self, engine: Engine) -> CaseService:
        """The case service as an operator's command builds it (`yiwang ops`): reads dead letters, replays."""
        settings = self.settings()
        return CaseService(UnitsOfWork(engine, self.personal()), Catalogue(engine), load_calendar(settings.calendar),
                           SystemClock())

    def load(self, role: Role, body: Mapping[str, Any], count: int, *, sector: str | tuple[str, ...],
             threads: int = 4) -> Load:
        """A load client of the hall (or a window) against this cluster's API, with a key of its own."""
        load = Load(self.url, self.headers(role), body, count, sector=sector, threads=threads)
        self.loads.append(load)
        return load

    def headers(self, role: Role) -> dict[str, str]:
        engine = make_engine(self.db_url)
        try:
            _, key = ApiKeyStore(engine).issue(f"fault-test {role}", [role])
        finally:
            engine.dispose()
        headers = {"Authorization": f"Bearer {key}"}
        # The API learns of a key issued by another process on its next reload: at once on a miss,
        # at most once a second (identities.MISS_RELOAD_S). The load starts once the key is known.
        wait_until(lambda: httpx.get(f"{self.url}/v1/cases/none", headers=headers, timeout=5).status_code != 401,
                   10, "the API to recognise a newly issued key")
        return headers

    def logs(self, tail: int = 25) -> str:
        """The last lines of every process's log, killed ones included: for failure messages."""
        parts = []
        for proc in [p for p in [self.api, *self.retired, *self.workers] if p is not None]:
            lines = proc.log.read_text(errors="replace").splitlines() if proc.log.exists() else []
            parts.append(f"--- {proc.log.name} (exit {proc.process.poll()}) ---\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts)

    def tracebacks(self) -> int:
        """How many tracebacks the processes logged (reported, not judged: some faults are expected)."""
        procs = [p for p in [self.api, *self.retired, *self.workers] if p is not None and p.log.exists()]
        return sum(p.log.read_text(errors="replace").count("Traceback") for p in procs)

    def error_lines(self) -> list[str]:
        """Every line logged at error level or above, or opening a traceback, by any process, named by its log."""
        procs = [p for p in [self.api, *self.retired, *self.workers] if p is not None and p.log.exists()]
        return [f"{p.log.name}: {line}" for p in procs for line in p.log.read_text(errors="replace").splitlines()
                if ERROR_LINE.search(line)]


# --------------------------------------------------------------------------- the load client


@dataclass
class LoadResult:
    """What the hall saw: `accepted` maps each Idempotency-Key to the case number it was answered with."""

    sector: str | tuple[str, ...]  # the sector system the submitted matter routes to (several: a parallel matter)
    accepted: dict[str, str] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)  # every HTTP answer, retries included
    unavailable: int = 0  # 503 answers
    well_formed_unavailable: int = 0  # ... of them with Retry-After and application/problem+json
    replayed: int = 0  # answers marked Idempotent-Replayed: a retry whose first answer was lost
    transport_errors: int = 0  # refused, reset, timed out: retried with the same key
    failures: list[str] = field(default_factory=list)  # submissions given up, and why
    elapsed_s: float = 0.0

    @property
    def sectors(self) -> tuple[str, ...]:
        return (self.sector,) if isinstance(self.sector, str) else self.sector

    def __str__(self) -> str:
        return (f"load ({'+'.join(self.sectors)}): {len(self.accepted)} accepted in {self.elapsed_s:.1f} s; answers "
                f"{dict(sorted(self.statuses.items()))}; 503 {self.unavailable} "
                f"(well-formed {self.well_formed_unavailable}); replayed {self.replayed}; "
                f"transport errors {self.transport_errors}; failures {len(self.failures)}")


class Load:
    """Submits `count` applications over HTTP from a few threads, each with its own Idempotency-Key,
    retrying the same key on 503 (honouring Retry-After, capped), on connection errors and timeouts —
    so an answer lost on the way cannot make a second case — and records every accepted case number."""

    def __init__(self, url: str, headers: Mapping[str, str], body: Mapping[str, Any], count: int, *,
                 sector: str | tuple[str, ...], threads: int = 4, give_up_s: float = 60, timeout_s: float = 10) -> None:
        self.url = url
        self.headers = dict(headers)
        self.body = dict(body)
        self.result = LoadResult(sector)
        self._keys: queue.SimpleQueue[str] = queue.SimpleQueue()
        run = uuid.uuid4().hex[:8]
        for i in range(count):
            self._keys.put(f"fault-{run}-{i:05d}")
        self._threads = [threading.Thread(target=self._work, name=f"load-{i}", daemon=True) for i in range(threads)]
        self._lock = threading.Lock()
        self._give_up_s = give_up_s
        self._timeout_s = timeout_s
        self._started = 0.0
        self._cancelled = threading.Event()

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self.result.accepted)

    @property
    def done(self) -> bool:
        """Every submission answered or given up."""
        return bool(self._started) and not any(thread.is_alive() for thread in self._threads)

    def start(self) -> Self:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def wait(self, timeout_s: float = 120) -> LoadResult:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            raise AssertionError(f"the load client did not finish in {timeout_s} s: {self.result}")
        self.result.elapsed_s = time.monotonic() - self._started
        return self.result

    def run(self, timeout_s: float = 120) -> LoadResult:
        return self.start().wait(timeout_s)

    def cancel(self) -> None:
        """Stop submitting (what is left is given up): the test ends, its cluster goes away."""
        self._cancelled.set()

    def _work(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=self._timeout_s) as client:
            while not self._cancelled.is_set():
                try:
                    key = self._keys.get_nowait()
                except queue.Empty:
                    return
                self._submit(client, key)

    def _submit(self, client: httpx.Client, key: str) -> None:
        give_up = time.monotonic() + self._give_up_s
        while time.monotonic() < give_up and not self._cancelled.is_set():
            try:
                answer = client.post("/v1/cases", json=self.body, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                self._note(transport_error=True)
                time.sleep(0.2)
                continue
            self._note(status=answer.status_code)
            if answer.status_code in (200, 201):
                with self._lock:
                    self.result.accepted[key] = str(answer.json()["case_no"])
                    self.result.replayed += answer.headers.get("Idempotent-Replayed") == "true"
                return
            if answer.status_code != 503:
                self._fail(f"{key}: HTTP {answer.status_code} {answer.text[:200]}")
                return
            self._note_unavailable(answer)
            time.sleep(_retry_after_s(answer))
        self._fail(f"{key}: not accepted within {self._give_up_s} s" if not self._cancelled.is_set()
                   else f"{key}: cancelled")

    def _note(self, status: int | None = None, transport_error: bool = False) -> None:
        with self._lock:
            if status is not None:
                self.result.statuses[status] += 1
            self.result.transport_errors += transport_error

    def _note_unavailable(self, answer: httpx.Response) -> None:
        well_formed = (answer.headers.get("Retry-After", "").isdigit()
                       and answer.headers.get("Content-Type", "").startswith("application/problem+json"))
        with self._lock:
            self.result.unavailable += 1
            self.result.well_formed_unavailable += well_formed

    def _fail(self, why: str) -> None:
        with self._lock:
            self.result.failures.append(why)


def _retry_after_s(answer: httpx.Response) -> float:
    raw = answer.headers.get("Retry-After", "")
    return min(float(raw), RETRY_AFTER_CAP_S) if raw.isdigit() else 0.5


# --------------------------------------------------------------------------- the ledger check


@dataclass(frozen=True)
class SectorTally:
    sector: str
    accepted: int  # tasks of accepted cases the load client routed to this sector
    cases_created: int  # effects the sector applied
    submits_received: int
    duplicate_submits: int  # repeats it recognised by their idempotency key
    raw_requests: int  # every HTTP request, polls and faulted ones included

    def __str__(self) -> str:
        return (f"{self.sector}: {self.cases_created} effects applied for {self.accepted} accepted; "
                f"{self.submits_received} submits received, {self.duplicate_submits} recognised duplicates, "
                f"{self.raw_requests} raw requests")


@dataclass
class LedgerReport:
    recorded: int = 0  # cases the load client recorded as accepted
    cases: int = 0  # cases in the database
    events: int = 0
    outbox: dict[str, int] = field(default_factory=dict)  # rows by status
    dead_letters: int = 0  # not yet replayed
    sectors: list[SectorTally] = field(default_factory=list)
    loads: list[LoadResult] = field(default_factory=list)
    settled_in_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"ledger: {self.recorded} cases recorded by the client, {self.cases} in the database, "
                 f"{self.events} events; outbox {self.outbox}; {self.dead_letters} dead letters; "
                 f"settled in {self.settled_in_s:.1f} s",
                 *(f"  {tally}" for tally in self.sectors), *(f"  {load}" for load in self.loads)]
        lines += [f"  PROBLEM: {p}" for p in self.problems] or ["  no problems"]
        return "\n".join(lines)


Routed = Mapping[str, tuple[str, ...]]  # each recorded case number -> the sectors its tasks go to


class Deployment(Protocol):
    """What the ledger check reads a deployment through: a `Cluster`, or a gateway built in the test's process."""

    @property
    def db_url(self) -> str: ...

    def personal(self) -> PersonalData: ...


@dataclass
class _Stored:
    """What the database holds about the recorded cases, read in a few queries."""

    states: dict[str, str]
    events: dict[str, list[CaseEvent]]
    event_tasks: dict[str, list[str | None]]  # per case, each event's task id (None: not a task event)
    notifications: dict[str, list[int]]
    tasks: dict[str, list[tuple[str, str | None, str | None]]]  # case -> (task_id, sector, sector_ref)
    outbox: dict[str, list[tuple[str, str, str]]]  # case -> (task_id, operation, status)
    dead_letters: int


def ledger_check(cluster: Deployment, loads: Sequence[LoadResult], simulators: Mapping[str, SimulatorBase], *,
                 expect_dead: bool = False, settle_s: float = 60, quiet_s: float = 0.5) -> LedgerReport:
    """Wait (bounded) until every accepted case has been delivered and decided — or, with `expect_dead`,
    its message has died — and the sectors have stopped receiving; then account for everything.

    Problems reported: submissions the client gave up on (a 500 among them); a case recorded but not stored,
    or stored but never answered to the client; events not numbered 1..n, a stored state that its events
    do not rebuild, an event without its notification; a task delivered or decided more than once in the
    case's events; a sector that applied more effects than the accepted cases routed to it (duplicates) or
    fewer (lost); outbox rows still open, two for one task and operation (an outcome recorded twice), or
    dead ones and dead letters when none are expected.
    """
    report = LedgerReport(loads=list(loads))
    recorded = {case_no: load.sectors for load in loads for case_no in load.accepted.values()}
    report.recorded = len(recorded)
    engine = harness_engine(cluster.db_url)
    try:
        started = time.monotonic()
        if not _wait_settled(engine, set(recorded), settle_s):
            report.problems.append(f"not settled within {settle_s:.0f} s: " + _unsettled(engine, set(recorded)))
        _wait_quiet(simulators, quiet_s)
        report.settled_in_s = time.monotonic() - started
        stored = _read(engine, cluster.personal())
        report.cases = _count(engine, t.cases)
        report.events = _count(engine, t.case_events)
        report.outbox = _outbox_statuses(engine)
    finally:
        engine.dispose()
    report.dead_letters = stored.dead_letters
    for check in (_check_loads, _check_cases, _check_events, _check_tasks, _check_outbox):
        check(report, loads, recorded, stored, expect_dead)
    _check_sectors(report, loads, recorded, stored, simulators)
    return report


def _wait_settled(engine: Engine, recorded: set[str], settle_s: float) -> bool:
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        try:
            if not _unsettled(engine, recorded):
                return True
        except Exception:  # noqa: BLE001 - a terminated session in a database fault test: look again
            pass
        time.sleep(0.2)
    return False


def _unsettled(engine: Engine, recorded: set[str]) -> str:
    """'' when nothing is open: no outbox row pending or queued, and every recorded case decided unless
    one of its messages is dead (a dead letter waits for an operator)."""
    with engine.connect() as conn:
        open_rows = conn.execute(select(func.count()).select_from(t.outbox)
                                 .where(t.outbox.c.status.in_(OPEN_OUTBOX))).scalar_one()
        states = dict(conn.execute(select(t.cases.c.case_no, t.cases.c.state)).all())
        dead = set(conn.execute(select(t.outbox.c.case_no).where(t.outbox.c.status == "dead")).scalars())
    waiting = [c for c in recorded if c in states and CaseState(states[c]) in UNDECIDED and c not in dead]
    if not open_rows and not waiting:
        return ""
    return f"{open_rows} outbox rows open, {len(waiting)} cases undecided (e.g. {sorted(waiting)[:EXAMPLES]})"


def _wait_quiet(simulators: Mapping[str, SimulatorBase], quiet_s: float, limit_s: float = 15) -> None:
    """Until no sector has received anything for `quiet_s`: a call from a killed worker, or a late
    duplicate callback, may still be on its way when the database already looks settled."""
    deadline = time.monotonic() + limit_s
    last = {s: sim.counters for s, sim in simulators.items()}
    still_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - still_since < quiet_s:
        time.sleep(0.1)
        now = {s: sim.counters for s, sim in simulators.items()}
        if now != last:
            last, still_since = now, time.monotonic()


def _read(engine: Engine, personal: PersonalData) -> _Stored:
    with engine.connect() as conn:
        states = dict(conn.execute(select(t.cases.c.case_no, t.cases.c.state)).all())
        events: dict[str, list[CaseEvent]] = defaultdict(list)
        event_tasks: dict[str, list[str | None]] = defaultdict(list)
        for row in conn.execute(select(t.case_events).order_by(t.case_events.c.case_no, t.case_events.c.seq)):
            events[row.case_no].append(CaseEvent(
                row.seq, row.at, Trigger(row.trigger), CaseState(row.from_state) if row.from_state else None,
                CaseState(row.to_state), Actor.parse(row.actor), ""))
            data = personal.open(row.data, "case_events.data") or {}
            event_tasks[row.case_no].append(data.get("task") if isinstance(data, dict) else None)
        notifications: dict[str, list[int]] = defaultdict(list)
        for case_no, seq in conn.execute(select(t.case_notifications.c.case_no, t.case_notifications.c.seq)
                                         .order_by(t.case_notifications.c.case_no, t.case_notifications.c.seq)):
            notifications[case_no].append(seq)
        tasks: dict[str, list[tuple[str, str | None, str | None]]] = defaultdict(list)
        for row in conn.execute(select(t.case_tasks)):
            tasks[row.case_no].append((row.task_id, row.sector, row.sector_ref))
        outbox: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for row in conn.execute(select(t.outbox.c.case_no, t.outbox.c.task_id, t.outbox.c.operation,
                                       t.outbox.c.status)):
            outbox[row.case_no].append((row.task_id, row.operation, row.status))
        dead_letters = conn.execute(select(func.count()).select_from(t.dead_letters)
                                    .where(t.dead_letters.c.status == "dead")).scalar_one()
    return _Stored(states, events, event_tasks, notifications, tasks, outbox, int(dead_letters))


def _count(engine: Engine, table: t.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _outbox_statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(t.outbox.c.status, func.count()).group_by(t.outbox.c.status)).all())


def _problem(report: LedgerReport, what: str, cases: Sequence[str] | set[str]) -> None:
    if cases:
        report.problems.append(f"{what}: {len(cases)} (e.g. {sorted(cases)[:EXAMPLES]})")


def _check_loads(report: LedgerReport, loads: Sequence[LoadResult], recorded: Routed,
                 stored: _Stored, expect_dead: bool) -> None:
    for load in loads:
        if load.failures:
            report.problems.append(f"the load client gave up on {len(load.failures)} submissions: "
                                   f"{load.failures[:EXAMPLES]}")
        if load.statuses.get(500):
            report.problems.append(f"the API answered 500 {load.statuses[500]} times")
    answered = [case_no for load in loads for case_no in load.accepted.values()]
    shared = [case_no for case_no, n in Counter(answered).items() if n > 1]
    _problem(report, "case numbers answered to two different Idempotency-Keys", shared)


def _check_cases(report: LedgerReport, loads: Sequence[LoadResult], recorded: Routed,
                 stored: _Stored, expect_dead: bool) -> None:
    _problem(report, "cases accepted but missing from the database", set(recorded) - set(stored.states))
    _problem(report, "cases in the database the client was never answered with",
             set(stored.states) - set(recorded))


def _check_events(report: LedgerReport, loads: Sequence[LoadResult], recorded: Routed,
                  stored: _Stored, expect_dead: bool) -> None:
    gaps, unreplayable, unnotified = [], [], []
    for case_no, state in stored.states.items():
        events = stored.events.get(case_no, [])
        seqs = [e.seq for e in events]
        if seqs != list(range(1, len(seqs) + 1)) or not seqs:
            gaps.append(case_no)
            continue
        try:
            rebuilt = state_from_events(events)
        except ValueError:
            rebuilt = None
        if rebuilt is None or rebuilt.value != state:
            unreplayable.append(case_no)
        if stored.notifications.get(case_no, []) != seqs:
            unnotified.append(case_no)
    _problem(report, "cases whose events are not numbered 1..n (a half case)", gaps)
    _problem(report, "cases whose stored state their events do not rebuild", unreplayable)
    _problem(report, "cases whose events and notifications differ", unnotified)


def _check_tasks(report: LedgerReport, loads: Sequence[LoadResult], recorded: Routed,
                 stored: _Stored, expect_dead: bool) -> None:
    """Each sector task of an accepted case: queued in the outbox, delivered (a sector reference) unless
    its message is dead, started and concluded at most once — twice would be a duplicate the case saw."""
    unqueued: set[str] = set()
    undelivered: set[str] = set()
    twice: set[str] = set()
    undecided: set[str] = set()
    for case_no in recorded:
        if case_no not in stored.states:
            continue
        queued = {(task_id, op): status for task_id, op, status in stored.outbox.get(case_no, [])}
        tasks = [(task_id, ref) for task_id, sector, ref in stored.tasks.get(case_no, []) if sector is not None]
        if not tasks:
            unqueued.add(case_no)
        triggers = Counter(zip((e.trigger for e in stored.events[case_no]), stored.event_tasks[case_no]))
        for task_id, ref in tasks:
            status = queued.get((task_id, "submit_case"))
            if status is None:
                unqueued.add(case_no)
            elif ref is None and not (expect_dead and status == "dead"):
                undelivered.add(case_no)
            if triggers[(Trigger.TASK_STARTED, task_id)] > 1 or triggers[(Trigger.TASK_CONCLUDED, task_id)] > 1:
                twice.add(case_no)
        if CaseState(stored.states[case_no]) not in UNDECIDED:
            concluded = sum(triggers[(Trigger.TASK_CONCLUDED, task_id)] for task_id, _ in tasks)
            if concluded != len(tasks):
                undecided.add(case_no)
    _problem(report, "accepted cases without a queued sector task (a half case)", unqueued)
    _problem(report, "sector tasks never delivered", undelivered)
    _problem(report, "tasks started or concluded twice (duplicate events)", twice)
    _problem(report, "decided cases whose tasks did not each conclude once", undecided)


def _check_outbox(report: LedgerReport, loads: Sequence[LoadResult], recorded: Routed,
                  stored: _Stored, expect_dead: bool) -> None:
    open_rows = sum(report.outbox.get(status, 0) for status in OPEN_OUTBOX)
    if open_rows:
        report.problems.append(f"{open_rows} outbox rows still open: {report.outbox}")
    if not expect_dead and (report.outbox.get("dead") or stored.dead_letters):
        report.problems.append(f"{report.outbox.get('dead', 0)} dead outbox rows and {stored.dead_letters} "
                               "dead letters where none were expected")
    # One message per task and operation: a second one means an outcome was recorded twice (a submit
    # answer stored by two workers queues two polls).
    doubled = {case_no for case_no, rows in stored.outbox.items()
               if any(n > 1 for n in Counter((task_id, op) for task_id, op, _ in rows).values())}
    _problem(report, "cases with two outbox messages for one task and operation", doubled)


def _check_sectors(report: LedgerReport, loads: Sequence[LoadResult], recorded: Routed,
                   stored: _Stored, simulators: Mapping[str, SimulatorBase]) -> None:
    """The sectors' own count of applied effects against the accepted cases routed to them."""
    expected = Counter(sector for sectors in recorded.values() for sector in sectors)
    for sector, simulator in simulators.items():
        counters = simulator.counters
        tally = SectorTally(sector, expected[sector], counters["cases_created"], counters["submits_received"],
                            counters["duplicate_submits"], counters["raw_requests"])
        report.sectors.append(tally)
        if tally.cases_created > tally.accepted:
            report.problems.append(f"{sector}: duplicates — {tally.cases_created - tally.accepted} effects "
                                   f"applied twice ({tally.cases_created} applied for {tally.accepted} accepted)")
        elif tally.cases_created < tally.accepted:
            report.problems.append(f"{sector}: {tally.accepted - tally.cases_created} accepted cases never "
                                   f"applied ({tally.cases_created} applied for {tally.accepted} accepted)")
        refs = [ref for case_no in recorded if sector in recorded[case_no]
                for _, task_sector, ref in stored.tasks.get(case_no, []) if task_sector == sector and ref]
        _problem(report, f"{sector}: sector references shared by two tasks",
                 {ref for ref, n in Counter(refs).items() if n > 1})
