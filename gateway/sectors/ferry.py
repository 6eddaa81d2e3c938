"""The near side of the ferry: the gateway's station for each ferry channel, and the job that runs them.

A sector behind an isolation gateway has an active bundle of kind `ferry` (adapters/kinds/ferry). Its messages
leave through the adapter (`FerryAdapter`, on the station `station(bundle)` gives: the composition root hands
this method to `adapters.kinds.ferry.use_stations`); everything else happens here, in a scheduled job
(`run`, every `YIWANG_FERRY_INTERVAL_MS`, one process at a time), for each active ferry bundle:
- **the carried bundle goes first**: when the agent has not been sent the version the active ferry bundle
  carries, a `control` entry `{"control": "bundle", "sector", "version", "archive"}` (the carried folder, zipped
  as bundles are stored) is sent — once per version (its idempotency key `bundle:<sector>:<version>` on the
  channel's record); an operator may send it again (`send_carried_bundle`);
- **what came back is applied**: an `answer` is recorded on the message it answers (`Station.record_answer`) and
  the outbox message waiting for it is made due now (`CaseService.answer_arrived`), so the delivery loop takes
  it at once and the answer lands on the case as any adapter's would; a `decision` (the agent polled its sector)
  is recorded like a callback (`CaseService.record_callback`). A decision or answer that cannot be taken (it
  names no case, its facts are unreadable, its body is malformed) is logged and counted, and never stops the
  job: the rest of the batch goes on. A database error does stop it, before the batch is recorded as applied,
  so the next run applies it again (the idempotency keys and `record_callback` absorb a repeat);
- **no answer is left waiting**: answers recorded but not yet taken make their messages due again (an answer
  may arrive while its delivery is deciding to wait);
- **the link is kept**: receipts and gaps (in `Station.receive`), unreceipted batches written again
  (`resend_due`, two-way links), beacons (`beacon_due`, one-way links).

Stations are built on the gateway's database (the `ferry_*` tables, migration 0019), with our key and the agent's
certificate from the certificate store (read at each use: a rotation takes effect at once; during our own
rotation's overlap, batches the agent still wraps to our previous certificate open with its key), and the folders
`<YIWANG_FERRY_DIR>/<channel>/outgoing|incoming` (deployment settings, not bundle content).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, select

from adapters import (
    Batch,
    BatchRefused,
    Bundle,
    Entry,
    FerryKeys,
    FerryOptions,
    FerryTables,
    Limits,
    LinkFolder,
    Naming,
    Station,
    StationConfig,
    carried_bundle,
    keys_from_store,
)
from certstore import CredentialSource
from gateway.cases.service import CaseNotFound, CaseService
from gateway.domain.answers import AnswerMismatch
from gateway.domain.clock import Clock
from gateway.domain.results import ResultProblem
from gateway.sectors.bundle_records import pack_folder

log = structlog.get_logger("yiwang.ferry")
NEAR_SIDE = "gateway"  # the sender name on our batches
CONTROL = "control"  # the operation a control entry is recorded under
ANSWER, DECISION = "answer", "decision"
NUDGE_MARGIN = timedelta(minutes=1)  # beyond resend_after, for a delivery slow to store its wait


class NotAFerrySector(LookupError):
    """The sector's active bundle is not a ferry's (or it has none)."""


@dataclass
class Tally:
    """What the job has done since the process started (logged; the operators' metrics read stations)."""

    answers: int = 0
    decisions: int = 0
    refused: int = 0  # entries that could not be taken: named no case, unreadable facts, malformed
    bundles_sent: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # channel -> its last run's error


class ActiveBundles:
    """The active ferry bundles, by sector (`gateway.sectors.live_registry.LiveRegistry` gives them)."""

    def __init__(self, sectors: Callable[[], tuple[str, ...]], bundle_of: Callable[[str], Bundle]) -> None:
        self.sectors, self.bundle_of = sectors, bundle_of

    def ferries(self) -> list[Bundle]:
        found = []
        for sector in self.sectors():
            try:
                bundle = self.bundle_of(sector)
            except LookupError:  # retired between the two reads
                continue
            if isinstance(bundle.options, FerryOptions):
                found.append(bundle)
        return found


class NearSide:
    """The gateway's stations, one per ferry channel, and the job (`run`) that keeps them."""

    def __init__(self, engine: Engine, tables: FerryTables, certs: CredentialSource, service: CaseService,
                 active: ActiveBundles, folder: Path, clock: Clock) -> None:
        self.engine, self.tables, self.certs, self.service = engine, tables, certs, service
        self.active, self.folder, self.clock = active, folder, clock
        self.tally = Tally()
        self._stations: dict[str, tuple[tuple[Any, ...], Station]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ stations

    def station(self, bundle: Bundle) -> Station:
        """The station of a ferry bundle's channel: one per channel, built again when a version changes how the
        channel is kept (mode, cipher, naming, limits, periods, certificates named)."""
        options = _options(bundle)
        shape = _shape(options)
        with self._lock:
            known = self._stations.get(options.channel)
            if known is not None and known[0] == shape:
                return known[1]
            station = Station(self.engine, self.tables, self._config(options), self._keys(options), self.clock.now)
            self._stations[options.channel] = (shape, station)
            return station

    def _config(self, options: FerryOptions) -> StationConfig:
        naming = Naming(extension=options.extension, wrapper=options.wrapper)
        root = self.folder / options.channel
        return StationConfig(
            name=NEAR_SIDE, send_channel=options.send_channel, receive_channel=options.receive_channel,
            outgoing=LinkFolder(root / "outgoing", naming), incoming=LinkFolder(root / "incoming", naming),
            mode=options.mode, cipher=options.cipher,
            limits=Limits(batch_bytes=options.batch_bytes, message_bytes=options.message_bytes),
            resend_after=timedelta(milliseconds=options.resend_after_ms),
            beacon_every=timedelta(milliseconds=options.beacon_every_ms))

    def _keys(self, options: FerryOptions) -> Callable[[], FerryKeys]:
        def keys() -> FerryKeys:  # read at each use: the store caches, and a rotation is seen at once
            return keys_from_store(self.certs, options.sign, options.peer)

        return keys

    def channels(self) -> list[tuple[Bundle, Station]]:
        """Each active ferry bundle with its channel's station (what operators' status and resends act on)."""
        return [(bundle, self.station(bundle)) for bundle in self.active.ferries()]

    # ------------------------------------------------------------------ the job

    def run(self) -> int:
        """One pass over every active ferry bundle; returns how many entries and files it handled. A channel
        that fails (its folder unwritable, a certificate missing) is logged and the others go on."""
        done = 0
        for bundle, station in self.channels():
            channel = _options(bundle).channel
            try:
                done += self._keep(bundle, station)
            except (OSError, LookupError, ValueError, BatchRefused) as exc:
                self.tally.failures[channel] = f"{type(exc).__name__}: {exc}"
                log.error("ferry channel failed", sector=bundle.sector, channel=channel, error=str(exc))
            else:
                self.tally.failures.pop(channel, None)
        return done

    def _keep(self, bundle: Bundle, station: Station) -> int:
        done = self._send_carried(bundle, station, force=False)
        applied: list[Entry] = []
        station.receive(self._applier(bundle.sector, station, applied))
        self._nudge_answered(_options(bundle))
        return done + len(applied) + station.resend_due() + int(station.beacon_due())

    def _nudge_answered(self, options: FerryOptions) -> None:
        """Answers recorded but not yet taken make their messages due now, again: an answer that arrived while
        its delivery was deciding to wait (between its look at the station and its wait being stored) would
        otherwise wait a whole `resend_after`. Only answers younger than that are looked at."""
        m = self.tables.messages
        since = self.clock.now() - timedelta(milliseconds=options.resend_after_ms) - NUDGE_MARGIN
        with self.engine.connect() as conn:
            keys = conn.execute(select(m.c.key).where(
                m.c.channel == options.send_channel, m.c.direction == "sent", m.c.state == "answered",
                m.c.consumed_at.is_(None), m.c.answered_at >= since, m.c.key.is_not(None))).scalars().all()
        for key in keys:
            self.service.answer_arrived(key)

    def _applier(self, sector: str, station: Station, applied: list[Entry]) -> Callable[[Batch, Entry], None]:
        def apply(batch: Batch, entry: Entry) -> None:
            applied.append(entry)
            try:
                if entry.type == ANSWER:
                    self._answer(station, entry)
                elif entry.type == DECISION:
                    self._decision(sector, entry)
                else:  # the far side sends answers and decisions only
                    raise ValueError(f"a {entry.type} entry on the way back")
            except (AnswerMismatch, ResultProblem, CaseNotFound, ValueError, KeyError, TypeError) as exc:
                self.tally.refused += 1
                log.warning("ferry entry not taken", sector=sector, channel=batch.channel, seq=batch.seq,
                            entry=entry.id, type=entry.type, reason=f"{type(exc).__name__}: {exc}")

        return apply

    def _answer(self, station: Station, entry: Entry) -> None:
        body = _json(entry.body)
        station.record_answer(entry)
        made = self.service.answer_arrived(str(body["key"]))
        self.tally.answers += 1
        log.info("ferry answer arrived", message=body.get("message"), outcome=body.get("outcome"), due_now=made)

    def _decision(self, sector: str, entry: Entry) -> None:
        changed = self.service.record_callback(sector, _json(entry.body))
        self.tally.decisions += 1
        log.info("ferry decision recorded", sector=sector, entry=entry.id, changed=changed)

    # ------------------------------------------------------------------ the carried bundle

    def send_carried_bundle(self, sector: str) -> int:
        """An operator's resend of the bundle the sector's active ferry bundle carries (the agent lost it, or its
        state was reset); returns the batch's sequence number. `NotAFerrySector` if it has no active ferry."""
        bundle = next((b for b in self.active.ferries() if b.sector == sector), None)
        if bundle is None:
            raise NotAFerrySector(f"部门 {sector} 没有启用的摆渡适配包")
        return self._send_carried(bundle, self.station(bundle), force=True)

    def _send_carried(self, bundle: Bundle, station: Station, *, force: bool) -> int:
        carried = carried_bundle(bundle)
        assert carried is not None  # a ferry bundle always carries one
        key = f"bundle:{carried.sector}:{carried.version}"
        if not force and station.message_state(key, CONTROL) is not None:
            return 0
        body = {"control": "bundle", "sector": carried.sector, "version": carried.version,
                "archive": base64.b64encode(pack_folder(carried.root)).decode("ascii")}
        entry = Entry(id=uuid.uuid4().hex, type=CONTROL, key=key, body=json.dumps(body).encode("utf-8"))
        seq = station.send([entry], operation_of={entry.id: CONTROL})
        self.tally.bundles_sent += 1
        log.info("carried bundle sent across the ferry", sector=carried.sector, version=carried.version, seq=seq,
                 forced=force)
        return 1


def _options(bundle: Bundle) -> FerryOptions:
    if not isinstance(bundle.options, FerryOptions):
        raise NotAFerrySector(f"{bundle.sector} {bundle.version} is not a ferry bundle ({bundle.kind})")
    return bundle.options


def _shape(options: FerryOptions) -> tuple[Any, ...]:
    """What a station is built from: a version that changes none of it keeps the channel's station."""
    return (options.mode, options.cipher, options.extension, options.wrapper, options.batch_bytes,
            options.message_bytes, options.resend_after_ms, options.beacon_every_ms, options.sign, options.peer)


def _json(body: bytes) -> Mapping[str, Any]:
    value = json.loads(body.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("the entry's body is not a JSON object")
    return value


