"""A synchronous sector query, called directly on the sector and through the gateway, side by side.

The query is `housing_fund_balance` (REST + OAuth2, adapters/bundles/housing_fund). The housing-fund
simulator runs in a process of its own; the gateway is one `yiwang serve` on the embedded default
(SQLite in a temporary YIWANG_VAR_DIR), started as an operator starts it: the bundle registered and
activated with `yiwang adapters`, a hall key issued with `yiwang keys issue`, the sector's address in
YIWANG_SECTOR_ENDPOINTS and its credentials in YIWANG_SECRET_*. The shipped bundle's `rate_limit`
(50 calls/s) would cap the gateway at 50 queries/s, so a copy with the limit raised is registered instead
(said in the entry's `note`). Where nginx is on PATH (in a full run it is installed with apt-get when it
can be), the same sector call also goes through an nginx `proxy_pass` (one worker, keep-alive upstream):
the floor of one proxy hop. In a full run the same gateway is also started with `yiwang serve --workers 2`
(two API processes on one port, on the same database): what a CPU-bound API gains from a second process.

The load comes from a separate process (multiprocessing spawn) holding the same number of keep-alive
connections (`CONNECTIONS`) to each target: `direct` (GET /api/v2/accounts/{id}/balance with a bearer
token), `gateway` (POST /v1/queries/housing_fund_balance with the hall key), `gateway_2_workers` (the same
POST to the two-process gateway), `nginx` (the direct request through the proxy). The simulator speaks
HTTP/1.0, so a request to it (from the load process, a gateway or nginx) opens a connection of its own.
Each target is warmed up, then calibrated to a run of about `seconds`; every repetition drives the targets
interleaved slice by slice (`bench.interleaved`), so machine noise lands on all of them alike. Every answer
is checked: a 200 whose body holds the person's balance (as the simulator computes it); anything else counts
as `failed`, not towards the rates or latencies.

Figures (median of the repetitions, with their spread): `direct_rps`, `gateway_rps`, `nginx_rps`,
`ratio` (gateway / direct, per repetition: the default single-process gateway's), `added_p50_ms` and
`added_p99_ms` (the gateway's latency percentile less the direct one, per repetition), each target's p50;
in a full run also `gateway_2_workers_rps`, `ratio_2_workers` (gateway_2_workers / direct, per repetition)
and `added_p50_ms_1_connection` (direct and gateway again, one connection each: the hop without queueing).
A quick run skips the two-process gateway: its start takes seconds the quick budget does not have.
Facts: requests and failures per target, each gateway's and the simulator's CPU time per request and
every process's CPU share (from /proc, over the measurement; a two-process gateway's counts its parent and
children, and spreads their idle chores over its own requests), `machine_cpu_busy` (the machine's CPUs'
busy share meanwhile, from /proc/stat: other tenants' processes count there, not in `cpu_share`) and, when
profiled (`--profile`, or a full run that misses a target), a py-spy profile of the gateway under load with
where its samples go.
Targets (the issue's): `ratio` >= 0.5 and `added_p50_ms` <= 2.
"""

from __future__ import annotations

import gc
import http.client
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench import Batch, Options, calibrate, figure, interleaved
from bench.harness import (BUNDLES, PROFILES, CpuMeter, Processes, alive, children, free_port, issue_key,
                           owned_shares, percentile, profiled, register_and_activate, sector_process, wait_until)

QUERY, SECTOR = "housing_fund_balance", "housing_fund"
PERSON = "150203196604150035"  # any well-formed ID number has an account at the simulator
CONNECTIONS = 8  # keep-alive connections per target, the same for every target
WARM_UP = 4  # requests per connection before calibrating
WORKERS = 2  # API processes of the `gateway_2_workers` target (`yiwang serve --workers 2`)
TARGET_RATIO = 0.5
TARGET_ADDED_P50_MS = 2.0
SECRETS = {  # the simulator's default credentials, as the deployment provides them (tests/conftest.py)
    "YIWANG_SECRET_GJJ_CLIENT_ID": "yiwang", "YIWANG_SECRET_GJJ_CLIENT_SECRET": "s3cret"}
RAISED_RATE_LIMIT = "rate_limit: {per_second: 100000, burst: 100000}"
NOTE = ("the shipped housing_fund bundle's rate_limit (50/s, burst 100) would cap the gateway at 50 queries/s: "
        "a copy with the limit raised is registered instead. The simulator speaks HTTP/1.0 (a connection per "
        "request), so the gateway's and nginx's calls to it cannot be kept alive")


