"""A ferry link made of two real `Station`s on one database (the tables are keyed by channel, so the near and
the far side can share it in a test), SM2 keys both ways, and a hand that carries files across dropping what
it is told to: channel state for the operators' API, CLI and metrics to read, made the way a running link
makes it. The near side is named as the gateway names it (`NearLink`: sector and station)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, MetaData, inspect

from adapters.kinds.ferry.batch import Batch, Entry, FerryKeys
from adapters.kinds.ferry.folders import LinkFolder
from adapters.kinds.ferry.station import ReceiveReport, Station, StationConfig
from adapters.kinds.ferry.tables import FerryTables, ferry_tables
from certstore import Credential
from gateway.bootstrap.ferry_links import NearLink
from tests.support.pki import sm2_credential

LINK = "public_security"
DOWN, UP = f"{LINK}.down", f"{LINK}.up"
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


class FerryClock:
    """The stations' clock, moved by the test."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def tables_in(engine: Engine) -> FerryTables:
    """The ferry tables on `engine`'s database, as the gateway declares them."""
    return ferry_tables(MetaData())


@contextmanager
def ferry_tables_made(engine: Engine) -> Iterator[None]:
    """The ferry tables in the database while the block runs, if the migrations did not make them: dropped
    afterwards, so the test database's schema is again the migrations' own (conftest's PostgresSchema)."""
    metadata = MetaData()
    ferry_tables(metadata)
    made = not inspect(engine).has_table("ferry_channels")
    if made:
        metadata.create_all(engine)
    try:
        yield
    finally:
        if made:
            metadata.drop_all(engine)


@dataclass
class TestLink:
    """Both sides of one link and the folders between them."""

    __test__ = False
    near: Station
    far: Station
    root: Path
    clock: FerryClock

    @property
    def near_link(self) -> NearLink:
        return NearLink(self.near.config.send_channel.rsplit(".", 1)[0], self.near)

    def send_down(self, count: int) -> None:
        for _ in range(count):
            self.near.send([_message()], operation_of=None)

    def send_up(self, count: int) -> None:
        for _ in range(count):
            self.far.send([_answer()])

    def carry(self, source: Station, target: Station, drop: tuple[int, ...] = ()) -> list[str]:
        """Every ready file from `source`'s outgoing folder into `target`'s incoming one, but those whose seq is
        in `drop` (lost on the way); the names carried."""
        carried = []
        for path in source.config.outgoing.ready():
            data = path.read_bytes()
            source.config.outgoing.remove(path)
            if _seq_of(path.name) in drop:
                continue
            target.config.incoming.write(path.name, data)
            carried.append(path.name)
        return carried

    def received_by_near(self) -> ReceiveReport:
        return self.near.receive(_ignore)

    def received_by_far(self) -> ReceiveReport:
        return self.far.receive(_ignore)

    def forged_into_near(self) -> None:
        """A file no key signed, dropped into the gateway's incoming folder: quarantined when read."""
        self.near.config.incoming.write(f"{self.near.config.receive_channel}_0000000099_deadbeef.ferry",
                                        b"not a batch at all")


def make_link(engine: Engine, root: Path, clock: FerryClock | None = None, *, link: str = LINK,
              mode: str = "one_way", resend_after: timedelta = timedelta(minutes=5),
              beacon_every: timedelta = timedelta(minutes=1)) -> TestLink:
    """The link `link` (the sector of the same name), its folders under `root`."""
    tables, clock = tables_in(engine), clock or FerryClock()  # made by `ferry_tables_made`
    near_pem, far_pem = sm2_credential("yiwang-ferry"), sm2_credential("public_security-ferry")
    near_own, far_own = Credential("yiwang-ferry", *near_pem), Credential("public_security-ferry", *far_pem)
    near_keys = FerryKeys(own=near_own, peer=[Credential(far_own.name, far_own.certificate_pem)])
    far_keys = FerryKeys(own=far_own, peer=[Credential(near_own.name, near_own.certificate_pem)])

    def station(name: str, send: str, receive: str, keys: FerryKeys, out: str, into: str) -> Station:
        config = StationConfig(name=name, send_channel=send, receive_channel=receive,
                               outgoing=LinkFolder(root / out), incoming=LinkFolder(root / into), mode=mode,
                               resend_after=resend_after, beacon_every=beacon_every)
        return Station(engine, tables, config, lambda: keys, clock)

    down, up = f"{link}.down", f"{link}.up"
    return TestLink(station("gateway", down, up, near_keys, f"{link}/outgoing", f"{link}/incoming"),
                    station(f"{link}-agent", up, down, far_keys, f"{link}-agent/outgoing", f"{link}-agent/incoming"),
                    root, clock)


def _message() -> Entry:
    body = json.dumps({"operation": "submit_case", "message": {"case_no": "C1"}}).encode()
    return Entry(id=uuid.uuid4().hex, type="message", body=body, key=uuid.uuid4().hex)


def _answer() -> Entry:
    body = json.dumps({"message": uuid.uuid4().hex, "outcome": "ok", "result": None, "error": None}).encode()
    return Entry(id=uuid.uuid4().hex, type="decision", body=body)


def _seq_of(name: str) -> int:
    """The seq in a batch file's name (`{channel}_{seq:010d}_{digest8}`); 0 for a signal."""
    return 0 if "_sig_" in name else int(name.split("_")[-2])


def _ignore(batch: Batch, entry: Entry) -> None:
    """The entries' effect is not what these tests look at."""


