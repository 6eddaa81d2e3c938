"""The ferry beside direct delivery: the same civil-affairs cases delivered to the same simulator, once across a
ferry link and once directly, in one run.

- `direct_msgs_per_s`: the civil-affairs adapter (its shipped bundle, SOAP 1.2 + WS-Security) calls
  `submit_case` on the simulator for each message, one after another, as a dispatcher delivers a message. The
  bundle's own rate limit (20/s) is lifted for both paths: otherwise both would measure it.
- `ferry_msgs_per_s`: the same number of messages cross a ferry link first: the near side's `Station` seals them
  into batches of `batch_size` entries (SM2-signed, SM4-GCM-encrypted, as the shipped ferry bundle says) into its
  outgoing folder; a mover thread (the isolation gateway's stand-in: it copies each done file into the far side's
  incoming folder, receipts back the other way) carries them over; the far side's `Station` opens each batch and
  applies every entry by the same adapter call. The clock runs from the first batch sealed to the last entry
  applied; `ratio` is ferry / direct.
- `link_msgs_per_s`: the link alone (the far side applies each entry by doing nothing): what sealing, moving,
  opening and recording cost per message, whatever the sector.
- `latency_p50_ms`, `latency_p95_ms`: from a message's batch being sealed to its entry applied on the far side,
  over the run (every batch is sent at once, so this includes the wait behind earlier batches);
  `latency_alone_ms`: the same for a batch of one message on an idle link (the link and the far side each look
  every `POLL_MS`; a real isolation gateway adds its own transfer time, often seconds).
- `batch_bytes`: a batch file's size as written (the `text` wrapper the shipped bundle uses).

Both sides keep their channel state in SQLite files of the run's own (as the agent does); the simulator runs in a
process of its own (bench.harness.sector_process) and decides ten minutes later, so only delivery is measured.
Every figure is the median of 5 runs (3 with --quick; 1,000 messages a run, 200 with --quick), direct and ferry
taking turns.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine

from adapters import (
    Batch,
    Entry,
    FerryKeys,
    LinkFolder,
    Naming,
    Operation,
    Station,
    StationConfig,
    build_adapter,
    default_bundles_dir,
    ferry_tables,
    load_bundle,
)
from bench import Options, figure
from bench.harness import percentile, sector_process
from certstore import Credential, sm2_self_signed
from gateway.bootstrap.demo_link import FolderLink

BATCH_SIZE = 50
POLL_MS = 5  # how often the link and the far station look at their folders
NAMING = Naming(extension=".txt", wrapper="text")  # the shipped ferry bundle's (civil_affairs_ferry)
CHANNEL = "civil_affairs"
SUBSISTENCE = "11150204MB0C00050L4000113002000"  # 最低生活保障审批 (青山区民政局), as the demo's scene 5
SECRETS = {"YIWANG_SECRET_MZ_PASSWORD": "mz-secret"}


@dataclass
class FerryRun:
    """One run across the link: messages per second, and each message's send-to-applied time."""

    msgs_per_s: float
    latencies_ms: list[float] = field(default_factory=list)
    batch_bytes: list[int] = field(default_factory=list)