@dataclass(frozen=True)
class Target:
    """One way of asking the query over HTTP, and what a right answer's body holds."""

    url: str  # http://127.0.0.1:PORT
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    expect: bytes  # a right answer is a 200 whose body holds this


@dataclass(frozen=True)
class Repetition:
    """One target's figures in one repetition."""

    rps: float  # right answers per second
    p50_ms: float
    p99_ms: float
    ok: int
    failed: int


@dataclass
class Drive:
    """What the load process reports: per target, each repetition's figures and every request it made."""

    repetitions: dict[str, list[Repetition]]
    requests: dict[str, int]  # including calibration (the warm-up): what the servers' CPU time was spent on
    client_cpu_s: float  # the load process's own CPU time


def run(options: Options) -> dict[str, Any]:
    repeats, seconds = (3, 0.4) if options.quick else (5, 2.0)
    notes = [NOTE]
    nginx = shutil.which("nginx") or (None if options.quick else _install_nginx(notes))
    if nginx is None and options.quick:
        notes.append("nginx is not on PATH (a quick run installs nothing): no nginx_rps")
    if options.quick:
        notes.append(f"a quick run skips the gateway with --workers {WORKERS}: no gateway_2_workers_rps")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="yiwang-bench-query-")))
        sector = stack.enter_context(sector_process(SECTOR, token_ttl_s=3600))
        gateways, targets = stack.enter_context(_gateways_and_targets(work, sector.url, workers=not options.quick))
        if nginx is not None:
            targets["nginx"] = _via(targets["direct"], stack.enter_context(_nginx(nginx, work, sector.url)))
        api_pid = gateways["gateway"]()[0]
        cpu = CpuMeter({**gateways, "simulator": lambda: [sector.pid]})
        started, machine_before = time.perf_counter(), machine_jiffies()
        drive = compare(targets, CONNECTIONS, repeats, seconds)
        wall_s = time.perf_counter() - started
        cpu_s = {name: share * wall_s * len(os.sched_getaffinity(0)) for name, share in cpu.share(wall_s).items()}
        entry = summary(drive, {**cpu_s, "load client": drive.client_cpu_s}, wall_s, notes,
                        busy_share(machine_before, machine_jiffies()))
        if not options.quick:  # what the hop itself adds, without queueing behind other requests
            alone = compare({name: targets[name] for name in ("direct", "gateway")}, 1, repeats, seconds / 2)
            entry["added_p50_ms_1_connection"] = figure(added(alone, "p50_ms"), "ms", 2)
            if "limited_by" in entry:
                entry["limited_by"] = limited_by(entry)  # told again with that figure
        if options.profile or (not entry["met"] and not options.quick):
            entry.update(_profile(api_pid, targets["gateway"]))
    return entry


def summary(drive: Drive, cpu_s: Mapping[str, float], wall_s: float, notes: list[str],
            machine_busy: float | None = None) -> dict[str, Any]:
    """The section's entry from the load process's report and the CPU seconds each process spent;
    `machine_busy`: the share of the machine's CPU time busy meanwhile, whoever's processes used it."""
    reps = drive.repetitions
    entry: dict[str, Any] = {"query": QUERY, "connections": CONNECTIONS, "repetitions": len(reps["direct"])}
    for name, runs in reps.items():
        entry[f"{name}_rps"] = figure([r.rps for r in runs], "req/s")
    entry["ratio"] = figure([g.rps / d.rps for g, d in _pairs(drive)], "gateway/direct", 3)
    if "gateway_2_workers" in reps:
        entry["ratio_2_workers"] = figure([g.rps / d.rps for g, d in _pairs(drive, "gateway_2_workers")],
                                          "gateway_2_workers/direct", 3)
    entry["added_p50_ms"] = figure(added(drive, "p50_ms"), "ms", 2)
    entry["added_p99_ms"] = figure(added(drive, "p99_ms"), "ms", 2)
    for name, runs in reps.items():
        entry[f"{name}_p50_ms"] = figure([r.p50_ms for r in runs], "ms", 2)
    entry["requests"] = drive.requests
    entry["failed"] = {name: sum(r.failed for r in runs) for name, runs in reps.items()}
    for gateway in ("gateway", "gateway_2_workers"):
        if gateway in cpu_s and gateway in drive.requests:
            entry[f"{gateway}_cpu_ms_per_query"] = round(1000 * cpu_s[gateway] / drive.requests[gateway], 2)
    entry["simulator_cpu_ms_per_request"] = round(1000 * cpu_s["simulator"] / sum(drive.requests.values()), 2)
    cpus = len(os.sched_getaffinity(0))
    entry["cpu_share"] = {name: round(seconds / (wall_s * cpus), 3) for name, seconds in cpu_s.items()}
    if machine_busy is not None:  # beyond the sum of cpu_share: other tenants of the machine
        entry["machine_cpu_busy"] = round(machine_busy, 3)
    entry["target"] = {"ratio": TARGET_RATIO, "added_p50_ms": TARGET_ADDED_P50_MS}
    entry["met"] = (entry["ratio"]["median"] >= TARGET_RATIO
                    and entry["added_p50_ms"]["median"] <= TARGET_ADDED_P50_MS)
    if not entry["met"]:
        entry["limited_by"] = limited_by(entry)
    entry["note"] = "; ".join(notes)
    return entry


