"""One ferry link, both sides: a near and a far `Station` wired through two pairs of link folders by a tiny
mover that stands for the isolation gateway and, under the test's control, drops, duplicates, reorders,
truncates and corrupts files. Real keys: SM2 on both sides, or (`make_link(rsa=True)`) RSA on the far side.
Both databases, each test on an empty one of its own where it makes the ferry tables, as the agent does.

What it shows: every entry applied exactly once under duplicates and reordering; a dropped batch named as a
gap and filled by a resend (two-way: automatically, after `resend_after` on an injected clock; one-way: a
beacon names it, an operator resends); truncated, corrupt, forged, out-of-chain and wrong-key files
quarantined with their code; a replayed old batch and a replayed signal refused; the negative control
(duplicate suppression off) applies a duplicated batch twice; two senders at once get distinct, contiguous
seqs; a crash between recording and writing loses nothing.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, create_engine, select
from structlog.testing import capture_logs

from adapters.kinds.ferry.batch import Batch, BatchRefused, Entry, FerryKeys, seal
from adapters.kinds.ferry.folders import FolderFull, LinkFolder
from adapters.kinds.ferry.station import (
    CRASH_AT_ENV,
    ReceiveReport,
    Station,
    StationConfig,
    crash_point,
)
from adapters.ferry_state import FerryTables, ferry_tables
from certstore import Credential
from tests.support.pki import TestCA, new_key, sm2_credential
from tests.support.services import empty_database

DOWN, UP = "public_security.down", "public_security.up"
T0 = datetime(2026, 12, 7, 16, 0, tzinfo=timezone(timedelta(hours=8)))  # a clock in Beijing time: stored as UTC


@dataclass(frozen=True)
class Keys:
    near: Credential
    far: Credential
    intruder: Credential
    far_rsa: Credential


@pytest.fixture(scope="module")
def keys() -> Keys:
    """Near: SM2; far: SM2, or RSA (`make_link(rsa=True)`: both families of signature and key wrapping cross
    the link); an intruder: SM2, under the near side's name."""
    rsa = TestCA().issue("public_security-ferry", key=new_key("rsa"))
    return Keys(Credential("yiwang-ferry", *sm2_credential("yiwang-ferry")),
                Credential("public_security-ferry", *sm2_credential("public_security-ferry")),
                Credential("yiwang-ferry", *sm2_credential("yiwang-ferry")),
                Credential("public_security-ferry", rsa.cert_pem, rsa.key_pem))


def trust_only(credential: Credential) -> Credential:
    return Credential(credential.name, credential.certificate_pem)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's own (the ferry tables are made by the test, as the agent makes them),
    in place of the gateway's migrated one: conftest's `engine` opens it."""
    with empty_database(request, tmp_path, "ferry") as url:
        yield url


@pytest.fixture
def tables(engine: Engine) -> FerryTables:
    metadata = MetaData()
    made = ferry_tables(metadata)
    metadata.create_all(engine)
    return made


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def deliver(folder: Path, name: str, raw: bytes) -> None:
    """What an isolation gateway does on the far bank: the file whole, then its done marker."""
    temporary = folder / f".{name}.tmp"
    temporary.write_bytes(raw)
    temporary.replace(folder / name)
    (folder / f"{name}.done").write_bytes(b"")


@dataclass
class Mover:
    """Carries files from one side's outgoing folder to the other side's incoming one, faults on request."""

    source: LinkFolder
    target: Path
    carried: dict[str, bytes] = field(default_factory=dict)  # everything it ever picked up: replays

    def take(self) -> list[tuple[str, bytes]]:
        """Every ready file, picked up (gone from the source), in name order."""
        taken = []
        for path in self.source.ready():
            raw = path.read_bytes()
            self.source.remove(path)
            self.carried[path.name] = raw
            taken.append((path.name, raw))
        return taken

    def carry(self, *, drop: Callable[[str], bool] = lambda name: False, reverse: bool = False) -> list[str]:
        files = [(name, raw) for name, raw in self.take() if not drop(name)]
        for name, raw in reversed(files) if reverse else files:
            deliver(self.target, name, raw)
        return [name for name, _ in files]

    def replay(self, name: str, raw: bytes | None = None) -> None:
        deliver(self.target, name, self.carried[name] if raw is None else raw)


def seq_of(name: str) -> int:
    """The seq in a batch file's name (`{channel}_{seq:010d}_{digest8}.ferry`); 0 for a signal."""
    return 0 if "_sig_" in name else int(name.split("_")[-2])


