"""Start-up: how long one `yiwang serve` takes to be ready with 50 active bundles, and how much memory it holds.

The deployment: 50 sectors, each with an active bundle, on the embedded default (SQLite, in-process
dispatcher). They are the four shipped bundles (SOAP 1.1; SOAP 1.2 + WS-Security UsernameToken; REST +
OAuth2; REST + HMAC with callbacks), as they are, plus 46 copies taken from them in turn, each copied to a
folder of its own under a sector name and department credit codes of its own (activation refuses two
sectors taking one department), so the kinds are mixed. They are seeded once per section run, in this
process, through the gateway's own services (`build_gateway`: `BundleStore.register` validates each whole,
`activate`, then the live registry builds every adapter once, which also unpacks the bundle cache and makes
the var dir's keys): every measured start is thus a *restart* of a deployment that has run before.
The endpoints point at nothing: start-up builds adapters (WSDL parsed, mappings compiled, HTTP clients
made) but calls no sector.

Each run spawns `yiwang serve --port P` (bench.harness.Processes) and polls `GET /readyz` (every 50 ms,
bench.harness.wait_until, on one client made before the clock starts). `ready_s` is the time from the spawn
to the first 200 from /readyz that lists every sector's adapter with its circuit closed. /readyz checks the
database (and the broker, when one is configured) and reads every active adapter's health from the live
registry, whose first read builds every active bundle's adapter; the first request waits for that inside
the server, so its answer comes once all 50 adapters are built: the honest "ready to serve" point (a query
of the 50th sector would be answered then). `ready_cpu_s` is the CPU time (user + system, /proc/PID/stat)
the API process spent up to that point: less bent than `ready_s` by whatever else runs on the machine.
`rss_mb` is the API process's VmRSS (/proc/PID/status) after one preview request per sector
(`POST /v1/adapters/{sector}/preview` of its named query, with an operator key: each adapter's mapping and
kind render once); `rss_mb_at_ready` is the same reading at the ready point. The same is measured with the
4 shipped bundles only (`*_4_bundles`), in runs interleaved with the 50-bundle runs (the order flipped each
round), and `per_bundle_ms` / `per_bundle_cpu_ms` / `per_bundle_mb` is the difference per extra bundle.
5 runs each (3 with --quick). The project's modules are compiled to bytecode first (as an install leaves
them; this matters where PYTHONDONTWRITEBYTECODE is set). With --profile (or when a target is missed, full
runs only) one more 50-bundle start runs under py-spy from the interpreter's first instruction to ready,
and its top frames (inclusive shares of samples) are reported.
"""

from __future__ import annotations

import compileall
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from structlog.testing import capture_logs

from bench import Options, figure
from bench.harness import (BUNDLES, PROFILES, PY_SPY, YIWANG, Processes, children, free_port, top_functions,
                           wait_until)
from bench.harness import _cpu_seconds as cpu_seconds

if TYPE_CHECKING:
    from gateway.sectors.bundle_records import BundleStore

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "adapters", "mappings", "certstore", "ops", "ferry")  # pyproject.toml's packages
BUNDLE_COUNT = 50
TARGET_READY_S = 3.0
TARGET_RSS_MB = 200.0
# The four kinds, in the order the copies take them: SOAP 1.1, SOAP 1.2 + WS-Security, REST + OAuth2, REST + HMAC.
SHIPPED = ("social_security", "civil_affairs", "housing_fund", "public_security")
SECTOR_SECRETS = {"YIWANG_SECRET_GJJ_CLIENT_ID": "yiwang", "YIWANG_SECRET_GJJ_CLIENT_SECRET": "s3cret",
                  "YIWANG_SECRET_MZ_PASSWORD": "mz-secret", "YIWANG_SECRET_GA_HMAC": "ga-secret"}