def added(drive: Drive, percentile_ms: str) -> list[float]:
    """Per repetition, the gateway's latency percentile less the direct call's."""
    return [getattr(g, percentile_ms) - getattr(d, percentile_ms) for g, d in _pairs(drive)]


def _pairs(drive: Drive, gateway: str = "gateway") -> list[tuple[Repetition, Repetition]]:
    return list(zip(drive.repetitions[gateway], drive.repetitions["direct"], strict=True))


def limited_by(entry: Mapping[str, Any]) -> str:
    alone = entry.get("added_p50_ms_1_connection")
    return (
        f"CPU: the gateway is one Python process whose threads take turns on the GIL; it spends "
        f"{entry['gateway_cpu_ms_per_query']} ms of CPU per query against the simulator's "
        f"{entry['simulator_cpu_ms_per_request']} ms per request, so at {CONNECTIONS} connections it saturates "
        f"near {1000 / entry['gateway_cpu_ms_per_query']:.0f} queries/s and added_p50_ms is mostly queueing"
        + (f" (one connection: {alone['median']} ms added)" if alone else "")
        + ". Of that CPU, measured one request at a time: ~15% serving HTTP (uvicorn and the middleware, as "
        "for GET /healthz), ~25% the route (key check, body, answer, the POST's audit record), ~60% the query "
        "(two sealed message-log records, the REST call through httpx on a new connection, the request handed "
        "to a worker thread and back); the simulator, nginx and the load process share the same 2 cores"
        + _two_processes(entry))


def _two_processes(entry: Mapping[str, Any]) -> str:
    """What a second API process gave, when it was measured, and how busy the machine was meanwhile."""
    if "ratio_2_workers" not in entry:
        return ""
    told = (f". With --workers {WORKERS} (two processes, two GILs) the gateway answers "
            f"{entry['gateway_2_workers_rps']['median']} queries/s (ratio {entry['ratio_2_workers']['median']}, "
            f"against {entry['ratio']['median']} for one process): a second process gains only what the machine's "
            f"cores have left beside the first, the simulator and the load process")
    if "machine_cpu_busy" in entry:
        told += (f"; the machine's CPUs were {entry['machine_cpu_busy']:.0%} busy over the measurement, "
                 f"{sum(entry['cpu_share'].values()):.0%} of their time with this section's processes")
    return told


