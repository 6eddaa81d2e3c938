"""Keys across the gap: a batch signed with the wrong key, with an expired key, a replayed old batch, a forged
one — each refused and shown; nothing of theirs reaches the sector.

Each hostile file is put where the near side's station puts its batches, so it crosses the link process like any
other; the far side's station (on a loop of its own) meets it. "Shown" is what an operator reads: a
`ferry_quarantine` row with its code, the file kept in the quarantine folder beside its reason, the channel
status's quarantined count — or, for a replay of what was applied, the duplicate counted, never applied again.
Each on one database, the two in turn (the refusals are the format's and the station's, the same on both).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from adapters.ferry_state import ferry_tables
from adapters.kinds.ferry.batch import FerryKeys, seal
from adapters.kinds.ferry.folders import LinkFolder, Naming
from adapters.kinds.ferry.station import Station
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from certstore import Credential
from tests.support.ferry_deployment import SECTOR as FERRY_SECTOR
from tests.support.ferry_deployment import FerryDeployment
from tests.support.ferry_pairs import CHANNEL, StationPair, wait_until
from tests.support.ferry_side import message_entry, side_engine
from tests.support.pki import sm2_credential

pytestmark = [pytest.mark.slow, pytest.mark.timeout(30)]

DOWN = f"{CHANNEL}.down"


def credential(name: str, days: float = 30, *, since_days: float = 0) -> Credential:
    """An SM2 key pair; `since_days`: its validity began that long ago (with `days`, maybe already over)."""
    cert, key = sm2_credential(name, days, now=datetime.now(UTC) - timedelta(days=since_days))
    return Credential(name, cert, key)


def far_certificate(pair: StationPair) -> Credential:
    return Credential("agent", Path(pair.far_spec.own_cert).read_bytes())


def previous_of(seq: int) -> str:
    """What a smuggled batch names as its predecessor (the chain is not what refuses it here)."""
    return "" if seq == 1 else "0" * 64


def smuggle(pair: StationPair, signer: Credential, seq: int) -> str:
    """A batch carrying one message, sealed to the far side by `signer`, dropped where the near side's batches
    go (the link carries it); its file name."""
    data, digest = seal(channel=DOWN, seq=seq, previous=previous_of(seq), entries=[message_entry(f"smuggled-{seq}")],
                        keys=FerryKeys(own=signer, peer=[far_certificate(pair)]), sender="gateway",
                        now=datetime.now(UTC))
    outgoing = LinkFolder(Path(pair.near_spec.outgoing))
    name = outgoing.name_for(DOWN, seq, digest)
    outgoing.write(name, data)
    return name


def quarantined(pair: StationPair) -> dict[str, str]:
    """The far side's quarantine rows: file -> code."""
    tables = ferry_tables(MetaData())
    engine = side_engine(pair.far_spec.database_url)
    try:
        with engine.connect() as conn:
            return {row.file: row.code for row in conn.execute(select(tables.quarantine))}
    finally:
        engine.dispose()


def far_station(pair: StationPair) -> Station:
    return pair.loop_of("far").loop.station


