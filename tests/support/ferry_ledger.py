"""The ferry's ledger check: after a run across the link, account for everything from independent witnesses.

Contract. `ferry_ledger(...)` (the whole way) waits (bounded) until the gateway's accepted cases are decided;
`station_ledger(...)` (two stations, no gateway) takes what it is given. Both read sources that share no code
path with each other's bookkeeping:
  - the sector's own account: the simulator's counters (submissions received, repeats it recognised by their
    idempotency key), or the stand-in sector's record (tests/support/ferry_side.py: one line per arrival);
  - the gateway's cases and events (the fault tests' `ledger_check`: every case decided, each task delivered and
    concluded once, events that rebuild the state, nothing open in the outbox, no dead letter unless expected);
  - both stations' tables (the gateway's database and the agent's own SQLite): batches sent and received,
    messages answered, quarantine rows — and the gaps as a `GapWatch` saw them named through the run;
  - the link process's log of what it did to each file.
It reports problems, never raises: the negative controls assert the problems they expect.

Problems named:
  - an accepted case (a message sent) that never reached the sector, or reached it again (with `reapplied_ok` —
    a crash between applying and recording — a repeat is allowed: the sector's idempotency key absorbs it);
  - a message the near side sent and never saw answered;
  - a batch one side recorded as sent that the other never received, or received twice;
  - a batch the link dropped (or a refused direction lost) that the receiver never named as a gap — where it was
    a gap: never received, or received after a later one (a resend arriving before anything after it fills the
    place before there is a gap to name);
  - a batch the link truncated or corrupted that the receiver did not quarantine (row and file) — unless a
    resend replaced that copy before the receiver read it (the link's log says so);
  - everything `ledger_check` reports about the gateway's cases.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, select

from adapters.ferry_state import FerryTables, ferry_tables
from adapters.simulators.base import SimulatorBase
from tests.support.fault_harness import Deployment, LedgerReport, LoadResult, harness_engine, ledger_check
from tests.support.ferry_link import FerryLink, LinkAction

EXAMPLES = 5
MISTREATED = ("truncated", "corrupted")  # what the receiver must refuse and quarantine
LOST = ("dropped", "refused")  # what the receiver must name as a gap


@dataclass(frozen=True)
class Side:
    """One station as the ledger reads it: its database and the channel it receives on."""

    name: str  # "gateway" / "agent": for the report
    engine: Engine
    receives: str  # the channel it receives on, e.g. "public_security.up"
    sends: str
    lane_in: str  # the link lane that carries to it ("down" for the agent)
    quarantine_folder: Path | None = None
    expects_answers: bool = False  # the near side: every message it sent must be answered


@dataclass(frozen=True)
class SectorCount:
    """The sector's own account of what reached it: arrivals per idempotency key."""

    arrivals: Counter[str]

    @classmethod
    def of_record(cls, record: Path) -> SectorCount:
        """The stand-in sector's JSONL account (tests/support/ferry_side.py)."""
        lines = record.read_text(encoding="utf-8").splitlines() if record.exists() else []
        return cls(Counter(str(json.loads(line)["key"]) for line in lines if line.strip()))


@dataclass
class StationTally:
    side: str
    received: int
    sent: int
    gaps: list[tuple[int, int]]
    quarantined: list[tuple[str, str]]  # (file, code)

    def __str__(self) -> str:
        return (f"{self.side}: received {self.received} batches, sent {self.sent}; gaps named {self.gaps}; "
                f"quarantined {len(self.quarantined)} {sorted({code for _, code in self.quarantined})}")


@dataclass
class FerryLedgerReport:
    gateway: LedgerReport | None = None  # the gateway's cases (None: a station-level run, no gateway)
    stations: list[StationTally] = field(default_factory=list)
    link: Counter[str] = field(default_factory=Counter)  # what the link did, by action
    submits_received: int = 0
    duplicate_submits: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.all_problems

    @property
    def all_problems(self) -> list[str]:
        return [*(self.gateway.problems if self.gateway else []), *self.problems]

    def __str__(self) -> str:
        lines = [str(self.gateway or "ferry ledger (stations only)"), f"  link: {dict(sorted(self.link.items()))}",
                 f"  sector: {self.submits_received} submits received, {self.duplicate_submits} recognised repeats",
                 *(f"  {tally}" for tally in self.stations)]
        lines += [f"  FERRY PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)


class GapWatch:
    """Every gap either station names, as it names it: a station shrinks or splits a gap as its batches arrive
    (the table shows what is still missing), so the ledger watches the tables through the run (every 20 ms) and
    keeps each range as first seen. Start it before the traffic; `seen` per side name."""

    def __init__(self, sides: Iterable[Side], every_s: float = 0.02) -> None:
        self.sides = list(sides)
        self.every_s = every_s
        self.seen: dict[str, set[tuple[int, int]]] = {side.name: set() for side in self.sides}
        self._tables = ferry_tables(MetaData())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="gap-watch", daemon=True)

    def start(self) -> GapWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.look()  # what the last moments named

    def look(self) -> None:
        gaps = self._tables.gaps
        for side in self.sides:
            try:
                with side.engine.connect() as conn:
                    rows = conn.execute(select(gaps.c.seq_from, gaps.c.seq_to)
                                        .where(gaps.c.channel == side.receives)).all()
            except Exception:  # noqa: BLE001 - a table not made yet, a busy file: the next look sees it
                continue
            self.seen[side.name].update((int(low), int(high)) for low, high in rows)

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            self.look()


