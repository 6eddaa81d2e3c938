"""A `yiwang` command's log lines go to stderr, only at warning level and above unless -v (info) or -vv
(debug); standard output carries only the command's results. A command that changes something is audited,
and closing the audit log signs a checkpoint, which is logged at info: the line the issue saw on every
command. With YIWANG_LOG_FILE the log file keeps YIWANG_LOG_LEVEL (the checkpoints are anchors, `yiwang
audit verify --anchors`), still nothing on stdout or stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

YIWANG = str(Path(sys.executable).with_name("yiwang"))
ISSUE = ["keys", "issue", "--name", "log test", "--role", "operator"]  # audited: signs a checkpoint


def yiwang(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("YIWANG_LOG_")}
    environment.update(YIWANG_VAR_DIR=str(tmp_path / "var"), **env)
    done = subprocess.run([YIWANG, *args], env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def results_only(stdout: str) -> None:
    assert stdout.startswith("identity: id_") and "key: yw_" in stdout
    assert "ledger checkpoint" not in stdout and "[info" not in stdout and "[warning" not in stdout


def test_without_verbose_a_command_writes_its_results_and_no_log_line(tmp_path: Path) -> None:
    done = yiwang(tmp_path, *ISSUE, YIWANG_LOG_LEVEL="info")  # the services' level: not the commands'
    results_only(done.stdout)
    assert done.stderr == ""


def test_with_verbose_the_info_lines_appear_on_stderr(tmp_path: Path) -> None:
    done = yiwang(tmp_path, "-v", *ISSUE)
    results_only(done.stdout)
    assert "ledger checkpoint" in done.stderr and "[info" in done.stderr


def test_a_log_file_keeps_the_log_level_setting_and_the_terminal_stays_quiet(tmp_path: Path) -> None:
    log = tmp_path / "yiwang.log"
    done = yiwang(tmp_path, *ISSUE, YIWANG_LOG_FILE=str(log), YIWANG_LOG_FORMAT="json", YIWANG_LOG_LEVEL="info")
    results_only(done.stdout)
    assert done.stderr == ""
    assert '"event": "ledger checkpoint"' in log.read_text(encoding="utf-8")