def machine_jiffies() -> tuple[int, int]:
    """(busy, all) CPU time of the whole machine since boot, from /proc/stat: other tenants' too."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return user + nice + system + irq + softirq + steal, user + nice + system + idle + iowait + irq + softirq + steal


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1])


# --------------------------------------------------------------------------- the load process


def compare(targets: Mapping[str, Target], connections: int, repeats: int, seconds: float) -> Drive:
    """Drive `targets` side by side from a spawned process (its CPU is apart from the servers')."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(drive, dict(targets), connections, repeats, seconds).result()


def drive(targets: dict[str, Target], connections: int, repeats: int, seconds: float) -> Drive:
    """Warm each target up, calibrate it to about `seconds` a run, then `repeats` interleaved repetitions."""
    cpu_started = time.process_time()
    gc.freeze()  # `bench.timed` collects before every slice: without the imports' objects that takes µs, not 30 ms
    with Load(targets, connections) as load:
        batches = {name: load.batch(name) for name in targets}
        for batch in batches.values():  # a cold first batch (the gateway builds its adapter, fetches a
            batch(WARM_UP * connections)  # token) would make calibration think the target slow
        counts = {name: calibrate(batch, seconds) for name, batch in batches.items()}
        repetitions: dict[str, list[Repetition]] = {name: [] for name in targets}
        for _ in range(repeats):
            load.forget()
            rates = interleaved(batches, counts, repeats=1)
            for name in targets:
                repetitions[name].append(load.repetition(name, rates[name][0]))
        return Drive(repetitions, dict(load.requests), time.process_time() - cpu_started)


class Load:
    """`connections` threads, each with a keep-alive connection per target; latencies of right answers."""

    def __init__(self, targets: Mapping[str, Target], connections: int) -> None:
        self.targets, self.connections = targets, connections
        self.pool = ThreadPoolExecutor(connections)
        self.local = threading.local()
        self.requests: Counter[str] = Counter()
        self.latencies: dict[str, list[float]] = {name: [] for name in targets}
        self.failed: Counter[str] = Counter()

    def batch(self, name: str) -> Batch:
        def run_n(n: int) -> None:
            tickets = iter(range(n))  # shared: each connection takes the next request until none are left
            for took, failed in self.pool.map(lambda _: self._ask_while(name, tickets), range(self.connections)):
                self.latencies[name] += took
                self.failed[name] += failed
            self.requests[name] += n

        return run_n

    def forget(self) -> None:
        """Start a repetition: latencies and failures of the previous one (or of calibration) are dropped."""
        for latencies in self.latencies.values():
            latencies.clear()
        self.failed.clear()

    def repetition(self, name: str, rate: float) -> Repetition:
        latencies, failed = self.latencies[name], self.failed[name]
        ok = len(latencies)
        if not ok:
            raise RuntimeError(f"{name}: every request of a repetition failed ({failed})")
        return Repetition(rate * ok / (ok + failed), percentile(latencies, 50), percentile(latencies, 99), ok, failed)

    def _ask_while(self, name: str, tickets: Iterator[int]) -> tuple[list[float], int]:
        connection = self._connection(name)
        took: list[float] = []
        failed = 0
        for _ in tickets:
            ms = ask(connection, self.targets[name])
            if ms is None:
                failed += 1
            else:
                took.append(ms)
        return took, failed

    def _connection(self, name: str) -> http.client.HTTPConnection:
        held: dict[str, http.client.HTTPConnection] = self.local.__dict__.setdefault("connections", {})
        if name not in held:
            address = urlsplit(self.targets[name].url)
            held[name] = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
        return held[name]

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *_: object) -> None:
        self.pool.shutdown()


def ask(connection: http.client.HTTPConnection, target: Target) -> float | None:
    """One request: its milliseconds when the answer is right, None when it failed (the connection is
    closed then; http.client opens a new one for the next request, as it does after an HTTP/1.0 answer)."""
    began = time.perf_counter()
    try:
        connection.request(target.method, target.path, target.body, dict(target.headers))
        answer = connection.getresponse()
        body = answer.read()
    except (OSError, http.client.HTTPException):
        connection.close()
        return None
    took = (time.perf_counter() - began) * 1000
    return took if answer.status == 200 and target.expect in body else None


# --------------------------------------------------------------------------- what is measured


@contextmanager
def _gateways_and_targets(work: Path, sector_url: str, workers: bool
                          ) -> Iterator[tuple[dict[str, Callable[[], list[int]]], dict[str, Target]]]:
    """`yiwang serve` with the bundle (rate limit raised) and a hall key, and with `workers` also `yiwang serve
    --workers 2` on the same database; each gateway's processes (for the CPU meter) and the targets."""
    env = {**os.environ, **SECRETS, "YIWANG_VAR_DIR": str(work / "var"),
           "YIWANG_SECTOR_ENDPOINTS": f"{SECTOR}={sector_url}"}
    env.pop("YIWANG_DATABASE_URL", None)
    env.pop("YIWANG_AMQP_URL", None)
    env.pop("YIWANG_API_WORKERS", None)  # `gateway` is the default: one process
    with ThreadPoolExecutor(1) as aside:  # each `yiwang` command takes seconds: the key is issued meanwhile
        issued = aside.submit(issue_key, env)
        register_and_activate(env, _raised_rate_limit(BUNDLES / SECTOR, work / "bundle"))
        hall_key = issued.result()
    commands = {"gateway": ("serve",)}
    if workers:
        commands["gateway_2_workers"] = ("serve", "--workers", str(WORKERS))
    with Processes(work, env) as processes:
        direct = direct_target(sector_url)
        targets = {"direct": direct}
        for name, command in commands.items():  # one after the other: the first start makes the key files
            port = free_port()
            processes.start(name, *command, "--port", str(port))
            base = f"http://127.0.0.1:{port}"
            wait_until(partial(alive, base), 60, f"the API ({name}) to start (logs: {work})")
            targets[name] = Target(base, "POST", f"/v1/queries/{QUERY}",
                                   (("Authorization", f"Bearer {hall_key}"), ("Content-Type", "application/json")),
                                   json.dumps({"params": {"id_number": PERSON}}).encode(), direct.expect)
        yield {name: _process_tree(processes.started[name].pid) for name in commands}, targets