@dataclass
class Side:
    station: Station
    applied: list[tuple[int, str]] = field(default_factory=list)  # (seq, entry id), in the order applied

    def apply(self, batch: Batch, entry: Entry) -> None:
        self.applied.append((batch.seq, entry.id))

    def receive(self) -> ReceiveReport:
        return self.station.receive(self.apply)


@dataclass
class Link:
    near: Side
    far: Side
    down: Mover  # near's outgoing -> far's incoming
    up: Mover
    clock: Clock
    keys: Keys

    def send(self, count: int = 1, per_batch: int = 2) -> list[list[str]]:
        """`count` batches of messages from the near side; their entry ids, batch by batch."""
        sent = []
        for _ in range(count):
            entries = [message() for _ in range(per_batch)]
            self.near.station.send(entries, operation_of={e.id: "submit_case" for e in entries})
            sent.append([e.id for e in entries])
        return sent


def message(key: str | None = None) -> Entry:
    body = json.dumps({"operation": "submit_case", "message": {"case_no": "C1"}}).encode()
    return Entry(id=uuid.uuid4().hex, type="message", body=body, key=key or uuid.uuid4().hex)


def make_station(engine: Engine, tables: FerryTables, root: Path, clock: Clock, *, near: bool, credentials: Keys,
                 **options: object) -> Station:
    own, peer = (credentials.near, credentials.far) if near else (credentials.far, credentials.near)
    side = "near" if near else "far"
    config = StationConfig(name="gateway" if near else "ps-agent", send_channel=DOWN if near else UP,
                           receive_channel=UP if near else DOWN, outgoing=LinkFolder(root / f"{side}-out"),
                           incoming=LinkFolder(root / f"{side}-in"),
                           resend_after=timedelta(minutes=5), beacon_every=timedelta(minutes=1))
    ferry_keys = FerryKeys(own=own, peer=[trust_only(peer)])
    return Station(engine, tables, replace(config, **options), lambda: ferry_keys, clock)  # type: ignore[arg-type]


@pytest.fixture
def make_link(engine: Engine, tables: FerryTables, tmp_path: Path, keys: Keys) -> Callable[..., Link]:
    def make(*, rsa: bool = False, **options: object) -> Link:
        clock, chosen = Clock(), replace(keys, far=keys.far_rsa) if rsa else keys
        near = make_station(engine, tables, tmp_path, clock, near=True, credentials=chosen, **options)
        far = make_station(engine, tables, tmp_path, clock, near=False, credentials=chosen, **options)
        return Link(Side(near), Side(far), Mover(near.config.outgoing, far.config.incoming.path),
                    Mover(far.config.outgoing, near.config.incoming.path), clock, chosen)
    return make


@pytest.fixture
def link(make_link: Callable[..., Link]) -> Link:
    return make_link()


def ids(applied: list[tuple[int, str]]) -> list[str]:
    return [entry_id for _, entry_id in applied]


# --------------------------------------------------------------------------------------------- exactly once


def test_every_entry_is_applied_once_under_duplicates_and_reordering(link: Link) -> None:
    sent = link.send(4)
    files = link.down.take()
    for name, raw in files[2:]:  # 3 and 4 overtake 1 and 2
        deliver(link.far.station.config.incoming.path, name, raw)
    early = link.far.receive()
    assert (early.applied_batches, early.gaps_named) == (2, 1)
    assert [(g.seq_from, g.seq_to) for g in link.far.station.gaps()] == [(1, 2)]
    assert link.far.station.status()[1].applied_seq == 0  # nothing below 3 yet: not all applied up to it

    for name, raw in [files[1], files[0], files[3]]:  # the late ones, and 4 again (delivered twice)
        deliver(link.far.station.config.incoming.path, name, raw)
    late = link.far.receive()
    assert (late.applied_batches, late.duplicate_batches, late.gaps_named) == (2, 1, 0)
    assert sorted(ids(link.far.applied)) == sorted(sum(sent, []))  # every entry, each once
    assert [seq for seq, _ in link.far.applied] == [3, 3, 4, 4, 1, 1, 2, 2]  # as they came: a gap blocks nothing
    assert not link.far.station.gaps() and link.far.station.status()[1].applied_seq == 4

    # The far side's receipts (cumulative: every pass that met a batch says all it applied) acknowledge all.
    link.up.carry()
    link.near.receive()
    assert link.near.station.status()[0].unacked == 0


