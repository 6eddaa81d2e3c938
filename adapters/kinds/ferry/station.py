"""One side of a ferry link: it sends batches on one channel and receives them on the other.

The same `Station` runs on the near side (the gateway: messages and control down, answers and decisions up)
and on the far side (the agent: the other way round). Its state is the ferry tables (`tables.py`) in that
side's own database; its files are two `LinkFolder`s (`folders.py`); what the batches hold is `batch.py`.

Sending (`send`): the next seq is allocated, the batch sealed (chained to the previous one's digest) and
recorded with its entries — sealed bytes kept for resends — in ONE transaction, committed; only then is the
file written (temporary name, fsync, rename, done marker). A crash between the two leaves a recorded batch
with no file (`written_at` empty): the next `send`, `resend_due` or `rewrite_unwritten` writes it. So nothing
recorded is lost and a seq is never used twice. The allocation is one atomic UPDATE (`sent_seq + 1`) as the
transaction's first statement: it takes the channel row's write lock (PostgreSQL's row lock, SQLite's write
lock — even on an engine that does not emit BEGIN IMMEDIATE), so concurrent senders in any process get
distinct, contiguous seqs; threads of one station also queue on a lock of their own first.

Receiving (`receive`): every ready file of `incoming`, in name order (batches before signals). A file that
does not open is quarantined (moved aside with its reason, a `ferry_quarantine` row, a warning in the log: the
alert). A batch whose seq was applied is a duplicate (counted, removed) — or forged, if its digest differs; one
whose `previous` contradicts the digest recorded for seq-1 (or whose digest contradicts what seq+1 named) has a
broken chain: both quarantined. Otherwise its entries not seen before (by entry id, remembered `keep_keys`) go
to `apply`, then the batch and its entries are recorded: apply first, record after, so a crash between them
applies again, which the idempotency key at the sector absorbs; nothing is recorded as applied that was not. A
seq past the highest seen names the gap below it (`ferry_gaps`); a batch inside a gap fills it; a gap never
blocks later batches. Duplicate detection and ordering never read a clock (clocks drift across a gap); the
clock only stamps rows, paces resends and beacons, and ages out remembered ids.
One receiver per channel at a time: the gateway runs `receive` in a job under a lease, the agent is one
process, and threads of one station queue on a lock of its own.

Signals (unsequenced, signed, never resent) keep the two sides in step. Two-way: after a pass that applied or
met a batch, a receipt names every seq applied (cumulative ranges), so a lost receipt costs nothing; a
receipt marks our sent batches acknowledged, and `resend_due` writes again what stayed unacknowledged
`resend_after`. One-way: no receipts; `beacon_due` writes a beacon (our last seq and digest) every
`beacon_every`, and the receiving side names what never arrived, for an operator's `resend`. A signal's
counter must rise: one at or below the last accepted is a replay, ignored and counted.

Test-only crash points (`YIWANG_UNSAFE_FERRY_CRASH_AT`): `before_rename` (a batch's temporary file written,
not renamed), `after_read` (a batch opened, nothing applied), `after_apply` (its entries applied, nothing
recorded): the process SIGKILLs itself there (`crash_point`; the station hands it to every write of its
outgoing folder, however the caller made that folder).

Personal data: the tables keep ids, keys, operations, digests and answers, never an entry's body; the sealed
batch bytes kept for resends are enveloped to the peer.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Connection, Engine, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters.ferry_state import (
    RECEIVED,
    SENT,
    STATE_ANSWERED,
    STATE_APPLIED,
    STATE_SENT,
    FerryTables,
    as_utc,
)
from adapters.kinds.ferry.batch import Batch, BatchRefused, Entry, FerryKeys, Limits, open_batch, seal
from adapters.kinds.ferry.folders import LinkFolder

log = structlog.get_logger(__name__)

CRASH_AT_ENV = "YIWANG_UNSAFE_FERRY_CRASH_AT"
CRASH_POINTS = ("before_rename", "after_read", "after_apply")
MODES = ("two_way", "one_way")
# Codes of the files quarantined by the station itself (beside batch.py's REFUSAL_CODES): signed and readable,
# but a different batch under a seq already applied, or not the successor its chain says.
FORGED, BROKEN_CHAIN = "forged", "broken_chain"
_DUPLICATE = "duplicate"  # not quarantined: removed and counted


def crash_point(name: str) -> None:
    """Test-only: the process dies here (SIGKILL, nothing flushed or cleaned up) when
    YIWANG_UNSAFE_FERRY_CRASH_AT names this point; otherwise nothing."""
    if os.environ.get(CRASH_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class StationConfig:
    name: str  # this side's sender name ("gateway" / the agent's name)
    send_channel: str  # e.g. "public_security.down"
    receive_channel: str  # e.g. "public_security.up"
    outgoing: LinkFolder  # the station writes through one of its own on the same path (crash point wired in)
    incoming: LinkFolder
    mode: str = "two_way"  # or "one_way" (no receipts; beacons)
    cipher: str = "sm4-gcm"
    limits: Limits = Limits()
    resend_after: timedelta = timedelta(minutes=5)  # two_way: unreceipted batches written again
    beacon_every: timedelta = timedelta(minutes=1)  # one_way: a beacon signal this often
    keep_keys: timedelta = timedelta(days=30)  # message ids remembered for duplicate suppression
    suppress_duplicates: bool = True  # the negative control's switch (tests only)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"a ferry link's mode is one of {', '.join(MODES)}, not {self.mode!r}")
        if self.send_channel == self.receive_channel:
            raise ValueError("a station sends and receives on two different channels")


@dataclass(frozen=True)
class SentMessage:
    """A message this side sent, as far as the ferry knows it."""

    id: str
    seq: int
    state: str  # 'sent' | 'answered'
    created_at: datetime
    answer: dict[str, Any] | None  # the far side's answer entry's body (spec: "Answers")
    consumed_at: datetime | None
    answered_at: datetime | None = None


@dataclass
class ReceiveReport:
    """What one `receive` pass did."""

    applied_batches: int = 0
    applied_entries: int = 0
    duplicate_batches: int = 0  # a seq already applied, same digest: removed, not applied again
    duplicate_entries: int = 0  # an entry id already applied (within keep_keys): skipped
    quarantined: int = 0
    signals: int = 0  # receipts and beacons accepted
    replayed_signals: int = 0  # a signal counter at or below the last accepted: ignored
    gaps_named: int = 0
    failed: int = 0  # batches whose `apply` raised: left in the folder for the next pass


@dataclass(frozen=True)
class ChannelStatus:
    """One channel as this side sees it (`direction`: we send or receive on it)."""

    channel: str
    direction: str  # 'send' | 'receive'
    mode: str
    last_seq: int  # send: the last seq sent; receive: the highest seq applied
    last_at: datetime | None  # send: when it was sent; receive: when the last batch was applied
    lag: int  # batches behind — send (two_way): sent but not all acknowledged below; receive: seen or announced
    #          by a beacon but not applied with everything below it
    unacked: int = 0  # send, two_way: batches with no receipt yet
    unwritten: int = 0  # send: recorded, file not written yet (a crash or a full disk: written on the next pass)
    oldest_unacked_at: datetime | None = None
    gaps: int = 0  # receive: open gaps
    last_signal_at: datetime | None = None  # send: our last beacon; receive: the peer's last accepted signal
    peer_seq: int = 0  # receive, one_way: the last seq the peer's beacon named
    quarantined: int = 0  # receive: files quarantined on it, ever
    applied_seq: int = 0  # receive: every seq up to this one applied
    duplicates: int = 0  # receive: batches met again after they were applied (a resend, a link's copy, a replay)
    replayed_signals: int = 0  # receive: receipts or beacons whose counter was not above the last taken: ignored


@dataclass(frozen=True)
class Gap:
    channel: str
    seq_from: int
    seq_to: int
    named_at: datetime
    filled_at: datetime | None


@dataclass(frozen=True)
class Quarantined:
    id: int
    channel: str
    file: str
    code: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class _Kept:
    """A sent batch as kept for writing (again)."""

    seq: int
    file: str
    data: bytes = field(repr=False)


_FILE_MAX = 200  # a quarantined file's name as recorded (a hostile name can be longer)


class Station:
    def __init__(self, engine: Engine, tables: FerryTables, config: StationConfig,
                 keys: Callable[[], FerryKeys], clock: Callable[[], datetime]) -> None:
        # Our own outgoing folder (same path and naming) passing the test-only crash point `before_rename` to
        # every write, however the caller made its folder.
        outgoing = LinkFolder(config.outgoing.path, config.outgoing.naming, crash_at=crash_point)
        self._engine, self._t, self.config = engine, tables, replace(config, outgoing=outgoing)
        self._keys, self._clock = keys, clock
        self._sending = threading.Lock()  # one send / resend at a time per station (its files, its seqs)
        self._receiving = threading.Lock()
        self._channels_made = False

    def _now(self) -> datetime:
        """The clock's time in UTC: stored times compare as text on SQLite, so every one is in one zone."""
        return self._clock().astimezone(UTC)

    # ------------------------------------------------------------------------------------------- sending

    def send(self, entries: Sequence[Entry], *, operation_of: Mapping[str, str] | None = None) -> int:
        """Seal one batch with the next seq, record it and its entries (ferry_messages, direction sent, state
        'sent'; `operation_of`: entry id -> operation), commit, then write it to `outgoing`; its seq.
        BatchRefused (too_large, content_type) or ValueError for entries that cannot go: nothing recorded,
        no seq used. A file that cannot be written (a full disk) is logged and written on the next pass."""
        if not entries:
            raise ValueError("a batch carries at least one entry")
        self._make_channels()
        keys, now = self._keys(), self._now()
        with self._sending:
            kept = self._record_batch(entries, operation_of or {}, keys, now)
            self._write(kept, resend=False)
            self._write_unwritten(below=kept.seq)
        return kept.seq

    def _record_batch(self, entries: Sequence[Entry], operation_of: Mapping[str, str], keys: FerryKeys,
                      now: datetime) -> _Kept:
        ch, cfg = self._t.channels, self.config
        with self._engine.begin() as conn:
            # First statement: the atomic increment takes the channel row's write lock (see the docstring).
            conn.execute(update(ch).where(ch.c.channel == cfg.send_channel).values(sent_seq=ch.c.sent_seq + 1))
            seq, previous = conn.execute(select(ch.c.sent_seq, ch.c.sent_digest)
                                         .where(ch.c.channel == cfg.send_channel)).one()
            self._refuse_sent_before(conn, entries)
            data, digest = seal(channel=cfg.send_channel, seq=seq, previous=previous, entries=entries, keys=keys,
                                sender=cfg.name, cipher=cfg.cipher, limits=cfg.limits, now=now)
            name = cfg.outgoing.name_for(cfg.send_channel, seq, digest)
            conn.execute(update(ch).where(ch.c.channel == cfg.send_channel).values(sent_digest=digest))
            conn.execute(insert(self._t.sent).values(channel=cfg.send_channel, seq=seq, digest=digest, file=name,
                                                     data=data, sent_at=now))
            conn.execute(insert(self._t.messages), [
                {"channel": cfg.send_channel, "direction": SENT, "id": e.id, "type": e.type, "key": e.key,
                 "operation": operation_of.get(e.id), "seq": seq, "state": STATE_SENT, "created_at": now}
                for e in entries])
        return _Kept(seq, name, data)

    def _refuse_sent_before(self, conn: Connection, entries: Sequence[Entry]) -> None:
        """ValueError (and the transaction undone: no seq used) for an entry id this side sent before: the
        receiver would skip it as a duplicate, so it would never arrive."""
        m = self._t.messages
        again = conn.execute(select(m.c.id).where(m.c.channel == self.config.send_channel, m.c.direction == SENT,
                                                  m.c.id.in_([e.id for e in entries]))).scalars().all()
        if again:
            raise ValueError(f"entry ids are sent once; sent before: {', '.join(sorted(again))[:200]}")

    def _write(self, kept: _Kept, *, resend: bool) -> bool:
        """Write a recorded batch's file and note it; False (logged) when the folder refused it."""
        try:
            self.config.outgoing.write(kept.file, kept.data)
        except OSError as exc:
            log.error("ferry_write_failed", channel=self.config.send_channel, seq=kept.seq, file=kept.file,
                      error=type(exc).__name__, detail=str(exc))
            return False
        sent = self._t.sent
        with self._engine.begin() as conn:
            conn.execute(update(sent).where(sent.c.channel == self.config.send_channel, sent.c.seq == kept.seq)
                         .values(written_at=self._now(), resends=sent.c.resends + (1 if resend else 0)))
        return True

    def _kept(self, *conditions: Any) -> Iterator[_Kept]:
        """The kept batches that meet `conditions`, by seq, their bytes read one at a time (a resend after a
        long outage may reach thousands of batches of up to 16 MiB)."""
        sent = self._t.sent
        mine = sent.c.channel == self.config.send_channel
        with self._engine.connect() as conn:
            seqs = conn.execute(select(sent.c.seq).where(mine, *conditions).order_by(sent.c.seq)).scalars().all()
        for seq in seqs:
            with self._engine.connect() as conn:
                row = conn.execute(select(sent.c.file, sent.c.data).where(mine, sent.c.seq == seq)).first()
            if row is not None:  # None: no longer kept meanwhile
                yield _Kept(seq, row.file, row.data)

    def _write_unwritten(self, below: int | None = None) -> int:
        conditions: list[ColumnElement[bool]] = [self._t.sent.c.written_at.is_(None)]
        if below is not None:
            conditions.append(self._t.sent.c.seq < below)
        return sum(self._write(kept, resend=False) for kept in self._kept(*conditions))

    def rewrite_unwritten(self) -> int:
        """Write every batch recorded but never written (a crash came between): at start-up; the count."""
        self._make_channels()
        with self._sending:
            return self._write_unwritten()

    def resend_due(self) -> int:
        """Write what is due: batches recorded but never written, and (two_way) batches written but not
        acknowledged for `resend_after` and no longer waiting in `outgoing` (the link took them and they were
        lost). The number of files written. Batches sent longer ago than `keep_keys`
        (and acknowledged, on a two-way link) are no longer kept: an operator's resend reaches that far back."""
        self._make_channels()
        with self._sending:
            self._forget_old_batches()
            written = self._write_unwritten()
            if self.config.mode != "two_way":
                return written
            sent = self._t.sent
            due = self._kept(sent.c.acked_at.is_(None), sent.c.written_at.is_not(None),
                             sent.c.written_at <= self._now() - self.config.resend_after)
            # One still in the outgoing folder was not taken by the link yet: writing it again changes nothing.
            waiting = {path.name for path in self.config.outgoing.ready()}
            return written + self._resend(kept for kept in due if kept.file not in waiting)

    def _forget_old_batches(self) -> None:
        sent = self._t.sent
        old = [sent.c.channel == self.config.send_channel, sent.c.sent_at < self._now() - self.config.keep_keys]
        if self.config.mode == "two_way":
            old.append(sent.c.acked_at.is_not(None))
        with self._engine.begin() as conn:
            conn.execute(sent.delete().where(*old))

    def resend(self, seq_from: int, seq_to: int) -> int:
        """An operator's resend: the kept batches `seq_from`..`seq_to` written again under their own names
        (the receiving side suppresses what it already has). The number written."""
        if not 1 <= seq_from <= seq_to:
            raise ValueError(f"a resend names a range of seqs from 1 up, not {seq_from}..{seq_to}")
        self._make_channels()
        sent = self._t.sent
        with self._sending:
            return self._resend(self._kept(sent.c.seq >= seq_from, sent.c.seq <= seq_to))

    def _resend(self, batches: Iterable[_Kept]) -> int:
        written = 0
        for kept in batches:
            if self._write(kept, resend=True):
                written += 1
                log.info("ferry_resent", channel=self.config.send_channel, seq=kept.seq)
        return written

    def message_state(self, key: str, operation: str) -> SentMessage | None:
        """The latest message sent with this idempotency key and operation, or None."""
        m = self._t.messages
        with self._engine.connect() as conn:
            row = conn.execute(select(m).where(m.c.channel == self.config.send_channel, m.c.direction == SENT,
                                               m.c.key == key, m.c.operation == operation)
                               .order_by(m.c.created_at.desc(), m.c.seq.desc()).limit(1)).first()
        return None if row is None else _sent_message(row)

    def consume(self, message_id: str) -> None:
        """The near side took the answer onto the case (once: a second call changes nothing)."""
        m = self._t.messages
        with self._engine.begin() as conn:
            conn.execute(update(m).where(m.c.channel == self.config.send_channel, m.c.direction == SENT,
                                         m.c.id == message_id, m.c.consumed_at.is_(None))
                         .values(consumed_at=self._now()))

    def record_answer(self, entry: Entry) -> bool:
        """Near side: an `answer` entry onto the message it answers (by the id in its body): state 'answered',
        the body kept as `answer`. The first answer stands: a repeated one (the far side applied the message
        again after a crash) changes nothing. False (logged) for an answer to no message of ours."""
        answer = _answer_body(entry)
        m = self._t.messages
        with self._engine.begin() as conn:
            done = conn.execute(update(m).where(m.c.channel == self.config.send_channel, m.c.direction == SENT,
                                                m.c.id == answer["message"], m.c.state == STATE_SENT)
                                .values(state=STATE_ANSWERED, answer=answer, answered_at=self._now()))
        if done.rowcount != 1:
            log.info("ferry_answer_ignored", channel=self.config.send_channel, message=answer["message"],
                     why="no such message, or already answered")
        return done.rowcount == 1

    # ------------------------------------------------------------------------------------------- receiving

    def receive(self, apply: Callable[[Batch, Entry], None]) -> ReceiveReport:
        """Every ready file in `incoming`, as the module docstring says; what was done."""
        self._make_channels()
        report = ReceiveReport()
        with self._receiving:
            self._forget_old_keys()
            met_batches, keys = False, self._keys()
            for path in self.config.incoming.ready():
                met_batches |= self._receive_file(path, apply, keys, report)
            if met_batches and self.config.mode == "two_way":
                self._send_receipt()
        return report

    def _receive_file(self, path: Path, apply: Callable[[Batch, Entry], None], keys: FerryKeys,
                      report: ReceiveReport) -> bool:
        """One file; True when it was a batch applied or met again (a receipt is due)."""
        cfg = self.config
        try:
            batch = open_batch(cfg.incoming.read(path), keys=keys, limits=cfg.limits, now=self._now(),
                               channel=cfg.receive_channel)
        except BatchRefused as refused:
            self._quarantine(path, refused.code, refused.reason, report)
            return False
        except FileNotFoundError:  # taken meanwhile (an operator, another reader): nothing to do
            return False
        if batch.signal is not None:
            self._take_signal(batch, report)
            cfg.incoming.remove(path)
            return False
        problem = self._chain_problem(batch)
        if problem is not None and problem[0] == _DUPLICATE:  # a resend or a replay: refused, counted, shown
            report.duplicate_batches += 1
            self._count_refused("duplicate_batches")
            log.info("ferry_batch_met_again", channel=cfg.receive_channel, seq=batch.seq, file=path.name)
            cfg.incoming.remove(path)
            return True
        if problem is not None:
            self._quarantine(path, *problem, report)
            return False
        crash_point("after_read")
        if not self._apply(batch, apply, report):
            return False
        crash_point("after_apply")
        report.gaps_named += self._record_received(batch, batch.entries)
        report.applied_batches += 1
        cfg.incoming.remove(path)
        return True

    def _chain_problem(self, batch: Batch) -> tuple[str, str] | None:
        """(code, reason) for a batch to quarantine, or for a duplicate (`_DUPLICATE`); None: one to apply."""
        r = self._t.received
        with self._engine.connect() as conn:
            known = {seq: (digest, previous) for seq, digest, previous in conn.execute(
                select(r.c.seq, r.c.digest, r.c.previous).where(
                    r.c.channel == self.config.receive_channel, r.c.seq.between(batch.seq - 1, batch.seq + 1)))}
        if batch.seq in known:
            if known[batch.seq][0] != batch.digest:
                return FORGED, (f"seq {batch.seq} was applied with digest {known[batch.seq][0][:16]}…; this "
                                f"batch claims it with digest {batch.digest[:16]}…")
            return (_DUPLICATE, "applied before") if self.config.suppress_duplicates else None
        if batch.seq - 1 in known and known[batch.seq - 1][0] != batch.previous:
            return BROKEN_CHAIN, (f"seq {batch.seq} names {batch.previous[:16]}… as its previous batch; seq "
                                  f"{batch.seq - 1} applied had digest {known[batch.seq - 1][0][:16]}…")
        if batch.seq + 1 in known and known[batch.seq + 1][1] != batch.digest:
            return BROKEN_CHAIN, (f"seq {batch.seq + 1} applied named {known[batch.seq + 1][1][:16]}… as its "
                                  f"previous batch; this seq {batch.seq} has digest {batch.digest[:16]}…")
        return None

    def _apply(self, batch: Batch, apply: Callable[[Batch, Entry], None], report: ReceiveReport) -> bool:
        """Each entry not seen before to `apply`; False when `apply` raised (what it applied before is
        recorded; the batch stays in the folder for the next pass)."""
        fresh = self._unseen(batch.entries) if self.config.suppress_duplicates else list(batch.entries)
        report.duplicate_entries += len(batch.entries) - len(fresh)
        applied: list[Entry] = []
        try:
            for entry in fresh:
                apply(batch, entry)
                applied.append(entry)
        except Exception as exc:  # noqa: BLE001 - one batch's trouble must not stop the others
            log.error("ferry_apply_failed", channel=batch.channel, seq=batch.seq, entry=entry.id,
                      error=type(exc).__name__, detail=str(exc)[:500])
            self._record_messages(batch, applied)
            report.failed += 1
            return False
        report.applied_entries += len(applied)
        return True

    def _unseen(self, entries: Sequence[Entry]) -> list[Entry]:
        """The entries whose ids were not applied on this channel (ids are remembered keep_keys)."""
        m = self._t.messages
        with self._engine.connect() as conn:
            seen = set(conn.execute(select(m.c.id).where(
                m.c.channel == self.config.receive_channel, m.c.direction == RECEIVED,
                m.c.id.in_([e.id for e in entries]))).scalars())
        return [e for e in entries if e.id not in seen]

    def _lock_receive_channel(self, conn: Connection, now: datetime) -> Row[Any]:
        """The receive channel's row, write-locked for this transaction (its first statement writes it)."""
        ch = self._t.channels
        conn.execute(update(ch).where(ch.c.channel == self.config.receive_channel).values(last_batch_at=now))
        return conn.execute(select(ch).where(ch.c.channel == self.config.receive_channel)).one()

    def _record_messages(self, batch: Batch, entries: Sequence[Entry]) -> None:
        with self._engine.begin() as conn:
            self._lock_receive_channel(conn, self._now())
            self._insert_received_messages(conn, batch, entries, self._now())

    def _insert_received_messages(self, conn: Connection, batch: Batch, entries: Sequence[Entry],
                                  now: datetime) -> None:
        m = self._t.messages
        known = set(conn.execute(select(m.c.id).where(
            m.c.channel == self.config.receive_channel, m.c.direction == RECEIVED,
            m.c.id.in_([e.id for e in entries]))).scalars()) if entries else set()
        rows = [{"channel": self.config.receive_channel, "direction": RECEIVED, "id": e.id, "type": e.type,
                 "key": e.key, "operation": None, "seq": batch.seq, "state": STATE_APPLIED, "created_at": now}
                for e in entries if e.id not in known]
        if rows:
            conn.execute(insert(m), rows)

    def _record_received(self, batch: Batch, entries: Sequence[Entry]) -> int:
        """The batch and its entries recorded as applied, its gaps named or filled, in one transaction;
        the number of gaps named."""
        r, ch, now = self._t.received, self._t.channels, self._now()
        cfg = self.config
        with self._engine.begin() as conn:
            channel = self._lock_receive_channel(conn, now)
            self._insert_received_messages(conn, batch, entries, now)
            if conn.execute(select(r.c.seq).where(r.c.channel == cfg.receive_channel, r.c.seq == batch.seq)
                            ).first() is None:
                conn.execute(insert(r).values(channel=cfg.receive_channel, seq=batch.seq, digest=batch.digest,
                                              previous=batch.previous, sender=batch.sender, received_at=now,
                                              applied_at=now))
            named = self._name_gap(conn, channel.seen_seq + 1, batch.seq - 1, now)
            if batch.seq <= channel.seen_seq:
                self._fill_gap(conn, batch.seq, now)
            conn.execute(update(ch).where(ch.c.channel == cfg.receive_channel).values(
                seen_seq=max(channel.seen_seq, batch.seq), applied_seq=self._contiguous(conn, channel.applied_seq)))
        return named

    def _contiguous(self, conn: Connection, applied: int) -> int:
        """The highest seq with every seq up to it applied, from `applied` up."""
        r = self._t.received
        for seq in conn.execute(select(r.c.seq).where(r.c.channel == self.config.receive_channel,
                                                      r.c.seq > applied).order_by(r.c.seq)).scalars():
            if seq != applied + 1:
                break
            applied = seq
        return applied

    def _name_gap(self, conn: Connection, seq_from: int, seq_to: int, now: datetime) -> int:
        if seq_from > seq_to:
            return 0
        conn.execute(insert(self._t.gaps).values(channel=self.config.receive_channel, seq_from=seq_from,
                                                 seq_to=seq_to, named_at=now))
        log.warning("ferry_gap", channel=self.config.receive_channel, seq_from=seq_from, seq_to=seq_to)
        return 1

    def _fill_gap(self, conn: Connection, seq: int, now: datetime) -> None:
        """`seq` arrived: the open gap holding it shrinks, splits in two, or (its last seq) is filled."""
        g = self._t.gaps
        gap = conn.execute(select(g).where(g.c.channel == self.config.receive_channel, g.c.filled_at.is_(None),
                                           g.c.seq_from <= seq, g.c.seq_to >= seq)).first()
        if gap is None:
            return
        this = update(g).where(g.c.id == gap.id)
        if gap.seq_from == gap.seq_to:
            conn.execute(this.values(filled_at=now))
        elif seq == gap.seq_from:
            conn.execute(this.values(seq_from=seq + 1))
        elif seq == gap.seq_to:
            conn.execute(this.values(seq_to=seq - 1))
        else:
            conn.execute(this.values(seq_to=seq - 1))
            conn.execute(insert(g).values(channel=gap.channel, seq_from=seq + 1, seq_to=gap.seq_to,
                                          named_at=gap.named_at))

    def _quarantine(self, path: Path, code: str, reason: str, report: ReceiveReport) -> None:
        """Aside with its reason (folder), on record (ferry_quarantine: metrics and alerts read it), logged."""
        try:
            self.config.incoming.quarantine(path, reason, code)
        except FileNotFoundError:
            return
        with self._engine.begin() as conn:
            conn.execute(insert(self._t.quarantine).values(channel=self.config.receive_channel,
                                                           file=path.name[:_FILE_MAX], code=code, reason=reason,
                                                           at=self._now()))
        log.warning("ferry_quarantined", channel=self.config.receive_channel, file=path.name[:_FILE_MAX],
                    code=code, reason=reason)
        report.quarantined += 1

    def _forget_old_keys(self) -> None:
        """Received ids older than keep_keys are forgotten (the only use of the clock for duplicates: batch
        seqs are never forgotten)."""
        m = self._t.messages
        with self._engine.begin() as conn:
            conn.execute(m.delete().where(m.c.channel == self.config.receive_channel, m.c.direction == RECEIVED,
                                          m.c.created_at < self._now() - self.config.keep_keys))

    # ------------------------------------------------------------------------------------------- signals

    def _count_refused(self, column: str) -> None:
        """One more batch met again on the channel we receive on (operators see the count in `status`)."""
        ch = self._t.channels
        with self._engine.begin() as conn:
            conn.execute(update(ch).where(ch.c.channel == self.config.receive_channel)
                         .values({column: ch.c[column] + 1}))

    def _take_signal(self, batch: Batch, report: ReceiveReport) -> None:
        assert batch.signal is not None
        ch, now, counter = self._t.channels, self._now(), int(batch.signal["counter"])
        with self._engine.begin() as conn:
            taken = conn.execute(update(ch).where(ch.c.channel == self.config.receive_channel,
                                                  ch.c.signals_seen < counter)
                                 .values(signals_seen=counter, last_signal_at=now))
            if taken.rowcount != 1:
                report.replayed_signals += 1
                conn.execute(update(ch).where(ch.c.channel == self.config.receive_channel)
                             .values(replayed_signals=ch.c.replayed_signals + 1))
                log.warning("ferry_signal_replayed", channel=self.config.receive_channel, counter=counter)
                return
            report.signals += 1
            if "receipts" in batch.signal:
                self._take_receipts(conn, batch.signal["receipts"], now)
            else:
                report.gaps_named += self._take_beacon(conn, batch.signal["beacon"], now)

    def _take_receipts(self, conn: Connection, ranges: Sequence[Sequence[int]], now: datetime) -> None:
        sent = self._t.sent
        for seq_from, seq_to in ranges:
            conn.execute(update(sent).where(sent.c.channel == self.config.send_channel, sent.c.acked_at.is_(None),
                                            sent.c.seq.between(seq_from, seq_to)).values(acked_at=now))

    def _take_beacon(self, conn: Connection, beacon: Mapping[str, Any], now: datetime) -> int:
        """The peer's last seq and digest: what we never saw up to it is a gap. The number of gaps named."""
        ch, r = self._t.channels, self._t.received
        last_seq, last_digest = int(beacon["last_seq"]), str(beacon["last_digest"])
        channel = conn.execute(select(ch).where(ch.c.channel == self.config.receive_channel)).one()
        named = self._name_gap(conn, channel.seen_seq + 1, last_seq, now)
        conn.execute(update(ch).where(ch.c.channel == self.config.receive_channel).values(
            peer_seq=last_seq, peer_digest=last_digest, seen_seq=max(channel.seen_seq, last_seq)))
        ours = conn.execute(select(r.c.digest).where(r.c.channel == self.config.receive_channel,
                                                     r.c.seq == last_seq)).scalar()
        if ours is not None and ours != last_digest:
            log.warning("ferry_beacon_disagrees", channel=self.config.receive_channel, seq=last_seq)
        return named

    def _send_receipt(self) -> None:
        """Two-way: a receipt naming every seq applied on the receive channel (cumulative: one lost costs
        nothing, the next says it all)."""
        ch, r = self._t.channels, self._t.received
        with self._engine.connect() as conn:
            applied = conn.execute(select(ch.c.applied_seq).where(ch.c.channel == self.config.receive_channel)
                                   ).scalar_one()
            above = conn.execute(select(r.c.seq).where(r.c.channel == self.config.receive_channel,
                                                       r.c.seq > applied).order_by(r.c.seq)).scalars().all()
        ranges = ([[1, applied]] if applied else []) + _ranges(above)
        if ranges:
            self._send_signal({"receipts": ranges})

    def beacon_due(self) -> bool:
        """One-way: a beacon (our last seq and its digest) when none was written for `beacon_every`; whether
        one was written. Two processes asking at once write one (a conditional update decides)."""
        if self.config.mode != "one_way":
            return False
        self._make_channels()
        ch, now = self._t.channels, self._now()
        with self._engine.begin() as conn:
            due = conn.execute(update(ch).where(
                ch.c.channel == self.config.send_channel,
                (ch.c.beacon_at.is_(None)) | (ch.c.beacon_at <= now - self.config.beacon_every)).values(beacon_at=now))
            if due.rowcount != 1:
                return False
            last_seq, last_digest = conn.execute(select(ch.c.sent_seq, ch.c.sent_digest)
                                                 .where(ch.c.channel == self.config.send_channel)).one()
        self._send_signal({"beacon": {"last_seq": last_seq, "last_digest": last_digest}})
        return True

    def _send_signal(self, content: Mapping[str, Any]) -> None:
        """A signal with the next counter, written to `outgoing` (never kept: the next one says it again)."""
        ch, cfg = self._t.channels, self.config
        keys, now = self._keys(), self._now()
        with self._engine.begin() as conn:
            conn.execute(update(ch).where(ch.c.channel == cfg.send_channel)
                         .values(signals_sent=ch.c.signals_sent + 1))
            counter = conn.execute(select(ch.c.signals_sent).where(ch.c.channel == cfg.send_channel)).scalar_one()
        data, digest = seal(channel=cfg.send_channel, seq=0, previous="", entries=(), keys=keys, sender=cfg.name,
                            cipher=cfg.cipher, limits=cfg.limits, signal={**content, "counter": counter}, now=now)
        try:
            cfg.outgoing.write(cfg.outgoing.name_for(cfg.send_channel, 0, digest, counter=counter), data)
        except OSError as exc:
            log.error("ferry_write_failed", channel=cfg.send_channel, signal=counter, error=type(exc).__name__,
                      detail=str(exc))

    # ------------------------------------------------------------------------------------------- operators

    def status(self) -> list[ChannelStatus]:
        """Both channels: the one we send on, then the one we receive on."""
        self._make_channels()
        with self._engine.connect() as conn:
            return [self._send_status(conn), self._receive_status(conn)]

    def _send_status(self, conn: Connection) -> ChannelStatus:
        ch, sent, cfg = self._t.channels, self._t.sent, self.config
        row = conn.execute(select(ch).where(ch.c.channel == cfg.send_channel)).one()
        mine = sent.c.channel == cfg.send_channel
        last_at = conn.execute(select(func.max(sent.c.sent_at)).where(mine)).scalar()
        unwritten = conn.execute(select(func.count()).where(mine, sent.c.written_at.is_(None))).scalar_one()
        unacked, oldest, first_unacked = 0, None, None
        if cfg.mode == "two_way":
            unacked, oldest, first_unacked = conn.execute(
                select(func.count(), func.min(sent.c.sent_at), func.min(sent.c.seq))
                .where(mine, sent.c.acked_at.is_(None))).one()
        lag = row.sent_seq - first_unacked + 1 if first_unacked is not None else 0
        return ChannelStatus(channel=cfg.send_channel, direction="send", mode=cfg.mode, last_seq=row.sent_seq,
                             last_at=as_utc(last_at), lag=lag, unacked=unacked, unwritten=unwritten,
                             oldest_unacked_at=as_utc(oldest), last_signal_at=as_utc(row.beacon_at))

    def _receive_status(self, conn: Connection) -> ChannelStatus:
        ch, r, g, q, cfg = self._t.channels, self._t.received, self._t.gaps, self._t.quarantine, self.config
        row = conn.execute(select(ch).where(ch.c.channel == cfg.receive_channel)).one()
        last_seq = conn.execute(select(func.max(r.c.seq)).where(r.c.channel == cfg.receive_channel)).scalar()
        gaps = conn.execute(select(func.count()).where(g.c.channel == cfg.receive_channel,
                                                       g.c.filled_at.is_(None))).scalar_one()
        quarantined = conn.execute(select(func.count()).where(q.c.channel == cfg.receive_channel)).scalar_one()
        last_at = conn.execute(select(func.max(r.c.applied_at)).where(r.c.channel == cfg.receive_channel)).scalar()
        return ChannelStatus(channel=cfg.receive_channel, direction="receive", mode=cfg.mode,
                             last_seq=last_seq or 0, last_at=as_utc(last_at), lag=row.seen_seq - row.applied_seq,
                             gaps=gaps, last_signal_at=as_utc(row.last_signal_at), peer_seq=row.peer_seq,
                             quarantined=quarantined, applied_seq=row.applied_seq,
                             duplicates=row.duplicate_batches, replayed_signals=row.replayed_signals)

    def gaps(self, *, include_filled: bool = False) -> list[Gap]:
        """The gaps named on the channel we receive on (open ones; `include_filled`: all), oldest first."""
        g = self._t.gaps
        query = select(g).where(g.c.channel == self.config.receive_channel)
        if not include_filled:
            query = query.where(g.c.filled_at.is_(None))
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(g.c.seq_from, g.c.id)).all()
        return [Gap(row.channel, row.seq_from, row.seq_to, _at(row.named_at), as_utc(row.filled_at)) for row in rows]

    def quarantined(self, limit: int = 100) -> list[Quarantined]:
        """The files quarantined on the channel we receive on, newest first."""
        q = self._t.quarantine
        with self._engine.connect() as conn:
            rows = conn.execute(select(q).where(q.c.channel == self.config.receive_channel)
                                .order_by(q.c.id.desc()).limit(limit)).all()
        return [Quarantined(row.id, row.channel, row.file, row.code, row.reason, _at(row.at)) for row in rows]

    # ------------------------------------------------------------------------------------------- set-up

    def _make_channels(self) -> None:
        """Both channels' rows exist (made on first use; two processes making them at once: one wins)."""
        if self._channels_made:
            return
        ch = self._t.channels
        for name in (self.config.send_channel, self.config.receive_channel):
            with self._engine.connect() as conn:
                if conn.execute(select(ch.c.channel).where(ch.c.channel == name)).first() is not None:
                    continue
            try:
                with self._engine.begin() as conn:
                    conn.execute(insert(ch).values(channel=name))
            except IntegrityError:
                pass  # made meanwhile by another process
        self._channels_made = True


def _sent_message(row: Row[Any]) -> SentMessage:
    return SentMessage(id=row.id, seq=row.seq, state=row.state, created_at=_at(row.created_at), answer=row.answer,
                       consumed_at=as_utc(row.consumed_at), answered_at=as_utc(row.answered_at))


def _at(value: datetime) -> datetime:
    at = as_utc(value)
    assert at is not None
    return at


def _answer_body(entry: Entry) -> dict[str, Any]:
    """An answer entry's body (spec "Answers"); ValueError for anything else."""
    if entry.type != "answer":
        raise ValueError(f"record_answer takes an answer entry, not a {entry.type!r}")
    try:
        body = json.loads(entry.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("an answer's body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        raise ValueError("an answer's body is an object naming its `message`")
    return body


def _ranges(seqs: Sequence[int]) -> list[list[int]]:
    """Sorted seqs as [from, to] runs."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and runs[-1][1] == seq - 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return runs


__all__ = ["CRASH_AT_ENV", "CRASH_POINTS", "BROKEN_CHAIN", "FORGED", "ChannelStatus", "Gap", "Quarantined",
           "ReceiveReport", "SentMessage", "Station", "StationConfig", "crash_point"]