def _process_tree(pid: int) -> Callable[[], list[int]]:
    """A process and the processes it started (`--workers N`'s API processes), found again at each reading."""
    return lambda: [pid, *children(pid)]


def direct_target(sector_url: str) -> Target:
    """The sector's own balance call, with a token from its OAuth2 endpoint; a right answer holds the balance
    the simulator gives this person (read once here, so the gateway's answer is checked against it)."""
    token = httpx.post(f"{sector_url}/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(SECRETS["YIWANG_SECRET_GJJ_CLIENT_ID"], SECRETS["YIWANG_SECRET_GJJ_CLIENT_SECRET"])
                       ).json()["access_token"]
    path = f"/api/v2/accounts/{PERSON}/balance"
    headers = (("Authorization", f"Bearer {token}"),)
    balance = httpx.get(f"{sector_url}{path}", headers=dict(headers)).json()["data"]["balance"]
    return Target(sector_url, "GET", path, headers, None, f'"balance":"{balance}"'.encode())


def _via(direct: Target, proxy_url: str) -> Target:
    return replace(direct, url=proxy_url)


def _raised_rate_limit(bundle: Path, copy: Path) -> Path:
    shutil.copytree(bundle, copy)
    descriptor = copy / "bundle.yaml"
    text, found = re.subn(r"(?m)^rate_limit:.*$", RAISED_RATE_LIMIT, descriptor.read_text(encoding="utf-8"))
    if found != 1:
        raise RuntimeError(f"{bundle / 'bundle.yaml'} has no one-line rate_limit to raise")
    descriptor.write_text(text, encoding="utf-8")
    return copy


# --------------------------------------------------------------------------- nginx, the floor of one hop


NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream sector {{ server {upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sector;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextmanager
def _nginx(nginx: str, work: Path, sector_url: str) -> Iterator[str]:
    """nginx in the foreground with a configuration of its own under `work`; its URL; stopped at the end."""
    prefix = work / "nginx"
    prefix.mkdir()
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers otherwise drop to nobody, who can't write here
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, prefix=prefix, port=port, upstream=urlsplit(sector_url).netloc),
                    encoding="utf-8")
    log = open(prefix / "stderr.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: process.poll() is not None or _listening(port), 15, f"nginx (logs: {prefix})")
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(prefix / 'error.log').read_text(errors='replace')[-500:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _install_nginx(notes: list[str]) -> str | None:
    """nginx from the machine's packages (full runs, as root, where apt-get exists); None with a note if not."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        notes.append("nginx is not on PATH and cannot be installed here (no apt-get, or not root): no nginx_rps")
        return None

    def installed() -> bool:
        return any(_apt("install", package) for package in ("nginx-light", "nginx"))

    if installed() or (_apt("update") and installed()):  # a stale package list is refreshed once
        return shutil.which("nginx")
    notes.append("nginx is not on PATH and apt-get could not install nginx-light or nginx: no nginx_rps")
    return None


def _apt(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(["apt-get", "-qq", "-y", *args], env=env, capture_output=True, timeout=240)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


# --------------------------------------------------------------------------- profile


def _profile(api_pid: int, gateway: Target) -> dict[str, Any]:
    """py-spy (samples holding the GIL: the CPU a GIL-bound process spends) on the API while the gateway
    alone is under load; the folded stacks' file and where in the project's own code the time goes."""
    folder = PROFILES / "sync_query"
    with profiled({"api": api_pid}, folder) as files:
        compare({"gateway": gateway}, CONNECTIONS, 1, 2.5)
    if not files["api"].exists():
        return {"profile_note": "py-spy wrote nothing (is it installed in the virtualenv?)"}
    return {"profile": str(files["api"]), "profile_top": owned_shares(files["api"])}