PER_BUNDLE = {  # figure per extra bundle -> (50-bundle figure, 4-bundle figure, scale, digits)
    "per_bundle_ms": ("ready_s", "ready_s_4_bundles", 1000, 0),
    "per_bundle_cpu_ms": ("ready_cpu_s", "ready_cpu_s_4_bundles", 1000, 0),
    "per_bundle_mb": ("rss_mb", "rss_mb_4_bundles", 1, 2),
}
LIMITS = (
    "start-up is mostly fixed cost: the interpreter importing the gateway and its libraries (FastAPI, "
    "SQLAlchemy, zeep, cryptography, Alembic), the schema check, uvicorn: {floor:.2f} s of CPU with 4 bundles; "
    "each further bundle adds ~{per_ms} ms of CPU (descriptor and mappings read with libyaml, WSDL parsed by "
    "zeep, mappings compiled, HTTP client made) and ~{per_mb} MB. With 50 bundles the API spent {cpu:.2f} s "
    "of CPU and {wall:.2f} s of wall time: the rest is waiting for the 2 cores other processes share")
ID_NUMBER = "150203198503120039"  # every shipped named query takes `query.id_number`
READY_TIMEOUT_S = 120


@dataclass(frozen=True)
class Deployment:
    """A var dir seeded with active bundles, ready to be started by `yiwang serve`."""

    env: dict[str, str]
    folder: Path
    queries: dict[str, str]  # sector -> one of its named queries (what a preview renders)
    operator_key: str
    seed_s: float

    @property
    def sectors(self) -> tuple[str, ...]:
        return tuple(sorted(self.queries))


@dataclass(frozen=True)
class Start:
    """One measured start of `yiwang serve`."""

    ready_s: float
    cpu_s: float  # CPU seconds (user + system) the API process spent up to ready
    rss_at_ready_mb: float
    rss_mb: float  # after every adapter rendered a request once


def run(options: Options) -> dict[str, Any]:
    repeats = 3 if options.quick else 5
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-startup-") as tmp:
        many = seed(Path(tmp) / "many", BUNDLE_COUNT)
        few = seed(Path(tmp) / "few", len(SHIPPED))
        starts: dict[int, list[Start]] = {BUNDLE_COUNT: [], len(SHIPPED): []}
        for n in range(repeats):  # interleaved, the order flipped each round: noise lands on both alike
            for deployment in (many, few) if n % 2 == 0 else (few, many):
                starts[len(deployment.sectors)].append(start(deployment))
        entry = summary(starts[BUNDLE_COUNT], starts[len(SHIPPED)], many)
        if options.profile or (not entry["met"] and not options.quick):
            entry["profile"] = profile_start(many)
    return entry


def summary(many: list[Start], few: list[Start], deployment: Deployment) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "bundles": len(deployment.sectors),
        "kinds": {kind: sum(1 for s in deployment.sectors if s.startswith(kind)) for kind in SHIPPED},
        "ready_s": figure([s.ready_s for s in many], "s", 2),
        "ready_cpu_s": figure([s.cpu_s for s in many], "s", 2),
        "rss_mb": figure([s.rss_mb for s in many], "MB"),
        "rss_mb_at_ready": figure([s.rss_at_ready_mb for s in many], "MB"),
        "ready_s_4_bundles": figure([s.ready_s for s in few], "s", 2),
        "ready_cpu_s_4_bundles": figure([s.cpu_s for s in few], "s", 2),
        "rss_mb_4_bundles": figure([s.rss_mb for s in few], "MB"),
        "seed_s": round(deployment.seed_s, 1),
    }
    extra = len(deployment.sectors) - len(SHIPPED)
    for name, (figure_50, figure_4, scale, digits) in PER_BUNDLE.items():
        difference = entry[figure_50]["median"] - entry[figure_4]["median"]
        entry[name] = round(difference * scale / extra, digits) if digits else round(difference * scale / extra)
    entry["target"] = {"ready_s": TARGET_READY_S, "rss_mb": TARGET_RSS_MB}
    entry["met_ready_s"] = entry["ready_s"]["median"] <= TARGET_READY_S
    entry["met_rss_mb"] = entry["rss_mb"]["median"] <= TARGET_RSS_MB
    entry["met"] = entry["met_ready_s"] and entry["met_rss_mb"]
    entry["note" if entry["met"] else "limited_by"] = LIMITS.format(
        floor=entry["ready_cpu_s_4_bundles"]["median"], per_ms=entry["per_bundle_cpu_ms"],
        per_mb=entry["per_bundle_mb"], cpu=entry["ready_cpu_s"]["median"], wall=entry["ready_s"]["median"])
    return entry


