"""Ferry links for the operators' tests, made by real `Station`s the way a running link makes its state.

- `make_link`: a link of two stations on one database (the gateway's, whose migration made the ferry tables;
  they are keyed by channel, so the near and the far side can share them in a test), SM2 keys both ways, and a
  hand that carries files across dropping what it is told to. The near side is named as the gateway names it
  (`LinkStation`: sector and station).
- `ferry_sector`: a gateway's own link — the civil affairs ferry bundle active, its keys in the store — with the
  agent played by a station reading and writing the gateway's link folders (`FarAgent`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from adapters.kinds.ferry.batch import Batch, Entry, FerryKeys
from adapters.kinds.ferry.folders import LinkFolder
from adapters.kinds.ferry.station import ReceiveReport, Station, StationConfig
from adapters.registry import default_bundles_dir
from certstore import Credential
from gateway.bootstrap.app import Gateway, create_app
from gateway.bootstrap.ferry_links import LinkStation, StationLinks
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from gateway.persistence.ferry_tables import FERRY_TABLES
from gateway.sectors.bundle_records import pack_folder
from tests.support.gateways import Keys
from tests.support.overview import replace_parts
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


@dataclass
class LinkClock:
    """The gateway reads the stations' clock: ages are what the test moved it by."""

    stations: FerryClock

    def now(self) -> datetime:
        return self.stations()


@dataclass
class TestLink:
    """Both sides of one link and the folders between them."""

    __test__ = False
    near: Station
    far: Station
    root: Path
    clock: FerryClock

    @property
    def link_station(self) -> LinkStation:
        return LinkStation(self.near.config.send_channel.rsplit(".", 1)[0], self.near)

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
    tables, clock = FERRY_TABLES, clock or FerryClock()
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


def troubled(link: TestLink) -> None:
    """A link in trouble: 3 batches sent down; 4 sent up of which the 2nd was lost (a gap), a beacon after two
    minutes, and a file no key signed (quarantined); the clock 30 s on."""
    link.send_down(3)
    link.carry(link.near, link.far)
    link.received_by_far()
    link.send_up(4)
    link.carry(link.far, link.near, drop=(2,))
    link.received_by_near()
    link.clock.advance(minutes=2)
    link.far.beacon_due()
    link.carry(link.far, link.near)
    link.forged_into_near()
    link.received_by_near()
    link.clock.advance(seconds=30)


def watching(gateway: Gateway, link: TestLink) -> Gateway:
    """The gateway with `link` as its one ferry link (its operators' API, console and overview read it)."""
    channels = StationLinks(gateway.engine, FERRY_TABLES, lambda: [link.link_station])
    return replace(gateway, ferry_channels=channels, overview=replace_parts(gateway.overview, ferry=channels))


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




# --------------------------------------------------------------------------- a gateway with a sector behind a gap

FERRY_BUNDLE = default_bundles_dir() / "upgrades" / "civil_affairs_ferry"  # two-way, .txt files, text wrapper
FERRY_SECTOR = "civil_affairs"
ALLOWANCE = "11150203MB0C0004054000113003000"  # 困难残疾人两项补贴: the civil affairs bureau decides


@dataclass
class FarAgent:
    """The agent's side of the gateway's link, played by a station of the test's: it reads the gateway's
    outgoing folder and writes into its incoming one (no isolation gateway between them)."""

    station: Station
    messages: list[dict[str, Any]] = field(default_factory=list)  # every `message` entry's body, with its id

    def take(self) -> ReceiveReport:
        def keep(batch: Batch, entry: Entry) -> None:
            if entry.type == "message":
                self.messages.append({"id": entry.id, "key": entry.key, **json.loads(entry.body)})

        return self.station.receive(keep)

    def answer_latest(self, result: dict[str, Any]) -> None:
        """An `ok` answer to the latest message taken (the spec's "Answers"), sent up."""
        latest = self.messages[-1]
        body = {"message": latest["id"], "key": latest["key"], "operation": latest["operation"], "outcome": "ok",
                "result": result, "error": None}
        self.station.send([Entry(id=uuid.uuid4().hex, type="answer", key=latest["key"],
                                 body=json.dumps(body).encode())])


def ferry_sector(gateway: Gateway) -> FarAgent:
    """The civil affairs bureau behind a gap on `gateway`: the ferry bundle active, the gateway's SM2 key and the
    agent's certificate in its store, and the agent played by a station on the gateway's database."""
    near_pem, far_pem = sm2_credential("yiwang-ferry"), sm2_credential("civil_affairs-ferry")
    gateway.certs.import_pem("yiwang-ferry", *near_pem, actor="test")
    gateway.certs.import_pem("civil_affairs-ferry", far_pem[0], actor="test")
    version = gateway.bundles.register(pack_folder(FERRY_BUNDLE), "test").version
    gateway.bundles.activate(FERRY_SECTOR, version, "test", force=True)
    near = gateway.ferry.station(gateway.registry.get(FERRY_SECTOR).bundle).config
    keys = FerryKeys(own=Credential("civil_affairs-ferry", *far_pem),
                     peer=[Credential("yiwang-ferry", near_pem[0])])
    config = StationConfig(name="civil_affairs-agent", send_channel=near.receive_channel,
                           receive_channel=near.send_channel, outgoing=near.incoming, incoming=near.outgoing)
    return FarAgent(Station(gateway.engine, FERRY_TABLES, config, lambda: keys, gateway.service.clock.now))


def allowance_case(gateway: Gateway) -> str:
    """A case for the civil affairs bureau, submitted at a window: its case number."""
    body = {"matter_code": ALLOWANCE, "channel": "city_window",
            "applicant": {"name": "王建国", "id_number": "150203198503120039", "phone": "13847100001"},
            "materials": [{"name": "居民身份证"}, {"name": "残疾人证"}],
            "form": {"family_size": 2, "monthly_income": "900.00"}}
    with TestClient(create_app(gateway), headers=Keys.of(gateway, Role.WINDOW)) as window:
        answer = window.post("/v1/cases", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_no"])


def submission(gateway: Gateway, case_no: str) -> Any:
    """The case's submit_case outbox message."""
    with gateway.engine.connect() as conn:
        return conn.execute(select(t.outbox).where(t.outbox.c.case_no == case_no,
                                                   t.outbox.c.operation == "submit_case")).one()


def waiting_for_answer(gateway: Gateway, case_no: str) -> bool:
    """Whether the case's submission went across and waits for its answer (due again later, still pending)."""
    row = submission(gateway, case_no)
    return bool(row.status == "pending" and row.available_at.replace(tzinfo=UTC) > gateway.service.clock.now())
