"""The whole ferry for a test: a gateway, the link process, the far-side agent, the sector behind it.

Contract. `FerryDeployment(workdir, db_url, simulator)` sets up, as an operator would by hand once:
  - the near side: a real gateway built from settings on the test's database (`build_gateway`), its API's
    lifespan running the delivery loop and scheduled jobs (the near-side ferry job among them) on threads of this
    process — or, `near_in_worker`, in a `yiwang worker` process — with millisecond intervals; the shipped
    civil-affairs ferry example (carrying the sector's SOAP bundle) registered and activated; the gateway's ferry
    key pair and the agent's certificate in its certificate store;
  - the far side: `yiwang ferry init --config agent.yaml` (empty state, its own key pair, its certificate printed),
    the near side's certificate imported into the agent's store (`yiwang certs import --agent`), then
    `yiwang ferry serve --config agent.yaml` as a process of its own, which gets its bundle over the link;
  - the link process between the gateway's folders and the agent's (lanes "down" and "up").
`submit(n)` submits n applications through the gateway's HTTP API (a hall key); `ledger()` runs the ferry's
ledger check over the gateway's database, the agent's SQLite, the simulator and the link's log; `gaps`,
`quarantined` and `resend` are the operators' `yiwang ferry` commands on either side. `start_agent(**env)` and
`start_worker(**env)` (re)start the agent or the gateway's worker, a crash point set or not (crash tests);
everything started is stopped on exit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select
from typer.testing import CliRunner

from adapters import ferry_tables
from adapters.registry import default_bundles_dir
from adapters.simulators.base import SimulatorBase
from gateway.bootstrap.app import Gateway, build_gateway, create_app, personal_data
from gateway.bootstrap.cli import app
from gateway.config import Settings
from gateway.domain.roles import Role
from gateway.persistence.personal_data import PersonalData
from gateway.sectors.bundle_records import pack_folder
from tests.support.ferry_ledger import FerryLedgerReport, GapWatch, Side, agent_side, ferry_ledger, gateway_side
from tests.support.ferry_link import FerryLink
from tests.support.gateways import SECTOR_SECRETS
from tests.support.pki import sm2_credential

YIWANG = str(Path(sys.executable).with_name("yiwang"))
SECTOR = "civil_affairs"
NEAR_CERT = "yiwang-ferry"
AGENT_CERT = f"{SECTOR}-ferry"
EXAMPLE = default_bundles_dir() / "upgrades" / "civil_affairs_ferry"
ALLOWANCE: dict[str, Any] = {  # 困难残疾人两项补贴: the 民政局 decides (civil affairs, behind the ferry)
    "matter_code": "11150203MB0C0004054000113003000", "channel": "online_pc",
    "applicant": {"name": "王建国", "id_number": "150203198503120039", "phone": "13847100001"},
    "materials": [{"name": "居民身份证"}, {"name": "残疾人证"}],
    "form": {"disability_certificate_no": "15020319921105442643", "disability_grade": 2, "subsidies": ["护理补贴"]},
}


def ferry_bundle(folder: Path, *, mode: str = "two_way", resend_after_ms: int = 800, beacon_every_ms: int = 200,
                 answer_within_ms: int = 60_000, poll_ms: int = 100) -> Path:
    """The shipped example (civil affairs behind an isolation gateway) with a test deployment's periods."""
    shutil.copytree(EXAMPLE, folder)
    descriptor = folder / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    for key, value in (("mode", mode), ("resend_after_ms", resend_after_ms), ("beacon_every_ms", beacon_every_ms),
                       ("answer_within_ms", answer_within_ms)):
        text = re.sub(rf"(?m)^  {key}: \S+", f"  {key}: {value}", text, count=1)
    text = re.sub(r'(?m)^version: "(.*)"', f'version: "\\1-{uuid.uuid4().hex[:6]}"', text, count=1)
    descriptor.write_text(text, encoding="utf-8")
    carried = folder / "sector" / "bundle.yaml"
    text = carried.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^  interval_ms: \d+", f"  interval_ms: {poll_ms}", text, count=1)
    text = re.sub(r"(?m)^retry: .*$", "retry: {attempts: 2, initial_ms: 10, max_ms: 50}", text, count=1)
    carried.write_text(text, encoding="utf-8")
    return folder


