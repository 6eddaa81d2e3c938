"""ID numbers and phone numbers rest nowhere in the clear: not in the database files (WAL included,
before and after a checkpoint), not in a `pg_dump`, not in the logs.

Each search has a positive control — the case numbers, which are not personal data, must be found in the
same bytes — so a search that reads nothing cannot pass.
"""

from __future__ import annotations

import io
import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.engine import make_url

from adapters.simulators.social_security import SocialSecuritySimulator
from certstore.keyring import MasterKeys
from gateway.bootstrap import demo
from gateway.bootstrap.app import Gateway, create_app, personal_data
from gateway.config import Settings
from gateway.persistence.personal_data import reseal_all
from gateway.persistence.uow import UnitOfWork
from tests.support.gateways import COMPLETE_APPLICATION, Keys, drain

ID_NUMBER = re.compile(rb"(?<![0-9])[1-9][0-9]{16}[0-9X](?![0-9])")
PHONE = re.compile(rb"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


def personal_data_in(source: bytes) -> set[bytes]:
    """Every ID number and mobile phone number written in `source` (the texts that must not rest)."""
    return set(ID_NUMBER.findall(source)) | set(PHONE.findall(source))


def assert_absent(used: Iterable[bytes], where: str, haystack: bytes, controls: Iterable[str]) -> None:
    for control in controls:
        assert control.encode() in haystack, f"the search of {where} reads nothing: case {control} is not there"
    found = sorted(value.decode() for value in used if value in haystack)
    assert not found, f"personal data in the clear in {where}: {found}"


def sqlite_bytes(database: Path) -> bytes:
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))


def checkpoint(database: Path) -> None:
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.timeout(300)  # the whole demo, with a dozen `yiwang` commands as subprocesses, and its ferry agent
def test_the_demo_with_an_outage_leaves_no_id_or_phone_number_in_files_or_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    used = personal_data_in(Path(demo.__file__).read_bytes())
    assert len(used) >= 8, "the demo's applicants should be found in its source"
    monkeypatch.chdir(tmp_path)
    console = Console(file=io.StringIO(), width=200)
    assert demo.run_demo(console, Settings(), timeout_s=60), console.file.getvalue()  # type: ignore[attr-defined]

    database = tmp_path / demo.DEMO_DIR / "yiwang.db"
    case_numbers = _case_numbers(database)
    assert len(case_numbers) >= 7
    everything_in_var = b"".join(p.read_bytes() for p in (tmp_path / demo.DEMO_DIR).rglob("*") if p.is_file())
    assert_absent(used, "the demo's var directory (database and WAL before a checkpoint)", everything_in_var,
                  case_numbers)
    checkpoint(database)
    assert_absent(used, "the database after a checkpoint", sqlite_bytes(database), case_numbers)
    logs = (console.file.getvalue() + "".join(capfd.readouterr())).encode()  # type: ignore[attr-defined]
    assert_absent(used, "the demo's console and logs", logs, case_numbers[:1])