def test_an_entry_applied_before_a_failure_is_not_applied_again(link: Link) -> None:
    link.send(1, per_batch=3)
    link.down.carry()
    calls: list[str] = []

    def flaky(batch: Batch, entry: Entry) -> None:
        calls.append(entry.id)
        if len(calls) == 2:
            raise RuntimeError("the sector's database went away")

    report = link.far.station.receive(flaky)
    assert (report.failed, report.applied_batches) == (1, 0)
    assert link.far.station.config.incoming.ready(), "the batch stays for the next pass"
    retried = link.far.receive()
    assert (retried.applied_batches, retried.duplicate_entries, retried.applied_entries) == (1, 1, 2)
    assert ids(link.far.applied)[0] == calls[1] and calls[0] not in ids(link.far.applied)  # once, by the first pass


def test_an_entry_id_met_again_is_skipped_until_keep_keys_has_passed(link: Link, tables: FerryTables,
                                                                      engine: Engine, keys: Keys) -> None:
    [[first, _]] = link.send(1)
    link.down.carry()
    link.far.receive()
    ch = tables.channels
    with engine.connect() as conn:
        previous = conn.execute(select(ch.c.sent_digest).where(ch.c.channel == DOWN)).scalar_one()
    again = Entry(id=first, type="message", body=b"{}", key="k")  # the same message id in a later batch
    near_keys = FerryKeys(own=keys.near, peer=[trust_only(keys.far)])
    for seq in (2, 3):
        data, previous = seal(channel=DOWN, seq=seq, previous=previous, entries=[again], keys=near_keys,
                              sender="gateway", now=link.clock.now)
        deliver(link.far.station.config.incoming.path, f"crafted_{seq}.ferry", data)
        report = link.far.receive()
        assert report.applied_batches == 1 and report.duplicate_entries == (1 if seq == 2 else 0)
        link.clock.advance(days=31)  # past keep_keys: the id is forgotten (batch seqs never are)
    assert ids(link.far.applied).count(first) == 2


def test_the_negative_control_applies_a_duplicated_batch_twice(make_link: Callable[..., Link]) -> None:
    link = make_link(suppress_duplicates=False)
    sent = link.send(1)
    [name] = link.down.carry()
    link.far.receive()
    link.down.replay(name)
    link.far.receive()
    assert ids(link.far.applied) == sent[0] * 2


# --------------------------------------------------------------------------------------------- gaps, resends


def test_two_way_a_dropped_batch_is_named_and_resent_when_unreceipted(make_link: Callable[..., Link]) -> None:
    link = make_link(rsa=True)
    sent = link.send(3)
    link.down.carry(drop=lambda name: seq_of(name) == 2)
    report = link.far.receive()
    assert report.gaps_named == 1
    assert [(g.seq_from, g.seq_to) for g in link.far.station.gaps()] == [(2, 2)]
    link.up.carry()
    link.near.receive()  # the receipt: 1 and 3
    near_send = link.near.station.status()[0]
    assert (near_send.unacked, near_send.lag) == (1, 2)

    assert link.near.station.resend_due() == 0, "not due before resend_after"
    link.clock.advance(minutes=5)
    assert link.near.station.resend_due() == 1
    link.down.carry()
    link.far.receive()
    assert sorted(ids(link.far.applied)) == sorted(sum(sent, []))
    assert not link.far.station.gaps()
    [filled] = link.far.station.gaps(include_filled=True)
    assert filled.filled_at == link.clock.now
    far_receive = link.far.station.status()[1]
    assert (far_receive.applied_seq, far_receive.lag, far_receive.gaps) == (3, 0, 0)
    link.up.carry()
    link.near.receive()
    assert link.near.station.status()[0].unacked == 0
    link.clock.advance(minutes=10)
    assert link.near.station.resend_due() == 0
    link.send(1)  # the link has not taken it yet: however long it waits, it is not written again
    link.clock.advance(minutes=10)
    assert link.near.station.resend_due() == 0
    link.down.carry()
    link.far.receive()
    link.up.carry()
    link.near.receive()
    link.clock.advance(days=31)  # past keep_keys: acknowledged batches are no longer kept
    assert (link.near.station.resend_due(), link.near.station.resend(1, 4)) == (0, 0)