def agent_engine(state: Path) -> Engine:
    return create_engine(f"sqlite:///{state}")


def ferry_ledger(deployment: Deployment, accepted: Mapping[str, str], simulator: SimulatorBase, link: FerryLink,
                 *, sides: Iterable[Side], sector: str, gaps: GapWatch | None = None, expect_dead: bool = False,
                 reapplied_ok: bool = False, settle_s: float = 20) -> FerryLedgerReport:
    """The whole way: `accepted` maps each Idempotency-Key the hall used to the case number it was answered
    with; the gateway's cases are checked as the fault tests check them, then the sector and the stations."""
    load = LoadResult(sector, accepted=dict(accepted))
    report = FerryLedgerReport(ledger_check(deployment, [load], {sector: simulator}, expect_dead=expect_dead,
                                            settle_s=settle_s, quiet_s=0.3))
    counters = simulator.counters
    first = counters["submits_received"] - counters["duplicate_submits"]
    _check_sector(report, len(accepted), first, counters["duplicate_submits"], reapplied_ok)
    return _check_stations(report, sides, link, gaps)


def station_ledger(sent_keys: Iterable[str], sector: SectorCount, link: FerryLink, *, sides: Iterable[Side],
                   gaps: GapWatch | None = None, reapplied_ok: bool = False) -> FerryLedgerReport:
    """Stations only (no gateway): `sent_keys`, the idempotency keys the near side sent, each must have reached
    the stand-in sector exactly once (`reapplied_ok`: at least once, a repeat being a crash's re-application)."""
    report = FerryLedgerReport()
    keys = set(sent_keys)
    _problem(report, "messages that never reached the sector", keys - set(sector.arrivals))
    _problem(report, "arrivals at the sector of messages never sent", set(sector.arrivals) - keys)
    repeated = {key: n for key, n in sector.arrivals.items() if n > 1}
    _check_sector(report, len(keys), len(keys & set(sector.arrivals)), sum(repeated.values()) - len(repeated),
                  reapplied_ok)
    return _check_stations(report, sides, link, gaps)


def in_flight(sides: Iterable[Side]) -> int:
    """Batches one side recorded as sent that the other has not received yet (a resend, an answer on its way)."""
    tables = ferry_tables(MetaData())
    listed = list(sides)
    missing = 0
    for receiver in listed:
        for sender in listed:
            if sender.sends != receiver.receives:
                continue
            with sender.engine.connect() as conn:
                sent = set(conn.execute(select(tables.sent.c.seq).where(tables.sent.c.channel == sender.sends))
                           .scalars())
            with receiver.engine.connect() as conn:
                got = set(conn.execute(select(tables.received.c.seq)
                                       .where(tables.received.c.channel == receiver.receives)).scalars())
            missing += len(sent - got)
    return missing


def _check_stations(report: FerryLedgerReport, sides: Iterable[Side], link: FerryLink,
                    gaps: GapWatch | None) -> FerryLedgerReport:
    actions = link.actions()
    report.link = Counter(a.action for a in actions if a.lane != "-")
    tables = ferry_tables(MetaData())
    listed = list(sides)
    sent_by = {side.sends: side for side in listed}
    for side in listed:
        watched = gaps.seen.get(side.name, set()) if gaps is not None else set()
        _check_side(report, side, sent_by.get(side.receives), tables, actions, watched)
    return report


def _problem(report: FerryLedgerReport, what: str, items: Iterable[object]) -> None:
    listed = sorted(items, key=str)
    if listed:
        report.problems.append(f"{what}: {len(listed)} (e.g. {listed[:EXAMPLES]})")


def _check_sector(report: FerryLedgerReport, accepted: int, first: int, repeats: int, reapplied_ok: bool) -> None:
    """Reached the sector exactly once: the sector's own count of arrivals, not just of effects (its
    idempotency key would hide a message the ferry delivered twice). `first`: accepted messages that arrived
    at all; `repeats`: arrivals beyond the first of a key."""
    report.submits_received = first + repeats
    report.duplicate_submits = repeats
    if first < accepted:
        report.problems.append(f"{accepted - first} accepted messages never reached the sector")
    if repeats and not reapplied_ok:
        report.problems.append(f"duplicates: {repeats} messages reached the sector again "
                               f"({first + repeats} arrivals for {accepted} accepted)")