def _case_numbers(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT case_no FROM cases")]


APPLICANTS = [("150203198503120039", "13847100001"), ("15020519921212001X", "13514720007"),
              ("150204198809210041", "13614720005")]


def test_cases_dead_letters_events_and_stored_answers_rest_sealed(
    make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator, tmp_path: Path,
    capfd: pytest.CaptureFixture[str]
) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": simulator.url})
    keys = Keys.issue(gateway)
    client = TestClient(create_app(gateway))
    case_numbers = []
    for i, (id_number, phone) in enumerate(APPLICANTS):
        if i == len(APPLICANTS) - 1:
            # The others decided first: their status polls meeting the fault would open the breaker, and the last
            # case would wait for it instead of dying.
            drain(gateway, lambda: all(str(gateway.service.get(c).state) == "approved" for c in case_numbers))
            simulator.set_fault("fail")  # the last one becomes a dead letter: its rendered request rests too
        body = {**COMPLETE_APPLICATION, "applicant": {"name": "测试", "id_number": id_number, "phone": phone}}
        answer = client.post("/v1/cases", json=body, headers={**keys.hall, "Idempotency-Key": f"rest-{i}"})
        assert answer.status_code == 201, answer.text
        case_numbers.append(answer.json()["case_no"])
        drain(gateway, lambda: _submitted(gateway, case_numbers[-1]))
    with UnitOfWork(gateway.engine, gateway.service.personal, read_only=True) as uow:
        [letter] = uow.dead_letters.list(case_no=case_numbers[-1])
        opened = uow.cases.get(case_numbers[0])
    assert letter.rendered_request and letter.operation == "submit_case"
    assert opened is not None and opened.applicant.id_number == APPLICANTS[0][0]  # it opens again
    used = {value.encode() for pair in APPLICANTS for value in pair}
    assert_absent(used, "the stored rows", _dump(gateway), case_numbers)
    assert_absent(used, "the logs", "".join(capfd.readouterr()).encode(), case_numbers[-1:])


def _submitted(gateway: Gateway, case_no: str) -> bool:
    with gateway.engine.connect() as conn:
        query = text("SELECT 1 FROM outbox WHERE case_no = :case_no AND operation = 'submit_case' "
                     "AND status != 'pending'")
        return conn.execute(query, {"case_no": case_no}).first() is not None


def _dump(gateway: Gateway) -> bytes:
    url = make_url(gateway.settings.db_url)
    if url.get_backend_name() == "sqlite":
        database = Path(str(url.database))
        before = sqlite_bytes(database)
        gateway.engine.dispose()
        checkpoint(database)
        return before + sqlite_bytes(database)
    dump = subprocess.run(["pg_dump", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
                           "-U", url.username or "postgres", "--data-only", url.database or ""],
                          capture_output=True, timeout=120, check=True)
    return dump.stdout


def test_a_token_copied_into_another_column_does_not_open(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway()
    personal = gateway.service.personal
    token = personal.seal({"id_number": APPLICANTS[0][0]}, "cases.applicant")
    assert personal.open(token, "cases.applicant") == {"id_number": APPLICANTS[0][0]}
    with pytest.raises(ValueError, match="does not open"):
        personal.open(token, "cases.form")


def test_sm4_sealing_reads_back(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> None:
    gateway = make_gateway(field_cipher="sm4-gcm", sector_endpoints={"social_security": simulator.url})
    keys = Keys.issue(gateway)
    client = TestClient(create_app(gateway))
    answer = client.post("/v1/cases", json=COMPLETE_APPLICATION, headers=keys.hall)
    assert answer.status_code == 201, answer.text
    with gateway.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT applicant FROM cases").scalar_one()
    assert "sm4-gcm" in str(stored)
    assert client.get(f"/v1/cases/{answer.json()['case_no']}", headers=keys.hall).json()["applicant"]["id_number"] \
        .endswith("0039")


def test_settings_refuse_an_unknown_cipher() -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match="YIWANG_FIELD_CIPHER"):
        Settings.from_env({"YIWANG_FIELD_CIPHER": "rot13"})


def test_after_a_master_key_rotation_reseal_moves_every_value_to_the_new_key(
    make_gateway: Callable[..., Gateway]
) -> None:
    old = MasterKeys.generate("old")
    gateway = make_gateway(bundles=(), master_key=old)
    keys = Keys.issue(gateway)
    client = TestClient(create_app(gateway))
    case_no = client.post("/v1/cases", json=COMPLETE_APPLICATION, headers=keys.hall).json()["case_no"]
    gateway.close()

    rotated = make_gateway(bundles=(), master_key=f"{MasterKeys.generate('new')},{old}")
    assert reseal_all(rotated.engine, rotated.sealer) >= 2  # the case and its events at least
    assert reseal_all(rotated.engine, rotated.sealer) == 0  # nothing left under the old key
    with rotated.engine.connect() as conn:
        assert ".old." not in str(conn.exec_driver_sql("SELECT applicant FROM cases").scalar_one())
    only_new = personal_data(replace(rotated.settings, master_key=rotated.settings.master_key.split(",")[0]))
    with UnitOfWork(rotated.engine, only_new, read_only=True) as uow:
        case = uow.cases.get(case_no)
    assert case is not None and case.applicant.id_number == COMPLETE_APPLICATION["applicant"]["id_number"]