def test_one_way_a_beacon_names_what_never_arrived_and_an_operator_resends_it(
        make_link: Callable[..., Link]) -> None:
    link = make_link(mode="one_way")
    sent = link.send(3)
    link.down.carry(drop=lambda name: seq_of(name) == 3)
    assert link.far.receive().gaps_named == 0  # nothing after seq 3 shows it is missing: only a beacon can
    assert not link.far.station.config.outgoing.ready(), "no receipts on a one-way link"

    assert link.near.station.beacon_due() is True
    assert link.near.station.beacon_due() is False  # not again before beacon_every
    link.down.carry()
    assert link.far.receive().gaps_named == 1
    assert [(g.seq_from, g.seq_to) for g in link.far.station.gaps()] == [(3, 3)]
    status = link.far.station.status()[1]
    assert (status.peer_seq, status.lag, status.gaps) == (3, 1, 1)
    assert link.near.station.resend_due() == 0  # one-way: nothing resent by itself

    assert link.near.station.resend(3, 3) == 1
    link.down.carry()
    link.far.receive()
    assert sorted(ids(link.far.applied)) == sorted(sum(sent, []))
    assert not link.far.station.gaps()
    link.clock.advance(minutes=1)
    assert link.near.station.beacon_due() is True


# --------------------------------------------------------------------------------------------- refused files


def test_truncated_corrupt_wrong_key_forged_and_unchained_files_are_quarantined(
        make_link: Callable[..., Link]) -> None:
    link = make_link(rsa=True)
    keys = link.keys
    link.send(1)
    [first] = link.down.carry()
    link.far.receive()
    link.send(1)
    [(second, raw)] = link.down.take()
    corrupt = bytearray(raw)
    corrupt[-1] ^= 0xFF  # the payload's last byte
    link.down.replay(second, raw[:-10])
    assert link.far.receive().quarantined == 1
    link.down.replay(second, bytes(corrupt))
    link.far.receive()

    def sealed(seq: int, previous: str, own: Credential) -> bytes:
        data, _ = seal(channel=DOWN, seq=seq, previous=previous, entries=[message()], sender="gateway",
                       keys=FerryKeys(own=own, peer=[trust_only(keys.far)]), now=link.clock.now)
        return data

    deliver(link.far.station.config.incoming.path, "intruder_2.ferry", sealed(2, "a" * 64, keys.intruder))
    deliver(link.far.station.config.incoming.path, "forged_1.ferry", sealed(1, "", keys.near))
    deliver(link.far.station.config.incoming.path, "unchained_2.ferry", sealed(2, "b" * 64, keys.near))
    with capture_logs() as logs:
        link.far.receive()
    assert [(e["log_level"], e["file"], e["code"]) for e in logs if e["event"] == "ferry_quarantined"] == [
        ("warning", "forged_1.ferry", "forged"), ("warning", "intruder_2.ferry", "unknown_signer"),
        ("warning", "unchained_2.ferry", "broken_chain")]  # the alert: log and ferry_quarantine rows

    assert [(q.file, q.code) for q in reversed(link.far.station.quarantined())] == [
        (second, "truncated"), (second, "digest_mismatch"), ("forged_1.ferry", "forged"),
        ("intruder_2.ferry", "unknown_signer"), ("unchained_2.ferry", "broken_chain")]
    quarantine = link.far.station.config.incoming.quarantine_path
    assert (quarantine / "forged_1.ferry").exists() and (quarantine / "forged_1.ferry.reason.json").exists()
    assert link.far.station.status()[1].quarantined == 5
    assert len(link.far.applied) == 2, "only the first batch was applied"
    assert first not in [p.name for p in link.far.station.config.incoming.ready()]

    # The genuine seq 2 still goes through: the refused copies took nothing from it.
    link.near.station.resend(2, 2)
    link.down.carry()
    assert link.far.receive().applied_batches == 1


