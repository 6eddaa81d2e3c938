"""The README's quick starts work as written: each role's fenced blocks (marked `<!-- quickstart:ROLE -->`) run
in order in one `bash` (`set -euo pipefail`), as a person pasting them into one terminal would, with a fresh
var folder (its SQLite database) and free ports handed over through the variables the blocks read with
defaults (`QUICKSTART_DIR`, `QUICKSTART_PORT`, `SOCIAL_SECURITY_PORT`, …). The blocks start the simulators and
the gateway in the background and stop them at the end; whatever is left is killed with the process group.
Each run is judged by what its steps print: the case's states reached, the dead letter replayed, the bundle
reachable and active."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.markdown import ROOT, quick_starts, read

pytestmark = pytest.mark.slow
PORTS = ("QUICKSTART_PORT", "SOCIAL_SECURITY_PORT", "HOUSING_FUND_PORT", "CIVIL_AFFAIRS_PORT", "PUBLIC_SECURITY_PORT")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(role: str, var_dir: Path) -> tuple[int, str, str, float]:
    """Run the role's README blocks; (exit status, stdout, stderr, seconds)."""
    blocks = quick_starts(read(ROOT / "README.md"), role)
    assert blocks, f"the README has no quick start for {role}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("YIWANG_")}
    env |= {name: str(_free_port()) for name in PORTS} | {"QUICKSTART_DIR": str(var_dir)}
    out, err = var_dir.parent / f"{role}.out", var_dir.parent / f"{role}.err"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:  # files, not pipes: a server left behind holds none
        bash = subprocess.Popen(["bash", "-c", "set -euo pipefail\n" + "\n".join(blocks)], cwd=ROOT, env=env,
                                stdout=stdout, stderr=stderr, start_new_session=True)
        try:
            status = bash.wait(timeout=280)
        finally:
            try:
                os.killpg(bash.pid, signal.SIGKILL)  # servers a failed step left running
            except ProcessLookupError:
                pass
    took = time.monotonic() - started
    return status, out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8"), took


DECIDED = r"^[0-9A-Z]{20,} approved$"  # a case number and its state, as the blocks' last lines print them
SEEN = {  # what each role's steps must have printed, in the words of the step
    "hall": [
        r"^\S+\tapprove\tapproved$",  # the first case's timeline, followed to the sector's decision
        r'"state": "supplement_required"',  # the incomplete application's notice …
        r'"missing_materials": \[\s*"本人银行账户"\s*\]',  # … naming what is missing
        DECIDED,  # the supplemented case, decided
    ],
    "operator": [
        r"fault `fail` armed",  # the sector made to fail
        r"^accepted$",  # the case while its message lay dead: nothing lost
        r"^dead letter \d+: replayed$",
        DECIDED,
    ],
    "sector": [
        r"^adapters/bundles/housing_fund: valid$",
        r"^housing_fund \S+: reachable",
        r"^housing_fund \S+: active$",
    ],
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("role", sorted(SEEN))
def test_a_roles_quick_start_runs_as_written(role: str, tmp_path: Path) -> None:
    status, output, err, took = _run(role, tmp_path / "var")
    assert status == 0, f"exit {status}\n--- stdout\n{output[-3000:]}\n--- stderr\n{err[-3000:]}"
    missing = [seen for seen in SEEN[role] if not re.search(seen, output, re.MULTILINE)]
    assert missing == [], output[-3000:]
    print(f"the {role} quick start took {took:.1f} s")