def assert_shown(pair: StationPair, name: str, code: str) -> None:
    wait_until(lambda: name in quarantined(pair), 10, f"{name} quarantined")
    assert quarantined(pair)[name] == code
    reason = json.loads((Path(pair.far_spec.incoming) / "quarantine" / f"{name}.reason.json").read_text())
    assert reason["code"] == code and reason["reason"]
    receiving = next(s for s in far_station(pair).status() if s.direction == "receive")
    assert receiving.quarantined >= 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_batch_signed_with_a_key_the_far_side_does_not_trust_is_refused_and_shown(
    db_url: str, tmp_path: Path
) -> None:
    with StationPair(tmp_path, db_url) as pair:
        pair.start()
        pair.send(1)
        pair.wait_answered()
        intruder = credential("intruder")
        assert_shown(pair, smuggle(pair, intruder, 2), "unknown_signer")
        # The same intruder claiming the near side's certificate: the signature does not verify with it.
        near = Credential("gateway", Path(pair.near_spec.own_cert).read_bytes())
        data, _ = seal(channel=DOWN, seq=2, previous=previous_of(2), entries=[message_entry("smuggled-claim")],
                            keys=FerryKeys(own=intruder, peer=[far_certificate(pair)]), sender="gateway",
                            now=datetime.now(UTC))
        claimed = data.replace(intruder.fingerprint.encode(), near.fingerprint.encode())
        outgoing = LinkFolder(Path(pair.near_spec.outgoing))
        name = outgoing.name_for(DOWN, 2, uuid.uuid4().hex)
        outgoing.write(name, claimed)
        assert_shown(pair, name, "bad_signature")
        pair.send(1)  # seq 2, the real one: the refused files took nothing from the channel
        pair.wait_answered()
        report = pair.ledger()
        assert report.ok, report  # the smuggled messages never reached the sector


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_batch_signed_with_an_expired_key_is_refused_beyond_the_stated_tolerance_only(
    db_url: str, tmp_path: Path
) -> None:
    expired = credential("gateway-old", days=5, since_days=10)  # ended five days ago
    lately = credential("gateway-late", days=1.9, since_days=2)  # ended hours ago: inside the 24 h tolerance
    with StationPair(tmp_path, db_url) as pair:
        for old in (expired, lately):
            cert = tmp_path / f"{old.name}.pem"
            cert.write_bytes(old.certificate_pem)
            pair.far_spec.peer_certs.append(str(cert))  # trusted, as a rotated-out key stays trusted a while
        pair.start()
        name = smuggle(pair, expired, 1)
        assert_shown(pair, name, "expired_key")
        smuggle(pair, lately, 1)  # a drifting clock is not an expired key
        wait_until(lambda: pair.sector_record.exists(), 10, "the batch signed within the tolerance applied")
        assert pair.sector_record.read_text().count("smuggled-1") == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_replayed_old_batch_is_not_applied_again_and_a_forged_one_under_its_seq_is_quarantined(
    db_url: str, tmp_path: Path
) -> None:
    with StationPair(tmp_path, db_url, resend_after_ms=10_000) as pair:  # no resend of ours meets it as a duplicate
        pair.start()
        pair.send(3)
        pair.wait_answered()
        tables = ferry_tables(MetaData())
        engine = side_engine(db_url)
        with engine.connect() as conn:
            first = conn.execute(select(tables.sent.c.file, tables.sent.c.data)
                                 .where(tables.sent.c.channel == DOWN, tables.sent.c.seq == 1)).one()
        engine.dispose()
        far = pair.loop_of("far").loop
        before = far.received.duplicate_batches
        LinkFolder(Path(pair.near_spec.outgoing)).write(first.file, first.data)  # an old file, replayed
        wait_until(lambda: far.received.duplicate_batches > before, 10, "the replay met and counted")
        # Seq 1 again with other content, validly signed (a stolen key, a confused sender): forged, not applied.
        own = Credential("gateway", Path(pair.near_spec.own_cert).read_bytes(),
                         Path(pair.near_spec.own_key).read_bytes())
        assert_shown(pair, smuggle(pair, own, 1), "forged")
        report = pair.ledger()
        assert report.ok, report
        assert report.submits_received == 3 and report.duplicate_submits == 0


# --------------------------------------------------------------------------- the whole way


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_across_the_whole_way_forged_and_replayed_batches_are_refused_and_shown_to_each_operator(
    db_url: str, tmp_path: Path
) -> None:
    """A real gateway and `yiwang ferry serve`: an intruder's batch each way (signed by a key neither side
    trusts) is quarantined and listed by `yiwang ferry quarantine` on that side; an old batch of the gateway's
    replayed to the agent is not delivered again; the case goes through untouched."""
    with CivilAffairsSimulator(decision_delay_ms=50) as sector, FerryDeployment(tmp_path, db_url, sector) as ferry:
        ferry.wait_agent_ready()
        ferry.submit(1)
        settled = ferry.ledger()
        assert settled.ok, settled
        intruder = credential("intruder")
        naming = Naming(extension=".txt", wrapper="text")
        up, down = f"{FERRY_SECTOR}.up", f"{FERRY_SECTOR}.down"
        near = Credential("near", (tmp_path / "near.pem").read_bytes())
        agent = Credential("agent", (ferry.agent_dir / "agent.pem").read_bytes())
        for channel, peer, folder in ((up, near, ferry.agent_dir / "outgoing"),
                                      (down, agent, ferry.ferry_dir / FERRY_SECTOR / "outgoing")):
            data, digest = seal(channel=channel, seq=7, previous=previous_of(7), entries=[message_entry("forged")],
                                keys=FerryKeys(own=intruder, peer=[peer]), sender="intruder", now=datetime.now(UTC))
            outgoing = LinkFolder(folder, naming)
            outgoing.write(outgoing.name_for(channel, 7, digest), data)
        wait_until(lambda: "unknown_signer" in ferry.quarantined(near=True).values(), 10, "the gateway's operator")
        wait_until(lambda: "unknown_signer" in ferry.quarantined(near=False).values(), 10, "the agent's operator")
        engine = side_engine(db_url)
        tables = ferry_tables(MetaData())
        with engine.connect() as conn:
            old = conn.execute(select(tables.sent.c.file, tables.sent.c.data)
                               .where(tables.sent.c.channel == down).order_by(tables.sent.c.seq.desc())).first()
        engine.dispose()
        assert old is not None
        replayed_at = time.time()
        LinkFolder(ferry.ferry_dir / FERRY_SECTOR / "outgoing", naming).write(old.file, old.data)  # replayed
        wait_until(lambda: any(a.file == old.file and a.at >= replayed_at for a in ferry.link.actions("down"))
                   and not (ferry.agent_dir / "incoming" / old.file).exists(), 10, "the replay met")
        report = ferry.ledger()
        assert report.ok, report  # nothing forged applied, the replay delivered nothing again
        assert report.submits_received == 1
