"""A side of the ferry SIGKILLed at a deterministic crash point, restarted: nothing lost, nothing applied twice.

The crash points are the stations' own (`YIWANG_UNSAFE_FERRY_CRASH_AT`, adapters/kinds/ferry/station.py and
folders.py): `before_rename` (a batch's temporary file written, not yet renamed), `after_read` (a batch opened,
nothing applied), `after_apply` (its entries applied, nothing recorded). The side runs as a process of its own
(tests/support/ferry_side.py) that kills itself there; it is restarted without the setting, and the ledger check
reads the stand-in sector's account, both stations' tables and the link's log. A re-application after
`after_apply` (and after `before_rename` on the far side, whose answer is written while it applies) is what the
idempotency key at the sector absorbs: at most once more, and only then.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.ferry_pairs import StationPair

pytestmark = [pytest.mark.slow, pytest.mark.timeout(30)]

POINTS = ("before_rename", "after_read", "after_apply")
CRASH_AT = "YIWANG_UNSAFE_FERRY_CRASH_AT"


def killed(pair: StationPair, index: int) -> None:
    """The side's process at `index` ended by its own SIGKILL (not by an error)."""
    process = pair.processes[index]
    code = process.wait(timeout=10)
    assert code == -signal.SIGKILL, f"exit {code}: {pair.process_log(index)}"


@pytest.mark.parametrize("point", POINTS)
def test_the_far_side_killed_at_a_crash_point_then_restarted_loses_nothing_and_applies_nothing_twice(
    point: str, db_url: str, tmp_path: Path
) -> None:
    with StationPair(tmp_path, db_url) as pair:
        pair.start(far=False)
        pair.run_side_process("far", **{CRASH_AT: point})
        pair.send(2)
        killed(pair, 0)
        pair.run_side_process("far")
        pair.wait_answered()
        reapplied = point != "after_read"  # the first message was applied (and answered) before the kill
        report = pair.ledger(reapplied_ok=reapplied)
        assert report.ok, report
        assert report.duplicate_submits == (1 if reapplied else 0), report


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


@pytest.mark.parametrize("point", ("after_read", "after_apply"))
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
