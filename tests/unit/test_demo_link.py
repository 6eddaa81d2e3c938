"""The demo's isolation gateway (gateway/bootstrap/demo_link.py) carries only finished files, byte for byte, and
loses exactly the batch it is told to lose — never a signal — so the demo's gap is the one it names."""

from __future__ import annotations

import time
from pathlib import Path

from adapters.kinds.ferry.folders import LinkFolder, Naming
from gateway.bootstrap.demo_link import FolderLink

TEXT = Naming(extension=".txt", wrapper="text")


def _link(tmp_path: Path) -> tuple[LinkFolder, LinkFolder, FolderLink]:
    near, far = tmp_path / "near" / "outgoing", tmp_path / "far" / "incoming"
    return LinkFolder(near, TEXT), LinkFolder(far, TEXT), FolderLink({"down": (near, far)})


def test_finished_files_arrive_byte_for_byte_and_leave_the_source(tmp_path: Path) -> None:
    near, far, link = _link(tmp_path)
    written = near.write("civil_affairs_0000000001_0a1b2c3d.txt", b"batch one").read_bytes()  # base64 text
    (near.path / ".civil_affairs_0000000002_00000000.txt.tmp").write_bytes(b"half")  # being written: not carried
    assert link.carry_once() == 1
    [arrived] = far.ready()
    assert arrived.read_bytes() == written and far.read(arrived) == b"batch one"
    assert near.ready() == [] and (near.path / ".civil_affairs_0000000002_00000000.txt.tmp").exists()


def test_the_next_batch_is_lost_and_signals_are_not(tmp_path: Path) -> None:
    near, far, link = _link(tmp_path)
    link.lose_next_batch("down")
    near.write("civil_affairs_sig_0000000001_aaaaaaaa.txt", b"receipts")
    near.write("civil_affairs_0000000002_bbbbbbbb.txt", b"lost")
    near.write("civil_affairs_0000000003_cccccccc.txt", b"kept")
    assert link.carry_once() == 2
    assert link.lost == ["civil_affairs_0000000002_bbbbbbbb.txt"]
    assert [p.name for p in far.ready()] == ["civil_affairs_0000000003_cccccccc.txt",
                                              "civil_affairs_sig_0000000001_aaaaaaaa.txt"]
    assert near.ready() == [] and link.carried == {"down": [len(far.ready()[0].read_bytes())]}  # the batch only


def test_the_thread_carries_until_stopped(tmp_path: Path) -> None:
    near, far, link = _link(tmp_path)
    with link:
        near.write("civil_affairs_0000000001_0a1b2c3d.txt", b"batch one")
        for _ in range(500):
            if far.ready():
                break
            time.sleep(0.01)
    assert [p.name for p in far.ready()] == ["civil_affairs_0000000001_0a1b2c3d.txt"]
    assert link.carried == {"down": [len(far.ready()[0].read_bytes())]}
