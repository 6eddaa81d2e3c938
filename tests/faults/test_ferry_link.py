"""The ferry under a misbehaving isolation gateway: after each fault kind of the link, the ledger balances.

Two stations (the near side on the test's database, the far side on its own SQLite file, each on a loop of its
own) joined by the link process (tests/support/ferry_link.py), which drops, duplicates, reorders, delays,
truncates or corrupts batches — in both directions at once — or carries one way only. The ledger check
(tests/support/ferry_ledger.py) reads the stand-in sector's own account, both stations' tables and the link's
log: every message reached the sector exactly once and was answered, every dropped batch was named as a gap,
every truncated or corrupted one quarantined. The negative control switches duplicate suppression off and the
same check fails, naming the duplicates.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.simulators.civil_affairs import CivilAffairsSimulator
from tests.support.ferry_deployment import FerryDeployment
from tests.support.ferry_pairs import StationPair, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(30)]

# Each fault kind on one database, the two in turn: the stations' code is the same on both, and the whole way
# below runs on both.
FAULTS = [("drop", "sqlite"), ("duplicate", "postgres"), ("reorder", "sqlite"), ("delay", "postgres"),
          ("truncate", "sqlite"), ("corrupt", "postgres")]


@pytest.mark.parametrize(("fault", "db_url"), FAULTS, indirect=["db_url"])
def test_after_each_fault_of_the_link_every_message_is_applied_once_and_answered(
    fault: str, db_url: str, tmp_path: Path
) -> None:
    with StationPair(tmp_path, db_url) as pair:
        pair.start()
        pair.send(1)
        pair.wait_answered()
        # The next batch each way meets the fault (the far side answers a batch with a batch); those after it
        # arrive as usual: a dropped or quarantined batch is then a gap below them, a held one is overtaken.
        down = pair.link.fault(fault, lane="down", ms=300)
        up = pair.link.fault(fault, lane="up", ms=300)
        pair.send(3)
        pair.link.wait_for(down)
        pair.link.wait_for(up)
        pair.wait_answered()
        report = pair.ledger()
        assert report.ok, report
        assert not pair.errors()
        if fault in ("drop", "truncate", "corrupt"):  # what the receivers noticed, not only what the link did
            assert any(low <= 2 <= high for low, high in pair.gaps("far")), report
        if fault in ("truncate", "corrupt"):
            assert all(tally.quarantined for tally in report.stations), report


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_one_way_links_beacons_name_what_never_arrived_and_an_operator_resends_the_range(
    db_url: str, tmp_path: Path
) -> None:
    with StationPair(tmp_path, db_url, mode="one_way", beacon_every_ms=100) as pair:
        pair.start()
        pair.send(1)
        pair.wait_answered()
        dropped = pair.link.fault("drop", lane="down")
        pair.link.refuse("up")  # the far side's diode is down: its answers (and beacons) are lost meanwhile
        pair.send(1)
        pair.link.wait_for(dropped)
        # Nothing comes after the dropped batch: only the near side's beacon can tell the far side it exists.
        wait_until(lambda: (2, 2) in pair.gaps("far"), 10, "the far side naming seq 2 from a beacon")
        near, far = pair.loop_of("near").loop.station, pair.loop_of("far").loop.station
        assert near.resend(2, 2) == 1  # the near side's operator resends the range the far side named
        wait_until(lambda: pair.sector_record.exists() and len(pair.sector_record.read_text().splitlines()) == 2, 10,
                   "the resent batch applied")
        wait_until(lambda: any(a.seq is not None for a in pair.link.actions("up", "refused")), 10,
                   "the answer batch lost on the refused way up")
        pair.link.refuse("up", False)
        wait_until(lambda: bool(pair.gaps("near")), 10, "the near side naming the lost answer batches")
        for low, high in pair.gaps("near"):
            far.resend(low, high)  # ... and the far side's operator those the near side named
        pair.wait_answered()
        report = pair.ledger()
        assert report.ok, report
        assert report.link["refused"] >= 1 and report.link["dropped"] == 1


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_negative_control_without_duplicate_suppression_the_ledger_check_fails(db_url: str, tmp_path: Path) -> None:
    with StationPair(tmp_path, db_url, far_suppresses=False, resend_after_ms=10_000) as pair:  # the link's only
        pair.start()
        pair.send(1)
        duplicated = pair.link.fault("duplicate", lane="down", count=2)
        pair.send(2)
        pair.link.wait_for(duplicated, uses=2)
        pair.wait_answered()
        wait_until(lambda: len(pair.sector_record.read_text().splitlines()) >= 5, 10, "the duplicates applied")
        report = pair.ledger()
        assert not report.ok
        assert report.duplicate_submits == 2, report
        assert any(problem.startswith("duplicates: 2 messages reached the sector again")
                   for problem in report.problems), report


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_negative_control_a_batch_lost_for_good_fails_the_ledger_check_by_name(db_url: str, tmp_path: Path) -> None:
    """One-way links and nobody resending: the ledger check names the message that never reached the sector and
    the batch that never arrived (the gap itself is named, so that part holds)."""
    with StationPair(tmp_path, db_url, mode="one_way", beacon_every_ms=100) as pair:
        pair.start()
        dropped = pair.link.fault("drop", lane="down")
        [lost] = pair.send(1)
        pair.link.wait_for(dropped)
        wait_until(lambda: (1, 1) in pair.gaps("far"), 10, "the far side naming seq 1 from a beacon")
        report = pair.ledger(settle_s=0)
        assert not report.ok
        assert f"messages that never reached the sector: 1 (e.g. ['{lost}'])" in report.problems, report
        assert "agent: batches sent on public_security.down and never received: 1 (e.g. [1])" in report.problems
        assert not any("named as a gap" in problem for problem in report.problems), report


# --------------------------------------------------------------------------- the whole way


def test_across_the_gateway_and_the_agent_the_link_faults_lose_nothing_and_apply_nothing_twice(
    db_url: str, tmp_path: Path
) -> None:
    """A real gateway (its delivery loop and near-side job) and `yiwang ferry serve` (a process, empty state: its
    bundle comes over the link first), the civil-affairs sector behind it; the link duplicates, corrupts and
    reorders the batches going down, drops, truncates and delays those coming up."""
    with CivilAffairsSimulator(decision_delay_ms=50) as sector, FerryDeployment(tmp_path, db_url, sector) as ferry:
        ferry.wait_agent_ready()
        for fault in ("duplicate", "corrupt", "reorder"):
            ferry.link.fault(fault, lane="down", ms=300)
        for fault in ("drop", "truncate", "delay"):
            ferry.link.fault(fault, lane="up", ms=300)
        ferry.submit(4)
        report = ferry.ledger()
        assert report.ok, f"{report}\n{ferry.agent_logs()}"
        done = {a.action for a in ferry.link.actions()}
        assert {"duplicated", "corrupted", "released", "dropped", "truncated", "delayed"} <= done, report


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_across_one_way_links_each_operator_resends_the_range_the_other_side_named(tmp_path: Path, db_url: str) -> None:
    """Two one-way links (no receipts): the link drops the case's message going down and its answer coming up; each
    side's beacons let the other name what never arrived (`yiwang ferry gaps`), and each side's operator resends
    the named range (`yiwang ferry resend`, on the gateway and with --config on the agent)."""
    with CivilAffairsSimulator(decision_delay_ms=50) as sector, \
            FerryDeployment(tmp_path, db_url, sector, mode="one_way") as ferry:
        ferry.wait_agent_ready()
        down = ferry.link.fault("drop", lane="down")
        up = ferry.link.fault("drop", lane="up")
        ferry.submit(1)
        ferry.link.wait_for(down)
        wait_until(lambda: bool(ferry.gaps(near=False)), 10, "the agent naming the message batch never arrived")
        for gap in ferry.gaps(near=False):
            ferry.resend(gap, near=True)
        ferry.link.wait_for(up)
        wait_until(lambda: bool(ferry.gaps(near=True)), 10, "the gateway naming the answer batch never arrived")
        for gap in ferry.gaps(near=True):
            ferry.resend(gap, near=False)
        report = ferry.ledger()
        assert report.ok, f"{report}\n{ferry.agent_logs()}"
        assert report.link["dropped"] == 2 and not ferry.gaps(near=True) and not ferry.gaps(near=False)
