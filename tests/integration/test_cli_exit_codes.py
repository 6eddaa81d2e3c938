"""The exit-code table (gateway/cli/common.py, printed by `yiwang --help`), command by command: each row of
EXIT_CODES is the code of at least one real command, run as the console script runs, with one readable
message on stderr and no traceback. Which exceptions end a command with which code is `ENDINGS`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from adapters.registry import default_bundles_dir
from gateway.cases.service import DeadLetterNotFound
from gateway.cli.common import (
    BAD_INPUT,
    ENDINGS,
    EXIT_CODES,
    NOT_FOUND,
    OK,
    PROBLEMS_FOUND,
    REFUSED,
    UNAVAILABLE,
    ending,
    exit_code,
)
from gateway.security.api_keys import IdentityError, SeparationOfDuties, UnknownIdentity
from gateway.security.approvals import cli_refusal

YIWANG = str(Path(sys.executable).with_name("yiwang"))


def closed_port() -> int:
    with socket.socket() as probe:  # bound, then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def broken_bundle(folder: Path) -> Path:
    shutil.copytree(default_bundles_dir() / "social_security", folder)
    (folder / "service.wsdl").unlink()  # the descriptor names it
    return folder


# (exit code, arguments, extra environment, what stderr says). "{broken}" is a broken bundle's folder.
ROWS = [
    (OK, ["keys", "list"], {}, ""),
    (OK, ["adapters", "validate", str(default_bundles_dir() / "social_security")], {}, ""),
    (PROBLEMS_FOUND, ["adapters", "validate", "{broken}"], {}, "'service.wsdl' not found in the bundle"),
    (BAD_INPUT, ["keys", "list", "--no-such-option"], {}, "No such option: --no-such-option"),
    (BAD_INPUT, ["keys", "issue", "--name", "x", "--role", "mayor"], {}, "没有角色 mayor"),
    (NOT_FOUND, ["keys", "revoke", "id_nobody"], {}, "没有身份 id_nobody"),
    (NOT_FOUND, ["adapters", "activate", "social_security", "9.9"], {}, "部门 social_security 没有 9.9 版适配包"),
    (REFUSED, ["keys", "issue", "--name", "x", "--role", "operator", "--role", "security_admin"], {},
     "违反三员分立"),
    (REFUSED, ["adapters", "activate", "social_security", "1.0"], {"YIWANG_FOUR_EYES": "1"}, "four-eyes is on"),
    (UNAVAILABLE, ["keys", "list"], {"YIWANG_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1:{port}/x"},
     "error: database unavailable: "),
    (UNAVAILABLE, ["ops", "dead-letters"], {"YIWANG_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1:{port}/x"},
     "Connection refused"),
    (UNAVAILABLE, ["keys", "issue", "--name", "x", "--role", "operator"],  # audited: its record cannot be written
     {"YIWANG_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1:{port}/x"},
     "the audit record of `keys issue` was not written: database unavailable: "),
]


@pytest.mark.parametrize(("code", "args", "env", "says"), ROWS,
                         ids=[f"{row[0]}-{' '.join(row[1][:2])}" for row in ROWS])
def test_each_command_ends_with_its_code_and_one_readable_message(tmp_path: Path, code: int, args: list[str],
                                                                   env: dict[str, str], says: str) -> None:
    port = closed_port()
    filled = {key: value.format(port=port) for key, value in env.items()}
    argv = [str(broken_bundle(tmp_path / "broken")) if arg == "{broken}" else arg for arg in args]
    environment = {**os.environ, "YIWANG_VAR_DIR": str(tmp_path / "var"), "COLUMNS": "300", "NO_COLOR": "1",
                   **filled}
    done = subprocess.run([YIWANG, *argv], env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stdout + done.stderr
    assert says in " ".join(done.stderr.split())  # rich may wrap a long line
    assert "Traceback" not in done.stdout + done.stderr
    if code == UNAVAILABLE:  # one line for the error, one for an audit record it could not write
        assert len(done.stderr.splitlines()) <= 2 and done.stdout == ""
    if code == OK:
        assert done.stderr == ""


def test_every_row_of_the_table_is_a_tested_command() -> None:
    assert {code for code, _ in EXIT_CODES} == {row[0] for row in ROWS}


def test_every_ending_names_an_exception_class_that_exists() -> None:
    import importlib

    for row in ENDINGS:
        module, name = row.exception.split(":")
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, BaseException), row


@pytest.mark.parametrize(("exc", "code", "line"), [
    (DeadLetterNotFound(42), NOT_FOUND, "dead letter not found: 没有编号为 42 的死信"),
    (UnknownIdentity("no identity 'id_x'"), NOT_FOUND, "API key not found: no identity 'id_x'"),
    (SeparationOfDuties("operator, security_admin span two duties"), REFUSED,
     "refused (separation of duties): operator, security_admin span two duties"),
    (cli_refusal("activating x 1", "POST /v1/x"), REFUSED, "refused (four eyes): four-eyes is on"),
    (OperationalError("SELECT 1", {}, Exception("connection refused\nmore")), UNAVAILABLE,
     "database unavailable: (builtins.Exception) connection refused"),
])
def test_the_domains_exceptions_end_with_their_code_and_a_one_line_message(exc: Exception, code: int,
                                                                           line: str) -> None:
    found = ending(exc)
    assert found is not None and found.exit_code == code and exit_code(exc) == code
    assert found.line(exc).startswith(line) and "\n" not in found.line(exc)


@pytest.mark.parametrize("exc", [KeyError("x"), ValueError("x"), IdentityError("a clerk needs a department")])
def test_anything_else_is_not_an_ending(exc: Exception) -> None:
    assert ending(exc) is None and exit_code(exc) == BAD_INPUT and exit_code(exc, PROBLEMS_FOUND) == PROBLEMS_FOUND
