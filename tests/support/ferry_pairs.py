"""Two stations joined by the link process: the station-level ferry the fault, crash and key tests run.

Contract. `StationPair(workdir, near_db_url, ...)` makes both sides' key pairs (SM2, PEM files), the folders
(near/outgoing → link "down" → far/incoming; far/outgoing → link "up" → near/incoming), a `SideSpec` for each
(tests/support/ferry_side.py: the near side on the test's database, the far side on a SQLite file of its own),
and the link process. `start()` runs both sides on threads (`run_side_process` instead runs one as a process that
can be SIGKILLed); `send(n)` sends n messages, one batch each; `wait_answered()`; `ledger()` is the station-level
ledger check. Everything it starts it stops on exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy import MetaData, select

from adapters.ferry_state import ferry_tables
from adapters.kinds.ferry.station import Station
from tests.support.fault_harness import wait_until
from tests.support.ferry_ledger import (
    FerryLedgerReport,
    GapWatch,
    SectorCount,
    Side,
    agent_engine,
    in_flight,
    station_ledger,
)
from tests.support.ferry_link import FerryLink
from tests.support.ferry_side import OPERATION, SideSpec, SideThread, send_messages, side_engine
from tests.support.pki import sm2_credential

CHANNEL = "public_security"
ROOT = Path(__file__).resolve().parents[2]


def write_pair(folder: Path, name: str, days: float = 30) -> tuple[str, str]:
    """An SM2 certificate and key for `name`, as PEM files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = sm2_credential(name, days)
    (folder / f"{name}.pem").write_bytes(cert)
    (folder / f"{name}.key").write_bytes(key)
    return str(folder / f"{name}.pem"), str(folder / f"{name}.key")


