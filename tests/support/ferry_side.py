"""One side of a ferry link driven by a loop of its own, for the station-level fault and crash tests.

Contract. A `SideSpec` (JSON-able) names a station — its database URL, name, channels, folders, key files,
mode, intervals, whether it suppresses duplicates — and its role:
  - "far": each `message` entry is applied to the sector record (a JSONL file, appended and fsynced: the
    stand-in sector's own account, one line per arrival, read by the ledger), then answered with an `answer`
    entry (one batch per applying pass);
  - "near": each `answer` entry is recorded onto its message (`Station.record_answer`).
`SideLoop(spec).run(stop)` loops: receive, send what it owes, resend what is due (two-way), beacon (one-way),
every `interval_ms`. `python -m tests.support.ferry_side SPEC.json` runs it as a process until SIGTERM — and
honours `YIWANG_UNSAFE_FERRY_CRASH_AT` through the stations' own crash points (it adds none of its own).

It is not the agent (`ferry/`, `yiwang ferry serve`): no bundle, no sector protocol; it proves the stations and
the format under the link's faults with nothing else in the way.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from sqlalchemy import Engine, MetaData

from adapters.ferry_state import ferry_tables
from adapters.kinds.ferry.batch import Batch, Entry, FerryKeys
from adapters.kinds.ferry.folders import LinkFolder, Naming
from adapters.kinds.ferry.station import ReceiveReport, Station, StationConfig, crash_point
from certstore import Credential
from gateway.persistence.engine import make_engine

OPERATION = "submit_case"


@dataclass
class SideSpec:
    role: str  # "near" | "far"
    database_url: str
    name: str
    send_channel: str
    receive_channel: str
    outgoing: str
    incoming: str
    own_cert: str  # PEM files
    own_key: str
    peer_certs: list[str]
    mode: str = "two_way"
    interval_ms: int = 20
    resend_after_ms: int = 600
    beacon_every_ms: int = 200
    suppress_duplicates: bool = True
    sector_record: str = ""  # far: the sector's JSONL account
    naming: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> SideSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def keys_of(spec: SideSpec) -> FerryKeys:
    own = Credential(spec.name, Path(spec.own_cert).read_bytes(), Path(spec.own_key).read_bytes())
    peers = [Credential(f"peer-{i}", Path(p).read_bytes()) for i, p in enumerate(spec.peer_certs)]
    return FerryKeys(own=own, peer=peers)


def side_engine(url: str) -> Engine:
    """The project's engine: WAL and queued writers on SQLite (a side's loop, the test and a restarted process
    share the file), the session options on PostgreSQL."""
    return make_engine(url, pool_size=2, max_overflow=2)


def build_station(spec: SideSpec, engine: Engine, clock: Callable[[], datetime] | None = None) -> Station:
    metadata = MetaData()
    tables = ferry_tables(metadata)
    metadata.create_all(engine, checkfirst=True)
    naming = Naming(**spec.naming) if spec.naming else Naming()
    config = StationConfig(
        name=spec.name, send_channel=spec.send_channel, receive_channel=spec.receive_channel,
        outgoing=LinkFolder(Path(spec.outgoing), naming, crash_at=crash_point),
        incoming=LinkFolder(Path(spec.incoming), naming),
        mode=spec.mode, resend_after=timedelta(milliseconds=spec.resend_after_ms),
        beacon_every=timedelta(milliseconds=spec.beacon_every_ms), suppress_duplicates=spec.suppress_duplicates)
    keys = keys_of(spec)
    return Station(engine, tables, config, lambda: keys, clock or (lambda: datetime.now(UTC)))


def answer_entry(entry: Entry) -> Entry:
    body = {"message": entry.id, "key": entry.key, "operation": OPERATION, "outcome": "ok",
            "result": {"status": "accepted", "sector_ref": f"REF-{entry.key}"}, "error": None}
    return Entry(id=uuid.uuid4().hex, type="answer", body=json.dumps(body).encode(), key=entry.key)


def record_arrival(record: Path, entry: Entry) -> None:
    """The sector's own account: appended and fsynced before the station records the entry applied."""
    line = json.dumps({"key": entry.key, "id": entry.id}) + "\n"
    with open(record, "a", encoding="utf-8") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())


class SideLoop:
    def __init__(self, spec: SideSpec, clock: Callable[[], datetime] | None = None) -> None:
        self.spec = spec
        self.engine = side_engine(spec.database_url)
        self.station = build_station(spec, self.engine, clock)
        self.errors: list[str] = []
        self.verbose = False  # a process prints each pass that did something (its log tells the story)
        self.received = ReceiveReport()  # every pass's report, summed: what this side refused and suppressed

    def apply(self, batch: Batch, entry: Entry) -> None:
        """Far: to the sector, then the answer sent at once — before the station records the message applied,
        so a crash in between answers it again (the near side keeps the first answer), never not at all."""
        if self.spec.role == "far" and entry.type == "message":
            record_arrival(Path(self.spec.sector_record), entry)
            self.station.send([answer_entry(entry)])
        elif self.spec.role == "near" and entry.type == "answer":
            self.station.record_answer(entry)

    def pass_once(self) -> None:
        report = self.station.receive(self.apply)
        if self.verbose and any(vars(report).values()):
            print(f"{datetime.now(UTC).isoformat()} received {vars(report)}", flush=True)
        for name, value in vars(report).items():
            setattr(self.received, name, getattr(self.received, name) + value)
        if self.spec.mode == "two_way":
            self.station.resend_due()
        else:
            self.station.beacon_due()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.pass_once()
            except Exception as exc:  # noqa: BLE001 - kept for the test to show; the loop goes on as a service would
                self.errors.append(f"{type(exc).__name__}: {exc}")
            stop.wait(self.spec.interval_ms / 1000)

    def close(self) -> None:
        self.engine.dispose()


class SideThread:
    """A side's loop on a thread of the test process (fault tests: no crash needed, no start-up cost)."""

    def __init__(self, spec: SideSpec) -> None:
        self.loop = SideLoop(spec)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.loop.run, args=(self.stop_event,), daemon=True,
                                       name=f"ferry-{spec.role}")

    def start(self) -> SideThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.loop.close()


def message_entry(key: str) -> Entry:
    body = json.dumps({"operation": OPERATION, "message": {"idempotency_key": key}}).encode()
    return Entry(id=uuid.uuid4().hex, type="message", body=body, key=key)


def send_messages(station: Station, count: int, keys_file: Path | None = None) -> list[str]:
    """`count` messages, one batch each; each key noted in `keys_file` (if given) before its batch is sent."""
    keys = []
    for _ in range(count):
        key = f"case-{uuid.uuid4().hex[:8]}:T1:{OPERATION}"
        if keys_file is not None:
            with open(keys_file, "a", encoding="utf-8") as out:
                out.write(key + "\n")
        entry = message_entry(key)
        station.send([entry], operation_of={entry.id: OPERATION})
        keys.append(key)
    return keys


def main(argv: list[str]) -> int:
    """SPEC.json: run the side's loop until SIGTERM; SPEC.json send N KEYS: send N messages and exit."""
    spec = SideSpec.load(Path(argv[0]))
    loop = SideLoop(spec)
    if argv[1:2] == ["send"]:
        send_messages(loop.station, int(argv[2]), Path(argv[3]))
        loop.close()
        return 0
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    loop.verbose = True
    print(f"{datetime.now(UTC).isoformat()} ferry side {spec.role} running", flush=True)
    loop.run(stop)
    loop.close()
    for error in loop.errors:
        print(f"error: {error}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