@dataclass(frozen=True)
class _SideState:
    """What one station's tables hold, read at once."""

    arrivals: list[tuple[int, datetime]]  # (seq, received_at) on the channel it receives on
    sent: list[int]
    gaps: list[tuple[int, int]]
    quarantined: list[tuple[str, str]]  # (file, code)
    unanswered: list[str]  # keys of messages it sent with no answer (the near side's only)


def _read_side(side: Side, tables: FerryTables) -> _SideState:
    r, g, q, m = tables.received, tables.gaps, tables.quarantine, tables.messages
    with side.engine.connect() as conn:
        arrivals = [(int(seq), at) for seq, at in conn.execute(
            select(r.c.seq, r.c.received_at).where(r.c.channel == side.receives))]
        sent = [int(seq) for seq in conn.execute(select(tables.sent.c.seq)
                                                 .where(tables.sent.c.channel == side.sends)).scalars()]
        gaps = [(int(low), int(high)) for low, high in conn.execute(
            select(g.c.seq_from, g.c.seq_to).where(g.c.channel == side.receives))]
        quarantined = [(str(file), str(code)) for file, code in conn.execute(
            select(q.c.file, q.c.code).where(q.c.channel == side.receives))]
        unanswered = [str(key) for key in conn.execute(select(m.c.key).where(
            m.c.channel == side.sends, m.c.direction == "sent", m.c.type == "message", m.c.state != "answered")
        ).scalars()] if side.expects_answers else []
    return _SideState(arrivals, sent, gaps, quarantined, unanswered)


def _check_side(report: FerryLedgerReport, side: Side, sender: Side | None, tables: FerryTables,
                actions: list[LinkAction], watched: set[tuple[int, int]]) -> None:
    state = _read_side(side, tables)
    gaps = sorted(set(state.gaps) | watched)  # as named, not only as still missing
    received = [seq for seq, _ in state.arrivals]
    report.stations.append(StationTally(side.name, len(received), len(state.sent), gaps, state.quarantined))
    _problem(report, f"{side.name}: messages sent and never answered", state.unanswered)
    _problem(report, f"{side.name}: batches received twice on {side.receives}",
             [seq for seq, n in Counter(received).items() if n > 1])
    if sender is not None:
        with sender.engine.connect() as conn:
            sent_to_me = set(conn.execute(select(tables.sent.c.seq)
                                          .where(tables.sent.c.channel == side.receives)).scalars())
        _problem(report, f"{side.name}: batches sent on {side.receives} and never received", sent_to_me - set(received))
    mine = [a for a in actions if a.lane == side.lane_in and a.seq is not None]
    _check_gaps(report, side, mine, state.arrivals, gaps)
    _check_quarantine(report, side, mine, {name for name, _ in state.quarantined})


def _check_gaps(report: FerryLedgerReport, side: Side, mine: list[LinkAction],
                arrivals: list[tuple[int, datetime]], gaps: list[tuple[int, int]]) -> None:
    dropped = {a.seq for a in mine if a.action in LOST}
    _problem(report, f"{side.name}: batches the link dropped or refused that were never named as a gap",
             {seq for seq in _missed(dropped, arrivals) if not any(low <= seq <= high for low, high in gaps)})


def _check_quarantine(report: FerryLedgerReport, side: Side, mine: list[LinkAction], names: set[str]) -> None:
    mistreated = {a.file for i, a in enumerate(mine) if a.action in MISTREATED and not _replaced(a, mine[i + 1:])}
    _problem(report, f"{side.name}: truncated or corrupted batches not quarantined", mistreated - names)
    if side.quarantine_folder is not None:
        kept = {p.name for p in side.quarantine_folder.glob("*")} if side.quarantine_folder.exists() else set()
        _problem(report, f"{side.name}: quarantined batches missing from the quarantine folder",
                 {name for name in mistreated if not any(k.startswith(name) for k in kept)})


def _missed(dropped: Iterable[int | None], arrivals: Iterable[tuple[int, datetime]]) -> set[int]:
    """The dropped seqs that were a gap: never received, or received only after a later seq was. (A resend that
    arrives before anything after it fills the place before there is a gap to name.)"""
    first = {int(seq): at for seq, at in arrivals}
    return {seq for seq in dropped if seq is not None and (
        seq not in first or any(later > seq and at < first[seq] for later, at in first.items()))}


def _replaced(delivery: LinkAction, later: list[LinkAction]) -> bool:
    """Whether the next delivery of the same file overwrote this one before the receiver took it."""
    following = next((a for a in later if a.file == delivery.file and a.bytes is not None
                      and a.action not in ("held", "dropped", "refused")), None)
    return following is not None and following.replaced


def gateway_side(deployment: Deployment, channel: str, folder: Path | None = None) -> Side:
    return Side("gateway", harness_engine(deployment.db_url), f"{channel}.up", f"{channel}.down", "up", folder,
                expects_answers=True)


def agent_side(state: Path, channel: str, folder: Path | None = None) -> Side:
    return Side("agent", agent_engine(state), f"{channel}.down", f"{channel}.up", "down", folder)
