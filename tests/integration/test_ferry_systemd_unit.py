"""The ferry agent's systemd unit is one systemd accepts: `systemd-analyze verify` finds no unknown key, no bad
value and no unknown section in deploy/systemd/yiwang-ferry-agent.service. The unit's program is
/opt/yiwang/bin/yiwang (what the wheelhouse installs); verify also demands it be executable, so the copy checked
here runs this checkout's `yiwang` instead, and nothing else changes. Skipped where systemd is not installed;
tests/unit/test_ferry_deployment.py checks the unit's keys everywhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.markdown import ROOT

UNIT = ROOT / "deploy" / "systemd" / "yiwang-ferry-agent.service"
ANALYZE = shutil.which("systemd-analyze")


def _verify(unit_text: str, folder: Path) -> subprocess.CompletedProcess[str]:
    copy = folder / UNIT.name  # verify names the unit by its file name: keep it
    copy.write_text(unit_text.replace("/opt/yiwang/bin/yiwang", str(Path(sys.executable).with_name("yiwang"))),
                    encoding="utf-8")
    return subprocess.run([ANALYZE or "systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True,
                          text=True, timeout=30)


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    done = _verify(UNIT.read_text(encoding="utf-8"), tmp_path)
    assert (done.returncode, done.stderr.strip()) == (0, "")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_the_verification_finds_a_misspelt_key(tmp_path: Path) -> None:
    done = _verify(UNIT.read_text(encoding="utf-8").replace("ProtectSystem=", "ProtectSytem="), tmp_path)
    assert "Unknown key 'ProtectSytem'" in done.stderr