# --------------------------------------------------------------------------- seeding


def compile_bytecode() -> None:
    """The project's modules compiled to bytecode (git-ignored `__pycache__`, as an install leaves them), so
    no start pays for compiling them, even where PYTHONDONTWRITEBYTECODE keeps imports from writing it."""
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=1)


def seed(folder: Path, count: int) -> Deployment:
    """A var dir with `count` bundles registered and active, run once in-process (keys made, bundle
    cache unpacked, every adapter built: a bundle that cannot be built fails the section here)."""
    from gateway.bootstrap.app import build_gateway  # the gateway's imports are the seeding's, not the section module's
    from gateway.domain.roles import Role
    from gateway.config import Settings

    started = time.perf_counter()
    env = deployment_env(folder / "var")
    # The registry logs a line per bundle: kept out of the report's console (a failure is raised below).
    with capture_logs(), secrets_set(), closing(build_gateway(Settings.from_env(env))) as gateway:
        queries = {}
        for bundle in bundle_folders(count, folder / "bundles"):
            sector, query = activate(gateway.bundles, bundle)
            queries[sector] = query
        gateway.registry.refresh()
        unbuilt = {sector: h["error"] for sector, h in gateway.registry.health().items() if "error" in h}
        if unbuilt or set(gateway.registry.sectors) != set(queries):
            raise RuntimeError(f"bundles not active and buildable: {unbuilt or sorted(queries)}")
        _, key = gateway.keys.issue("bench operator", [Role.OPERATOR])
    return Deployment(env, folder, queries, key, time.perf_counter() - started)


@contextmanager
def secrets_set() -> Iterator[None]:
    """The sector secrets in this process's environment while it builds adapters (bundles name them as
    `env:` references, read when an adapter is built), as they were afterwards."""
    before = {name: os.environ.get(name) for name in SECTOR_SECRETS}
    os.environ.update(SECTOR_SECRETS)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def deployment_env(var_dir: Path) -> dict[str, str]:
    env = {**os.environ, **SECTOR_SECRETS, "YIWANG_VAR_DIR": str(var_dir)}
    for name in ("YIWANG_DATABASE_URL", "YIWANG_AMQP_URL", "YIWANG_SECTOR_ENDPOINTS", "YIWANG_DISPATCH"):
        env.pop(name, None)  # the embedded default, each bundle's own (unreachable) test endpoint
    return env


def activate(store: BundleStore, folder: Path) -> tuple[str, str]:
    """Register and activate one bundle folder as `yiwang adapters register/activate` does; its sector and
    first named query."""
    from gateway.sectors.bundle_records import pack_folder

    version = store.register(pack_folder(folder), "bench")
    store.activate(version.sector, version.version, "bench", force=True)
    return version.sector, version.summary["queries"][0]


def bundle_folders(count: int, into: Path) -> list[Path]:
    """The shipped bundles, then copies of them in turn (kinds mixed) up to `count`."""
    folders = [BUNDLES / name for name in SHIPPED[:count]]
    for n in range(len(folders), count):
        source = BUNDLES / SHIPPED[n % len(SHIPPED)]
        folders.append(renamed_copy(source, into / f"{source.name}_{n:02d}", n))
    return folders


def renamed_copy(source: Path, target: Path, n: int) -> Path:
    """`source` copied to `target`, its sector named after the folder and each department credit code
    replaced by one of copy `n`'s own; everything else (mappings, WSDL, OpenAPI, comments) as shipped."""
    from mappings.positions import load_yaml  # libyaml where there is one: 46 descriptors read fast

    shutil.copytree(source, target)
    descriptor = target / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    fields, _ = load_yaml(text)
    codes = dict.fromkeys([fields["department"]["credit_code"], *fields["serves"]["departments"]])
    for i, code in enumerate(codes):
        text = text.replace(code, f"11{n:06d}MB{i:08d}")  # a well-formed unified social credit code
    text = re.sub(r"^sector: .*$", f"sector: {target.name}", text, count=1, flags=re.MULTILINE)
    descriptor.write_text(text, encoding="utf-8")
    return target