def run(options: Options) -> dict[str, Any]:
    count = 200 if options.quick else 1000
    repeats = 3 if options.quick else 5
    for name, value in SECRETS.items():
        os.environ.setdefault(name, value)
    with sector_process(CHANNEL) as sector:
        deliver = _deliverer(sector.url)
        deliver(_message(0))  # warm-up: zeep's client, the WSDL, the connection
        direct: list[float] = []
        ferried: list[FerryRun] = []
        linked: list[FerryRun] = []
        for repeat in range(repeats):
            direct.append(_direct(deliver, count, repeat))
            ferried.append(_across(deliver, count, repeat))
            linked.append(_across(lambda message: None, count, repeat))
        alone = _one_at_a_time(deliver, repeats * 4)
    ferry = [r.msgs_per_s for r in ferried]
    return {
        "messages": count, "batch_size": BATCH_SIZE, "poll_ms": POLL_MS,
        "note": "the same simulator both ways, the bundle's 20/s rate limit lifted for both; latency p50/p95 with "
                "every batch sent at once (queued behind earlier ones), latency_alone a batch of one on an idle link",
        "direct_msgs_per_s": figure(direct, "msgs/s"),
        "ferry_msgs_per_s": figure(ferry, "msgs/s"),
        "link_msgs_per_s": figure([r.msgs_per_s for r in linked], "msgs/s"),
        "ratio": figure([f / d for f, d in zip(ferry, direct, strict=True)], "ferry/direct", 2),
        "latency_p50_ms": figure([percentile(r.latencies_ms, 50) for r in ferried], "ms"),
        "latency_p95_ms": figure([percentile(r.latencies_ms, 95) for r in ferried], "ms"),
        "latency_alone_ms": figure(alone, "ms"),
        "batch_bytes": figure([float(b) for r in ferried for b in r.batch_bytes], "bytes", 0),
    }


def _deliverer(url: str) -> Callable[[dict[str, Any]], Any]:
    """The shipped civil-affairs adapter against `url`, its rate limit (20/s) lifted: both paths would otherwise
    measure the bundle's limit, not what they cost."""
    bundle = replace(load_bundle(default_bundles_dir() / CHANNEL), rate_limit=None)
    adapter = build_adapter(bundle, endpoint=url).adapter
    return lambda message: adapter.call(Operation.SUBMIT_CASE, message)


def _direct(deliver: Callable[[dict[str, Any]], Any], count: int, repeat: int) -> float:
    messages = [_message(i, repeat, "direct") for i in range(count)]
    started = time.perf_counter()
    for message in messages:
        deliver(message)
    return count / (time.perf_counter() - started)


def _across(deliver: Callable[[dict[str, Any]], Any], count: int, repeat: int) -> FerryRun:
    """`count` messages sent in batches of `BATCH_SIZE` from the near station, carried, applied by the far one."""
    messages = [_message(i, repeat, "ferry") for i in range(count)]
    sealed_at: dict[str, float] = {}
    applied_at: dict[str, float] = {}

    def apply(batch: Batch, entry: Entry) -> None:
        deliver(json.loads(entry.body)["message"])
        applied_at[entry.id] = time.perf_counter()

    with _link() as (near, far, link):
        receiving = _polling(lambda: far.receive(apply), until=lambda: len(applied_at) >= count)
        started = time.perf_counter()
        for first in range(0, count, BATCH_SIZE):
            entries = [_entry(m) for m in messages[first:first + BATCH_SIZE]]
            sent_at = time.perf_counter()
            near.send(entries, operation_of={e.id: Operation.SUBMIT_CASE for e in entries})
            sealed_at.update((e.id, sent_at) for e in entries)
        receiving.join(timeout=600)
        sizes = list(link.carried["down"])
    if len(applied_at) < count:
        raise RuntimeError(f"only {len(applied_at)} of {count} messages were applied across the link")
    elapsed = max(applied_at.values()) - started
    return FerryRun(count / elapsed, [(applied_at[i] - sealed_at[i]) * 1000 for i in sealed_at], sizes)


def _one_at_a_time(deliver: Callable[[dict[str, Any]], Any], samples: int) -> list[float]:
    """Send-to-applied milliseconds of a batch of one message on an idle link, `samples` times."""
    latencies: list[float] = []
    applied = threading.Event()

    def apply(batch: Batch, entry: Entry) -> None:
        deliver(json.loads(entry.body)["message"])
        applied.set()

    with _link() as (near, far, _):
        receiving = _polling(lambda: far.receive(apply), until=lambda: len(latencies) >= samples)
        for number in range(samples):
            applied.clear()
            started = time.perf_counter()
            near.send([_entry(_message(number, 9, "alone"))])
            if not applied.wait(timeout=60):
                raise RuntimeError("a message sent alone was not applied across the link within 60 s")
            latencies.append((time.perf_counter() - started) * 1000)
        receiving.join(timeout=60)
    return latencies


