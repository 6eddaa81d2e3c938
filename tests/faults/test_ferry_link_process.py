"""The link process itself (tests/support/ferry_link.py) does to files what the ferry's fault tests rely on.

Plain files with done markers, no stations: each fault kind leaves exactly the trace it claims in the delivery
folder and in the link's own log, so a ferry test that passes under a fault passed under that fault.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.ferry_link import DONE, FerryLink, deliver_file

pytestmark = pytest.mark.timeout(20)


def drop_off(folder: Path, name: str, data: bytes) -> None:
    """As a station writes: the file, then its marker."""
    folder.mkdir(parents=True, exist_ok=True)
    deliver_file(folder, name, data)


def arrived(folder: Path) -> dict[str, bytes]:
    """What the receiver sees: files with their markers."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if not p.name.startswith(".") and not p.name.endswith(DONE) and (folder / (p.name + DONE)).exists()}


def take(folder: Path, name: str) -> bytes:
    """As a receiver does: read, then remove the file and its marker."""
    data = (folder / name).read_bytes()
    (folder / name).unlink()
    (folder / (name + DONE)).unlink()
    return data


def wait(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the link did not get there in time"
        time.sleep(0.01)


def name(seq: int) -> str:
    return f"sector.down_{seq:010d}_abcdef01.ferry"


@pytest.fixture
def link(tmp_path: Path) -> Iterator[FerryLink]:
    with FerryLink(tmp_path / "link", {"down": (tmp_path / "out", tmp_path / "in")}, interval_ms=5) as running:
        yield running


def test_each_fault_kind_does_what_it_says_and_the_link_logs_it(link: FerryLink, tmp_path: Path) -> None:
    out, into = tmp_path / "out", tmp_path / "in"
    out.mkdir(exist_ok=True)
    # A file without its marker is never taken: a half-written batch stays where it is.
    (out / name(99)).write_bytes(b"half")
    drop_off(out, name(1), b"one")
    wait(lambda: name(1) in arrived(into))
    assert take(into, name(1)) == b"one" and (out / name(99)).exists()

    rule = link.fault("drop")
    drop_off(out, name(2), b"two")
    link.wait_for(rule)
    assert name(2) not in arrived(into) and not (out / name(2)).exists()

    rule = link.fault("corrupt")
    drop_off(out, name(3), b"abcdef")
    link.wait_for(rule)
    assert take(into, name(3)) == b"abceef"

    rule = link.fault("truncate")
    drop_off(out, name(4), b"12345678")
    link.wait_for(rule)
    assert take(into, name(4)) == b"1234"

    rule = link.fault("duplicate")
    drop_off(out, name(5), b"five")
    wait(lambda: name(5) in arrived(into))
    assert take(into, name(5)) == b"five"  # the first copy taken: the second follows, same name
    link.wait_for(rule)
    wait(lambda: name(5) in arrived(into))
    assert take(into, name(5)) == b"five"

    rule = link.fault("reorder")
    drop_off(out, name(6), b"six")
    time.sleep(0.05)
    assert name(6) not in arrived(into)  # held back ...
    drop_off(out, name(7), b"seven")
    link.wait_for(rule)  # ... until the next one went out
    order = [a.file for a in link.actions("down") if a.action in ("delivered", "released")]
    assert order[-2:] == [name(7), name(6)]

    rule = link.fault("delay", ms=300)
    started = time.monotonic()
    drop_off(out, name(8), b"eight")
    link.wait_for(rule)
    assert time.monotonic() - started >= 0.3

    link.refuse("down")
    drop_off(out, name(9), b"nine")
    wait(lambda: bool(link.actions("down", "refused")))
    assert name(9) not in arrived(into) and not (out / name(9)).exists()

    logged = {(a.file, a.action) for a in link.actions("down")}
    assert {(name(2), "dropped"), (name(3), "corrupted"), (name(4), "truncated"), (name(5), "duplicated"),
            (name(6), "held"), (name(6), "released"), (name(8), "delayed"), (name(9), "refused")} <= logged
    assert link.actions("down", "dropped")[0].seq == 2
    assert not [p for p in into.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    assert os.listdir(out) == [name(99)]


def test_rules_match_by_name_and_spare_signals_unless_told(link: FerryLink, tmp_path: Path) -> None:
    out, into = tmp_path / "out", tmp_path / "in"
    rule = link.fault("drop", match=r"_0000000002_", count=1)
    drop_off(out, "sector.down_sig_0000000001_abcdef01.ferry", b"beacon")
    drop_off(out, name(1), b"one")
    drop_off(out, name(2), b"two")
    link.wait_for(rule)
    wait(lambda: len(arrived(into)) == 2)
    assert set(arrived(into)) == {"sector.down_sig_0000000001_abcdef01.ferry", name(1)}
