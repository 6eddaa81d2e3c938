"""The demo's isolation gateway (网闸): a thread carrying finished batch files between link folders, lane by lane.

Used by the demo's ferry scene and by the benchmark's ferry section; small enough to read beside them. (The tests
use their own link process, tests/support/ferry_link.py, which misbehaves in every way under control and shares no
code with what it carries for.) Each pass takes every file of a lane's source folder that has its done marker and
delivers it as a real isolation gateway does — the same bytes written into the target folder under a temporary
name, fsynced, renamed, then the done marker (`LinkFolder.write` with no wrapper: bytes as they are) — and then
removes it at the source; `carried` holds the size of each batch it delivered, per lane. `lose_next_batch(lane)`
makes the link lose the next batch of that lane (not a signal: receipts and beacons are not sequenced), as a link
that drops a file does; what it lost is in `lost`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from adapters.kinds.ferry.folders import LinkFolder

SIGNAL_MARK = "_sig_"  # in a signal's file name (folders.Naming.signal_pattern): never lost on purpose


class FolderLink:
    """Lanes `name -> (source folder, target folder)`, carried every `interval_s` by a thread of its own."""

    def __init__(self, lanes: Mapping[str, tuple[Path, Path]], interval_s: float = 0.02) -> None:
        # No wrapper and no naming of its own: a link carries bytes as they are, whatever the stations' naming.
        self._lanes = {name: (LinkFolder(source), LinkFolder(target)) for name, (source, target) in lanes.items()}
        self._interval_s = interval_s
        self._to_lose: dict[str, int] = dict.fromkeys(lanes, 0)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferry-demo-link", daemon=True)
        self.carried: dict[str, list[int]] = {lane: [] for lane in lanes}  # each batch's size in bytes, per lane
        self.lost: list[str] = []  # names of the files it lost, in order

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def lose_next_batch(self, lane: str) -> None:
        """The next batch file of `lane` is taken and never delivered."""
        with self._lock:
            self._to_lose[lane] += 1

    def carry_once(self) -> int:
        """One pass over every lane; how many files were delivered."""
        delivered = 0
        for lane, (source, target) in self._lanes.items():
            for path in source.ready():
                if self._loses(lane, path.name):
                    self.lost.append(path.name)
                else:
                    data = source.read(path)
                    target.write(path.name, data)
                    delivered += 1
                    if SIGNAL_MARK not in path.name:
                        self.carried[lane].append(len(data))
                source.remove(path)
        return delivered

    def _loses(self, lane: str, name: str) -> bool:
        with self._lock:
            if self._to_lose[lane] and SIGNAL_MARK not in name:
                self._to_lose[lane] -= 1
                return True
        return False

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self.carry_once()