# --------------------------------------------------------------------------- measuring


def start(deployment: Deployment) -> Start:
    """One `yiwang serve` from spawn to ready, then every adapter touched once; stopped afterwards."""
    port = free_port()
    name = f"api-{port}"
    # One client for every poll, made before the clock starts (a client per poll loads the trust store).
    with Processes(deployment.folder, deployment.env) as processes, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=READY_TIMEOUT_S) as client:
        spawned = time.perf_counter()
        processes.start(name, "serve", "--port", str(port))
        wait_until(lambda: ready(client, deployment.sectors), READY_TIMEOUT_S,
                   f"the API to be ready (logs: {deployment.folder / name}.log)")
        ready_s = time.perf_counter() - spawned
        pid = processes.started[name].pid
        cpu_s, at_ready = cpu_seconds(pid), rss_mb(pid)
        touch_every_adapter(client, deployment)
        return Start(ready_s, cpu_s, at_ready, rss_mb(pid))


def ready(client: httpx.Client, sectors: tuple[str, ...]) -> bool:
    """/readyz answers 200 and lists every sector's adapter with its circuit closed. Its first answer comes
    once the live registry has built every adapter: the request waits for that inside the server."""
    try:
        answer = client.get("/readyz")
    except httpx.TransportError:  # not listening yet
        return False
    if answer.status_code != 200:
        return False
    adapters = answer.json()["checks"]["adapters"]
    unbuildable = sorted(sector for sector, adapter in adapters.items() if adapter.get("status") == "unbuildable")
    if unbuildable:  # would never become ready: say which, now
        raise RuntimeError(f"bundles the API cannot build: {unbuildable}")
    return all(adapters.get(sector, {}).get("circuit") == "closed" for sector in sectors)


def touch_every_adapter(client: httpx.Client, deployment: Deployment) -> None:
    """One preview per sector (its named query rendered by its adapter; no sector is called)."""
    headers = {"Authorization": f"Bearer {deployment.operator_key}"}
    for sector, query in deployment.queries.items():
        answer = client.post(f"/v1/adapters/{sector}/preview", headers=headers,
                             json={"operation": query, "params": {"id_number": ID_NUMBER}})
        answer.raise_for_status()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no VmRSS for process {pid}")


# --------------------------------------------------------------------------- profiling


def profile_start(deployment: Deployment) -> dict[str, Any]:
    """One more start, not counted, under py-spy from the interpreter's first instruction to ready: where
    start-up time goes (inclusive shares of samples), and the folded stacks' file."""
    (PROFILES / "startup").mkdir(parents=True, exist_ok=True)
    folded = PROFILES / "startup" / "serve.collapsed"
    port = free_port()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=READY_TIMEOUT_S) as client:
        spawned = time.perf_counter()
        with spied(folded, deployment.env, "serve", "--port", str(port)):
            wait_until(lambda: ready(client, deployment.sectors), READY_TIMEOUT_S, "the profiled API to be ready")
            ready_s = time.perf_counter() - spawned
    return {"ready_s_while_profiled": round(ready_s, 2), "folded_stacks": str(folded),
            "top": [f"{share:.0%} {frame}" for frame, share in top_functions(folded, 40)
                    if "<frozen importlib" not in frame][:25]}  # the import machinery's frames say nothing


@contextmanager
def spied(folded: Path, env: dict[str, str], *args: str) -> Iterator[None]:
    """`yiwang ARGS` started under `py-spy record` (200 Hz); on exit the command is stopped, and py-spy
    writes the folded stacks when it sees it end."""
    spy = subprocess.Popen([PY_SPY, "record", "--format", "raw", "--rate", "200", "--output", str(folded),
                            "--", YIWANG, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        for child in children(spy.pid):
            os.kill(child, signal.SIGTERM)
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
