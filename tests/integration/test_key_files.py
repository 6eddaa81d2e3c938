"""Key files made once: processes starting together on a fresh folder agree on one whole key."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

RACER = """
import sys, time
from pathlib import Path
from certstore.keyfiles import write_once
folder, start_at, count, me = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
time.sleep(max(0.0, start_at - time.time()))
for i in range(count):
    print(i, write_once(folder / f"key-{i}", f"{me}-{i}") or "EMPTY", flush=True)
"""


@pytest.mark.timeout(120)
def test_two_processes_making_the_same_keys_read_the_same_whole_key(tmp_path: Path) -> None:
    start_at = time.time() + 1.5
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(start_at), "1500", name],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outputs = [racer.communicate(timeout=100) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err for _, err in outputs]
    seen = [dict(line.split(" ", 1) for line in out.splitlines()) for out, _ in outputs]
    assert seen[0] == seen[1]  # both read, for every key, the same text
    assert all(value in (f"a-{i}", f"b-{i}") for i, value in seen[0].items())  # whole, never empty
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"key-{i}" for i in range(1500))  # no scratch left