class StationPair:
    def __init__(self, workdir: Path, near_db_url: str, *, mode: str = "two_way", far_suppresses: bool = True,
                 interval_ms: int = 20, resend_after_ms: int = 600, beacon_every_ms: int = 200) -> None:
        self.workdir = workdir
        keys = workdir / "keys"
        near_cert, near_key = write_pair(keys, "gateway")
        far_cert, far_key = write_pair(keys, "agent")
        self.far_state = workdir / "far" / "state.db"
        self.far_state.parent.mkdir(parents=True, exist_ok=True)
        self.sector_record = workdir / "far" / "sector.jsonl"
        folders = {side: {way: workdir / side / way for way in ("outgoing", "incoming")} for side in ("near", "far")}
        common: dict[str, Any] = {"mode": mode, "interval_ms": interval_ms, "resend_after_ms": resend_after_ms,
                                  "beacon_every_ms": beacon_every_ms}
        self.near_spec = SideSpec(
            role="near", database_url=near_db_url, name="gateway", send_channel=f"{CHANNEL}.down",
            receive_channel=f"{CHANNEL}.up", outgoing=str(folders["near"]["outgoing"]),
            incoming=str(folders["near"]["incoming"]), own_cert=near_cert, own_key=near_key, peer_certs=[far_cert],
            **common)
        self.far_spec = SideSpec(
            role="far", database_url=f"sqlite:///{self.far_state}", name="agent", send_channel=f"{CHANNEL}.up",
            receive_channel=f"{CHANNEL}.down", outgoing=str(folders["far"]["outgoing"]),
            incoming=str(folders["far"]["incoming"]), own_cert=far_cert, own_key=far_key, peer_certs=[near_cert],
            suppress_duplicates=far_suppresses, sector_record=str(self.sector_record),
            **common)
        self.folders = folders
        self.link = FerryLink(workdir / "link", {"down": (folders["near"]["outgoing"], folders["far"]["incoming"]),
                                                 "up": (folders["far"]["outgoing"], folders["near"]["incoming"])},
                              interval_ms=5)
        self.threads: list[SideThread] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.sent: list[str] = []  # idempotency keys sent, in order
        self._sender: SideThread | None = None
        self._sides: list[Side] = []
        self.watch: GapWatch | None = None

    # ----- lifecycle

    def __enter__(self) -> Self:
        self.link.start()
        self.watch = GapWatch(self.sides()).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, *, near: bool = True, far: bool = True) -> Self:
        """Both sides' loops on threads of this process (the test's own near station first: one makes the
        tables at a time)."""
        assert self.near is not None
        for wanted, spec in ((near, self.near_spec), (far, self.far_spec)):
            if wanted:
                self.threads.append(SideThread(spec).start())
        return self

    def stop(self) -> None:
        for thread in self.threads:
            thread.stop()
        self.threads.clear()
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        if self._sender is not None:
            self._sender.loop.close()
        self.link.stop()
        if self.watch is not None:
            self.watch.stop()
        for side in self._sides:
            side.engine.dispose()

    def run_side_process(self, role: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """One side as a process of its own (`python -m tests.support.ferry_side`), with extra environment."""
        spec = self.near_spec if role == "near" else self.far_spec
        path = spec.save(self.workdir / f"{role}-spec.json")
        with open(self.workdir / f"process-{len(self.processes)}.log", "wb") as log:  # the child keeps its own
            process = subprocess.Popen([sys.executable, "-m", "tests.support.ferry_side", str(path), *args], cwd=ROOT,
                                       env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env},
                                       stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def send_in_process(self, count: int, **env: str) -> None:
        """`count` messages sent by a near-side process of their own (which may be told to crash); returns when
        it ended. The keys it noted before each send count as sent (a batch recorded before its file is)."""
        keys = self.workdir / f"keys-{len(self.processes)}.txt"
        self.run_side_process("near", "send", str(count), str(keys), **env).wait(timeout=20)
        self.sent += keys.read_text(encoding="utf-8").split() if keys.exists() else []

    def process_log(self, index: int) -> str:
        return (self.workdir / f"process-{index}.log").read_text(errors="replace")[-3000:]

    def loop_of(self, role: str) -> SideThread:
        """The running loop of a side started on a thread (its station: an operator's resend, say)."""
        return next(t for t in self.threads if t.loop.spec.role == role)

    def gaps(self, role: str) -> list[tuple[int, int]]:
        """The gaps a side has named on the channel it receives on (filled or not)."""
        spec = self.near_spec if role == "near" else self.far_spec
        tables = ferry_tables(MetaData())
        engine = side_engine(spec.database_url)
        try:
            with engine.connect() as conn:
                return [(int(r.seq_from), int(r.seq_to)) for r in conn.execute(
                    select(tables.gaps.c.seq_from, tables.gaps.c.seq_to)
                    .where(tables.gaps.c.channel == spec.receive_channel))]
        finally:
            engine.dispose()

    def errors(self) -> list[str]:
        return [error for thread in self.threads for error in thread.loop.errors]

    # ----- traffic

    @property
    def near(self) -> SideThread:
        """A near-side station for the test's own sends and reads (not a loop: nothing runs on it)."""
        if self._sender is None:
            self._sender = SideThread(self.near_spec)
        return self._sender

    def send(self, count: int) -> list[str]:
        """`count` messages, one batch each; their idempotency keys."""
        keys = send_messages(self.sender(), count)
        self.sent += keys
        return keys

    def sender(self) -> Station:
        """The near side's running station when its loop runs here (one station, one lock for its writes),
        else one of the test's own (the loop runs in another process)."""
        running = [t for t in self.threads if t.loop.spec.role == "near"]
        return running[0].loop.station if running else self.near.loop.station

    def answered(self) -> bool:
        station = self.sender()
        return all((state := station.message_state(key, OPERATION)) is not None and state.state == "answered"
                   for key in self.sent)

    def wait_answered(self, timeout_s: float = 20) -> None:
        try:
            wait_until(self.answered, timeout_s, "every message sent answered across the link")
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n{self.ledger(settle_s=0)}\nloop errors: {self.errors()}") from None

    # ----- the account

    def sides(self) -> list[Side]:
        """Both stations as the ledger reads them (made once: the gap watch reads through them all along)."""
        if self._sides:
            return self._sides
        near_quarantine = self.folders["near"]["incoming"] / "quarantine"
        far_quarantine = self.folders["far"]["incoming"] / "quarantine"
        self._sides = [Side("gateway", side_engine(self.near_spec.database_url), f"{CHANNEL}.up", f"{CHANNEL}.down",
                            "up", near_quarantine, expects_answers=True),
                       Side("agent", agent_engine(self.far_state), f"{CHANNEL}.down", f"{CHANNEL}.up", "down",
                            far_quarantine)]
        return self._sides

    def ledger(self, *, reapplied_ok: bool = False, settle_s: float = 10) -> FerryLedgerReport:
        """The station-level ledger check, once what was sent has arrived (or `settle_s` passed: then the
        check names what did not)."""
        deadline = time.monotonic() + settle_s
        while in_flight(self.sides()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.watch is not None:
            self.watch.look()
        return station_ledger(self.sent, SectorCount.of_record(self.sector_record), self.link, sides=self.sides(),
                              gaps=self.watch, reapplied_ok=reapplied_ok)