@contextmanager
def _link() -> Iterator[tuple[Station, Station, FolderLink]]:
    """A near and a far station, each with its SQLite file and SM2 pair, and the link carrying between them."""
    with tempfile.TemporaryDirectory(prefix="yiwang-bench-ferry-") as scratch:
        root = Path(scratch)
        near_pair, far_pair = (_pair(side) for side in ("yiwang-ferry", "civil_affairs-ferry"))
        near = _station(root / "near", "gateway", f"{CHANNEL}.down", f"{CHANNEL}.up",
                        FerryKeys(own=near_pair, peer=[_trusted(far_pair)]))
        far = _station(root / "far", "civil_affairs-agent", f"{CHANNEL}.up", f"{CHANNEL}.down",
                       FerryKeys(own=far_pair, peer=[_trusted(near_pair)]))
        lanes = {"down": (root / "near" / "outgoing", root / "far" / "incoming"),
                 "up": (root / "far" / "outgoing", root / "near" / "incoming")}
        with FolderLink(lanes, interval_s=POLL_MS / 1000) as link:
            yield near, far, link


def _station(folder: Path, name: str, send: str, receive: str, keys: FerryKeys) -> Station:
    engine = create_engine(f"sqlite:///{folder / 'state.db'}")
    metadata = MetaData()
    tables = ferry_tables(metadata)
    folder.mkdir(parents=True, exist_ok=True)
    metadata.create_all(engine)
    config = StationConfig(name=name, send_channel=send, receive_channel=receive,
                           outgoing=LinkFolder(folder / "outgoing", NAMING),
                           incoming=LinkFolder(folder / "incoming", NAMING))
    return Station(engine, tables, config, keys=lambda: keys, clock=lambda: datetime.now(UTC))


def _pair(name: str) -> Credential:
    certificate, key = sm2_self_signed(name)
    return Credential(name, certificate, key)


def _trusted(credential: Credential) -> Credential:
    return Credential(credential.name, credential.certificate_pem)


def _polling(step: Callable[[], Any], until: Callable[[], bool]) -> threading.Thread:
    """A thread running `step` every `POLL_MS` until `until()` holds (as the agent's loop does)."""
    def loop() -> None:
        while not until():
            step()
            time.sleep(POLL_MS / 1000)

    thread = threading.Thread(target=loop, name="bench-ferry-far", daemon=True)
    thread.start()
    return thread


def _entry(message: dict[str, Any]) -> Entry:
    body = json.dumps({"operation": Operation.SUBMIT_CASE, "message": message}, ensure_ascii=False)
    return Entry(id=uuid.uuid4().hex, type="message", body=body.encode("utf-8"), key=message["idempotency_key"])


def _message(number: int, repeat: int = 0, path: str = "warm-up") -> dict[str, Any]:
    """A canonical 最低生活保障审批 for the civil-affairs system, one idempotency key and case number each."""
    case_no = f"11150204MB0C00050L40001130020002026120{repeat}{number:06d}"
    return {
        "idempotency_key": f"bench-{path}-{repeat}-{number}-{uuid.uuid4().hex[:8]}",
        "sector_ref": None,
        "task": {"id": f"{case_no}-T1", "department": "包头市青山区民政局", "credit_code": "11150204MB0C00050L",
                 "lead": True},
        "case": {"case_no": case_no, "matter_code": SUBSISTENCE, "accepted_at": "2026-12-07T02:00:00+00:00",
                 "green_channel": False, "channel": "window", "region_code": "150204",
                 "applicant": {"name": "刘志强", "id_type": "111", "id_number": "150204198809210041",
                               "phone": "13614720005", "address": "内蒙古自治区包头市青山区",
                               "legal_representative": None},
                 "materials": [{"name": name, "received": True, "file_ref": f"sha256:{i:064x}"}
                               for i, name in enumerate(("最低生活保障申请书", "居民身份证", "居民户口簿",
                                                         "家庭收入和财产状况声明", "家庭经济状况核对授权书"))],
                 "form": {}},
    }