class FerryDeployment:
    def __init__(self, workdir: Path, db_url: str, simulator: SimulatorBase, *, mode: str = "two_way",
                 interval_ms: int = 20, resend_after_ms: int = 800, near_in_worker: bool = False,
                 worker_env: dict[str, str] | None = None, **settings: Any) -> None:
        """`near_in_worker`: the gateway's delivery and near-side job run in a `yiwang worker` process of their
        own (`start_worker`: killable; `worker_env` for its first start), the API in this one; else both here."""
        self.worker_env = worker_env or {}
        self.resend_after_ms = resend_after_ms
        self.near_in_worker = near_in_worker
        self.workers: list[subprocess.Popen[bytes]] = []
        self.workdir = workdir
        self.db_url = db_url
        self.simulator = simulator
        self.mode = mode
        self.interval_ms = interval_ms
        self.ferry_dir = workdir / "ferry"
        self.agent_dir = workdir / "agent"
        self.agent_config = self.agent_dir / "agent.yaml"
        self.settings = Settings(var_dir=workdir / "var", database_url=db_url, poll_interval_ms=50,
                                 retry_attempts=2, retry_initial_ms=1, retry_max_ms=5, lease_ms=3000,
                                 registry_refresh_ms=0, dispatch_idle_ms=10, ferry_dir=self.ferry_dir,
                                 ferry_interval_ms=interval_ms, dispatch_in_process=not near_in_worker, **settings)
        self.gateway: Gateway | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_runs = 0
        self.link = FerryLink(workdir / "link", {
            "down": (self.ferry_dir / SECTOR / "outgoing", self.agent_dir / "incoming"),
            "up": (self.agent_dir / "outgoing", self.ferry_dir / SECTOR / "incoming")}, interval_ms=5)
        self.accepted: dict[str, str] = {}  # Idempotency-Key -> case number
        self._hall: dict[str, str] = {}
        self.hall: TestClient | None = None
        self.sides: list[Side] = []
        self.watch: GapWatch | None = None

    # ----- lifecycle

    def __enter__(self) -> Self:
        with ExitStack() as undo:  # a start that fails half-way stops what it started
            undo.callback(self.stop)
            self.start()
            undo.pop_all()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Self:
        self.init_agent()
        self.gateway = self.build_near()
        self.link.start()
        self.sides = [gateway_side(self, SECTOR, self.ferry_dir / SECTOR / "incoming" / "quarantine"),
                      agent_side(self.agent_dir / "state.db", SECTOR, self.agent_dir / "incoming" / "quarantine")]
        self.watch = GapWatch(self.sides).start()
        self.start_agent()
        # The API as `yiwang serve` runs it: its lifespan starts the delivery loop and the scheduled jobs.
        self.hall = TestClient(create_app(self.gateway), headers=self._hall)
        self.hall.__enter__()
        if self.near_in_worker:
            self.start_worker(**self.worker_env)
        return self

    def stop(self) -> None:
        if self.hall is not None:
            self.hall.__exit__(None, None, None)  # the delivery loop and jobs stop with the API
            self.hall = None
        self.stop_agent()
        for worker in self.workers:
            _terminate(worker)
        self.link.stop()
        if self.watch is not None:
            self.watch.stop()
        for side in self.sides:
            side.engine.dispose()
        if self.gateway is not None:
            self.gateway.close()
            self.gateway = None

    def build_near(self) -> Gateway:
        gateway = build_gateway(self.settings)
        near_cert, near_key = sm2_credential("yiwang gateway ferry")
        (self.workdir / "near.pem").write_bytes(near_cert)
        gateway.certs.import_pem(NEAR_CERT, near_cert, near_key, actor="ferry-test")
        gateway.certs.import_pem(AGENT_CERT, (self.agent_dir / "agent.pem").read_bytes(), actor="ferry-test")
        self._import_near_into_agent()
        folder = ferry_bundle(self.workdir / "bundle", mode=self.mode, resend_after_ms=self.resend_after_ms)
        version = gateway.bundles.register(pack_folder(folder), "ferry-test").version
        gateway.bundles.activate(SECTOR, version, "ferry-test", force=True)
        _, key = gateway.keys.issue("ferry hall", [Role.HALL_CLIENT])
        self._hall = {"Authorization": f"Bearer {key}"}
        return gateway

    # ----- the agent

    def write_agent_config(self) -> None:
        self.agent_dir.mkdir(parents=True, exist_ok=True)
        for folder in ("incoming", "outgoing"):
            (self.agent_dir / folder).mkdir(parents=True, exist_ok=True)
        config = {"name": "mz-agent", "channel": SECTOR, "state": str(self.agent_dir / "state.db"),
                  "master_key_file": str(self.agent_dir / "master.key"), "incoming": str(self.agent_dir / "incoming"),
                  "outgoing": str(self.agent_dir / "outgoing"), "own_certificate": "mz-agent",
                  "near_certificate": NEAR_CERT, "mode": self.mode, "cipher": "sm4-gcm",
                  "naming": {"extension": ".txt", "wrapper": "text"}, "interval_ms": self.interval_ms,
                  "resend_after_ms": self.resend_after_ms, "beacon_every_ms": 200, "keep_keys_days": 30,
                  "endpoint": self.simulator.url, "poll_interval_ms": 100}
        self.agent_config.write_text(yaml.safe_dump(config), encoding="utf-8")

    def yiwang(self, *args: str, near: bool = False) -> str:
        """A one-shot `yiwang` command run in this process (as `yiwang ...` would): the agent's operator's, or
        with `near` the gateway's operator's (on the gateway's settings)."""
        env = {"YIWANG_DATABASE_URL": self.db_url, "YIWANG_VAR_DIR": str(self.settings.var_dir),
               "YIWANG_FERRY_DIR": str(self.ferry_dir)} if near else {}
        done = CliRunner().invoke(app, list(args), env=env)
        if done.exit_code != 0:
            raise AssertionError(f"yiwang {' '.join(args)} failed ({done.exit_code}): {done.output}")
        return done.output

    def init_agent(self) -> None:
        """`yiwang ferry init`: empty state, its key pair; its certificate kept for the near side."""
        self.write_agent_config()
        self.yiwang("ferry", "init", "--config", str(self.agent_config), "--out", str(self.agent_dir / "agent.pem"))

    def _import_near_into_agent(self) -> None:
        self.yiwang("certs", "import", NEAR_CERT, "--cert", str(self.workdir / "near.pem"), "--agent",
                    str(self.agent_config))

    def agent_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YIWANG_")}
        return {**env, **SECTOR_SECRETS, "PYTHONUNBUFFERED": "1", **extra}

    def start_agent(self, **env: str) -> subprocess.Popen[bytes]:
        self.agent_runs += 1
        log = self.agent_dir / f"agent-{self.agent_runs}.log"
        with open(log, "wb") as out:
            self.agent = subprocess.Popen([YIWANG, "ferry", "serve", "--config", str(self.agent_config)],
                                          env=self.agent_env(**env), stdout=out, stderr=subprocess.STDOUT)
        return self.agent

    def wait_agent_ready(self, timeout_s: float = 20) -> None:
        """Until the agent applied the first batch the near side sent it (its bundle): it is up and reading."""
        tables = ferry_tables(MetaData())
        received = tables.received

        def applied() -> bool:
            try:
                with self.sides[1].engine.connect() as conn:
                    return conn.execute(select(received.c.seq).where(received.c.channel == f"{SECTOR}.down",
                                                                     received.c.seq == 1)).first() is not None
            except Exception:  # noqa: BLE001 - its state file not made yet, or busy: look again
                return False

        deadline = time.monotonic() + timeout_s
        while not applied():
            assert self.agent is not None and self.agent.poll() is None, f"the agent ended\n{self.agent_logs()}"
            assert time.monotonic() < deadline, f"no bundle taken in {timeout_s} s\n{self.agent_logs()}"
            time.sleep(0.05)

    def gaps(self, *, near: bool) -> list[tuple[int, int]]:
        """The open gaps an operator reads (`yiwang ferry gaps --json`): the gateway's, or the agent's."""
        where = ["--channel", SECTOR] if near else ["--config", str(self.agent_config)]
        printed = self.yiwang("ferry", "gaps", *where, "--json", near=near)
        rows = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
        return [(int(row["seq_from"]), int(row["seq_to"])) for row in rows]

    def quarantined(self, *, near: bool) -> dict[str, str]:
        """What an operator reads in `yiwang ferry quarantine --json`: file -> code, the gateway's or the agent's."""
        where = ["--channel", SECTOR] if near else ["--config", str(self.agent_config)]
        printed = self.yiwang("ferry", "quarantine", *where, "--json", near=near)
        rows = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
        return {str(row["file"]): str(row["code"]) for row in rows}

    def resend(self, gap: tuple[int, int], *, near: bool) -> str:
        """An operator's `yiwang ferry resend` of a named range: on the gateway, or on the agent."""
        where = [] if near else ["--config", str(self.agent_config)]
        return self.yiwang("ferry", "resend", SECTOR, str(gap[0]), str(gap[1]), *where,
                           "--reason", "named missing by the other side", near=near)

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        """`yiwang worker` on the gateway's database and folders: its delivery loop and scheduled jobs, the near
        side's ferry job among them; short leases, so a restarted one takes over from a killed one at once."""
        settings = {"YIWANG_DATABASE_URL": self.db_url, "YIWANG_VAR_DIR": str(self.settings.var_dir),
                    "YIWANG_FERRY_DIR": str(self.ferry_dir), "YIWANG_FERRY_INTERVAL_MS": str(self.interval_ms),
                    "YIWANG_POLL_INTERVAL_MS": "50", "YIWANG_DISPATCH_IDLE_MS": "10", "YIWANG_LEASE_MS": "1000",
                    "YIWANG_JOB_LEASE_MS": "1000", "YIWANG_RETRY_ATTEMPTS": "2", "YIWANG_RETRY_INITIAL_MS": "1",
                    "YIWANG_RETRY_MAX_MS": "5", "YIWANG_REGISTRY_REFRESH_MS": "100"}
        log = self.workdir / f"worker-{len(self.workers) + 1}.log"
        with open(log, "wb") as out:
            worker = subprocess.Popen([YIWANG, "worker"], env=self.agent_env(**settings, **env), stdout=out,
                                      stderr=subprocess.STDOUT)
        self.workers.append(worker)
        return worker

    def worker_logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.workdir.glob("worker-*.log")))

    def stop_agent(self) -> None:
        if self.agent is not None:
            _terminate(self.agent)

    def agent_logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.agent_dir.glob("agent-*.log")))

    # ----- traffic and the account

    @property
    def personal_data(self) -> PersonalData:
        return personal_data(self.settings)

    def personal(self) -> PersonalData:  # the ledger's Deployment protocol
        return self.personal_data

    def submit(self, count: int, body: dict[str, Any] = ALLOWANCE) -> list[str]:
        assert self.hall is not None
        numbers = []
        for _ in range(count):
            key = f"ferry-{uuid.uuid4().hex[:10]}"
            answer = self.hall.post("/v1/cases", json=body, headers={"Idempotency-Key": key})
            assert answer.status_code == 201, answer.text
            self.accepted[key] = str(answer.json()["case_no"])
            numbers.append(self.accepted[key])
        return numbers

    def ledger(self, *, reapplied_ok: bool = False, settle_s: float = 20) -> FerryLedgerReport:
        return ferry_ledger(self, self.accepted, self.simulator, self.link, sides=self.sides, sector=SECTOR,
                            gaps=self.watch, reapplied_ok=reapplied_ok, settle_s=settle_s)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean stop), SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
