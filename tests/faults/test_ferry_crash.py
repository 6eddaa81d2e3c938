"""A side of the ferry SIGKILLed at a deterministic crash point, restarted: nothing lost, nothing applied twice.

The crash points are the ferry's own (`YIWANG_UNSAFE_FERRY_CRASH_AT`, adapters/kinds/ferry/folders.py and
station.py): `before_rename` (a batch's temporary file written, not yet renamed), `after_read` (a batch opened,
nothing applied), `after_apply` (its entries applied, nothing recorded). The process kills itself there; it is
restarted without the setting, and the ledger check reads the sector's own account, both stations' tables and
the link's log.

- The far side is the real agent (`yiwang ferry serve`, empty state, its bundle over the link) in front of the
  civil-affairs simulator, beside a real gateway: killed at each point in turn on the same batches (a crash
  after a crash), then every case decided, each reached the sector once.
- The gateway's delivery and near-side job run in a `yiwang worker`, killed while taking the answers.
- The near side's station runs as a process of its own (tests/support/ferry_side.py), killed while sending a
  batch or while taking an answer; each point on one database, the two in turn (a process start is the cost
  of each test, and the station's code is the same on both).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from adapters.simulators.civil_affairs import CivilAffairsSimulator
from tests.support.ferry_deployment import FerryDeployment
from tests.support.ferry_pairs import StationPair

pytestmark = [pytest.mark.slow, pytest.mark.timeout(30)]

CRASH_AT = "YIWANG_UNSAFE_FERRY_CRASH_AT"


def killed(pair: StationPair, index: int) -> None:
    """The side's process at `index` ended by its own SIGKILL (not by an error)."""
    process = pair.processes[index]
    code = process.wait(timeout=10)
    assert code == -signal.SIGKILL, f"exit {code}: {pair.process_log(index)}"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_near_side_killed_between_writing_a_batch_and_renaming_it_writes_it_after_the_restart(
    db_url: str, tmp_path: Path
) -> None:
    with StationPair(tmp_path, db_url) as pair:
        pair.send_in_process(2, **{CRASH_AT: "before_rename"})  # recorded, half-written: the sender dies
        killed(pair, 0)
        assert len(pair.sent) == 1 and [p.name for p in pair.folders["near"]["outgoing"].iterdir()
                                        if p.name.endswith(".tmp")], "a temporary file, no batch"
        pair.start()  # the near side's loop writes what was recorded and never written
        pair.wait_answered()
        report = pair.ledger()
        assert report.ok, report


@pytest.mark.parametrize(("point", "db_url"), [("after_read", "sqlite"), ("after_apply", "postgres")],
                         indirect=["db_url"])
def test_the_near_side_killed_while_taking_an_answer_then_restarted_records_it_once(
    point: str, db_url: str, tmp_path: Path
) -> None:
    with StationPair(tmp_path, db_url) as pair:
        pair.start(near=False)
        pair.run_side_process("near", **{CRASH_AT: point})
        pair.send(2)
        killed(pair, 0)
        pair.run_side_process("near")
        pair.wait_answered()
        report = pair.ledger()
        assert report.ok, report


# --------------------------------------------------------------------------- the agent, the whole way


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_agent_killed_at_each_crash_point_in_turn_then_restarted_delivers_every_case_once(
    db_url: str, tmp_path: Path
) -> None:
    """`yiwang ferry serve` from empty state takes its bundle over the link and stops; two cases are submitted;
    the agent is started three times more, each time with the next crash point set, and kills itself there —
    `after_read` on the first case's batch (nothing delivered), `after_apply` on the same batch (delivered, not
    recorded), `before_rename` writing what it owes (the delivery found stored, not made again); started once
    more without, it finishes: every case decided, each reached the sector once."""
    with CivilAffairsSimulator(decision_delay_ms=50) as sector, FerryDeployment(tmp_path, db_url, sector) as ferry:
        ferry.wait_agent_ready()
        ferry.stop_agent()
        ferry.submit(2)
        delivered_after = {"after_read": 0, "after_apply": 1}
        for point in ("after_read", "after_apply", "before_rename"):
            crashing = ferry.start_agent(**{CRASH_AT: point})
            assert crashing.wait(timeout=15) == -signal.SIGKILL, ferry.agent_logs()
            if point in delivered_after:  # the point is where it says: before, or after, the sector call
                assert sector.counters["submits_received"] == delivered_after[point], ferry.agent_logs()
        ferry.start_agent()
        report = ferry.ledger()
        assert report.ok, f"{report}\n{ferry.agent_logs()}"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_gateway_killed_while_taking_answers_then_restarted_decides_every_case_once(
    db_url: str, tmp_path: Path
) -> None:
    """The gateway's delivery and near-side job in a `yiwang worker`, killed at `after_read` on the first batch
    of answers coming back, then at `after_apply` on the same batch (taken onto the cases, not recorded); started
    once more without, it finishes: every case decided once, each reached the sector once. (The gateway killed
    between writing and renaming: the near-side station process above.)"""
    with CivilAffairsSimulator(decision_delay_ms=50) as sector, \
            FerryDeployment(tmp_path, db_url, sector, near_in_worker=True,
                            worker_env={CRASH_AT: "after_read"}) as ferry:
        ferry.submit(2)
        assert ferry.workers[-1].wait(timeout=20) == -signal.SIGKILL, ferry.worker_logs()
        assert ferry.start_worker(**{CRASH_AT: "after_apply"}).wait(timeout=20) == -signal.SIGKILL, \
            ferry.worker_logs()
        ferry.start_worker()
        report = ferry.ledger()
        assert report.ok, f"{report}\n{ferry.worker_logs()}"