def test_a_replayed_old_batch_and_a_replayed_signal_are_refused(link: Link) -> None:
    link.send(2)
    names = link.down.carry()
    link.far.receive()
    [receipt] = link.up.carry()
    link.near.receive()
    link.send(1)
    link.down.carry()
    link.far.receive()
    link.up.carry()
    link.near.receive()

    link.down.replay(names[0])  # an attacker (or a confused link) plays yesterday's batch again
    link.up.replay(receipt)  # and the first receipt: its counter is below the last one taken
    far, near = link.far.receive(), link.near.receive()
    assert (far.duplicate_batches, far.applied_entries) == (1, 0)
    assert (near.replayed_signals, near.signals) == (1, 0)
    assert len(link.far.applied) == 6
    # shown: each side's status counts what it met again (operators read it in `yiwang ferry status`, the API
    # and `yiwang_ferry_met_again_total`)
    far_in, near_in = link.far.station.status()[1], link.near.station.status()[1]
    assert (far_in.duplicates, far_in.replayed_signals) == (1, 0)
    assert (near_in.duplicates, near_in.replayed_signals) == (0, 1)


def test_entries_that_cannot_go_change_nothing_and_a_full_folder_loses_nothing(
        link: Link, monkeypatch: pytest.MonkeyPatch) -> None:
    near = link.near.station
    entry = message()
    near.send([entry])
    with pytest.raises(ValueError, match="sent before"):
        near.send([message(), entry])
    with pytest.raises(BatchRefused) as refused:
        near.send([Entry(id="big", type="message", body=b"x" * (near.config.limits.message_bytes + 1))])
    assert refused.value.code == "too_large"
    assert (near.status()[0].last_seq, len(near.config.outgoing.ready())) == (1, 1)  # no seq used

    def full(name: str, data: bytes) -> Path:
        raise FolderFull(errno.ENOSPC, "the link folder is full")

    monkeypatch.setattr(near.config.outgoing, "write", full)
    assert near.send([message()]) == 2  # recorded: it is sent, the file follows
    monkeypatch.undo()
    assert near.status()[0].unwritten == 1
    assert near.resend_due() == 1 and near.status()[0].unwritten == 0
    link.down.carry()
    assert link.far.receive().applied_batches == 2


# --------------------------------------------------------------------------------------------- concurrency


def send_from_a_process(db_url: str, root: Path, keys: Keys, sent: multiprocessing.Queue[int]) -> None:
    """A process of its own (forked): its own plain engine (on SQLite no BEGIN IMMEDIATE, as an agent's may
    be) and station, two threads sending three batches each."""
    engine = create_engine(db_url, connect_args={"timeout": 30} if db_url.startswith("sqlite") else {})
    station = make_station(engine, ferry_tables(MetaData()), root, Clock(), near=True, credentials=keys)

    def send() -> None:
        for _ in range(3):
            sent.put(station.send([message()]))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    engine.dispose()


def test_two_processes_sending_at_once_get_distinct_contiguous_seqs(
        engine: Engine, db_url: str, tables: FerryTables, tmp_path: Path, keys: Keys) -> None:
    context = multiprocessing.get_context("fork")
    sent: multiprocessing.Queue[int] = context.Queue()
    senders = [context.Process(target=send_from_a_process, args=(db_url, tmp_path, keys, sent)) for _ in range(2)]
    for process in senders:
        process.start()
    seqs = sorted(sent.get(timeout=30) for _ in range(12))
    for process in senders:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert seqs == list(range(1, 13))

    far = make_station(engine, tables, tmp_path, Clock(), near=False, credentials=keys)
    mover = Mover(LinkFolder(tmp_path / "near-out"), far.config.incoming.path)
    mover.carry()
    report = far.receive(lambda batch, entry: None)
    assert (report.applied_batches, report.quarantined) == (12, 0), "each batch chained to the one before"
    assert far.status()[1].applied_seq == 12


# --------------------------------------------------------------------------------------------- crashes


class Died(BaseException):
    """The process dying at a crash point: `os.kill` made to raise this (the real SIGKILL: the last test)."""


@pytest.fixture
def dying(monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None], None]:
    """`dying("before_rename")`: the next pass through that crash point "kills the process"; `dying(None)`:
    the process restarted, no crash point named."""
    def kill(pid: int, signum: int) -> None:
        raise Died(signum)

    monkeypatch.setattr(os, "kill", kill)

    def at(point: str | None) -> None:
        if point is None:
            monkeypatch.delenv(CRASH_AT_ENV)
        else:
            monkeypatch.setenv(CRASH_AT_ENV, point)
    return at


def test_a_batch_recorded_but_never_written_is_written_by_the_next_pass(
        link: Link, dying: Callable[[str | None], None]) -> None:
    outgoing = link.near.station.config.outgoing
    dying("before_rename")
    with pytest.raises(Died):
        link.send(1)
    dying(None)
    assert not outgoing.ready() and link.near.station.status()[0].unwritten == 1

    sent = link.send(1)  # the next send writes its own batch and the one before
    assert sorted(seq_of(p.name) for p in outgoing.ready()) == [1, 2]
    assert link.near.station.status()[0].unwritten == 0
    link.down.carry()
    link.far.receive()
    assert len(link.far.applied) == 4 and ids(link.far.applied)[2:] == sent[0]
    with pytest.raises(Died):
        dying("before_rename")
        link.send(1)
    dying(None)
    assert link.near.station.rewrite_unwritten() == 1  # at start-up


@pytest.mark.parametrize("point", ["after_read", "after_apply"])
def test_a_crash_while_receiving_loses_nothing(link: Link, dying: Callable[[str | None], None], point: str) -> None:
    """after_read: nothing applied, the batch applied on the next pass. after_apply: applied, not recorded:
    applied again on the next pass (the sector's idempotency key absorbs it), then recorded once."""
    sent = link.send(1)
    link.down.carry()
    dying(point)
    with pytest.raises(Died):
        link.far.receive()
    dying(None)
    assert ids(link.far.applied) == ([] if point == "after_read" else sent[0])
    assert link.far.receive().applied_batches == 1
    assert ids(link.far.applied) == sent[0] * (1 if point == "after_read" else 2)
    assert link.far.station.status()[1].applied_seq == 1
    link.down.replay(next(iter(link.down.carried)))
    assert link.far.receive().duplicate_batches == 1


def test_a_crash_point_kills_the_process_only_when_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_AT_ENV, "after_apply")
    crash_point("before_rename")  # not the one named: nothing happens
    child = multiprocessing.get_context("fork").Process(target=crash_point, args=("after_apply",))
    child.start()
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL


def test_an_answer_lands_on_its_message_once(link: Link, tables: FerryTables, engine: Engine) -> None:
    entry = message(key="C1:T1:submit_case")
    link.near.station.send([entry], operation_of={entry.id: "submit_case"})
    assert link.near.station.message_state("C1:T1:submit_case", "submit_case").state == "sent"  # type: ignore[union-attr]
    answer = {"message": entry.id, "key": entry.key, "operation": "submit_case", "outcome": "ok",
              "result": {"status": "accepted"}, "error": None}
    reply = Entry(id=uuid.uuid4().hex, type="answer", body=json.dumps(answer).encode(), key=entry.key)
    assert link.near.station.record_answer(reply) is True
    late = Entry(id=uuid.uuid4().hex, type="answer", body=json.dumps({**answer, "outcome": "failed"}).encode())
    assert link.near.station.record_answer(late) is False  # the first answer stands
    state = link.near.station.message_state("C1:T1:submit_case", "submit_case")
    assert state is not None and (state.state, state.answer, state.consumed_at) == ("answered", answer, None)
    link.near.station.consume(entry.id)
    state = link.near.station.message_state("C1:T1:submit_case", "submit_case")
    assert state is not None and state.consumed_at == link.clock.now
    with pytest.raises(ValueError):
        link.near.station.record_answer(Entry(id="x", type="answer", body=b"not json"))
    m = tables.messages  # what it keeps of a message: never its body (personal data stays in the sealed batch)
    with engine.connect() as conn:
        assert "body" not in m.c and conn.execute(select(m.c.key)).scalars().all() == ["C1:T1:submit_case"]
