"""Settings, logs and the command line."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import structlog
from sqlalchemy import event, text

from adapters.registry import default_bundles_dir
from gateway.bootstrap.stores import open_database
from gateway.config import ConfigError, Settings, parse_endpoints
from gateway.observability.logs import configure_logging, mask_text
from gateway.persistence.engine import READ_ONLY, make_engine

YIWANG = str(Path(sys.executable).with_name("yiwang"))


def test_settings_come_from_the_environment() -> None:
    settings = Settings.from_env({"YIWANG_DATABASE_URL": "postgresql+psycopg://u@h/db", "YIWANG_DISPATCH": "off",
                                  "YIWANG_SECTOR_ENDPOINTS": "social_security=http://127.0.0.1:1/x"})
    assert settings.db_url == "postgresql+psycopg://u@h/db"
    assert settings.dispatch_in_process is False
    assert settings.sector_endpoints == {"social_security": "http://127.0.0.1:1/x"}
    assert Settings.from_env({}).db_url == "sqlite:///var/yiwang.db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"YIWANG_MAX_BODY_BYTES": "lots"}, "invalid setting"),
        ({"YIWANG_LOG_LEVEL": "loud"}, "YIWANG_LOG_LEVEL must be one of"),
        ({"YIWANG_SECTOR_ENDPOINTS": "social_security"}, "expected sector=url"),
        ({"YIWANG_JOB_LEASE_MS": "0"}, "YIWANG_JOB_LEASE_MS must be a positive number"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_bad_setting_is_a_readable_cli_error_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "YIWANG_VAR_DIR": str(tmp_path), "YIWANG_LOG_LEVEL": "loud"}
    done = subprocess.run([YIWANG, "ops", "dead-letters"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "configuration error" in done.stderr and "Traceback" not in done.stdout + done.stderr  # errors: stderr


def test_endpoint_list_parsing() -> None:
    assert parse_endpoints(" a=http://x/1 , b=http://y/2 ") == {"a": "http://x/1", "b": "http://y/2"}
    assert parse_endpoints("") == {}


def test_logs_mask_id_and_phone_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    try:
        structlog.get_logger("t").info("applicant 150203198503120039 called from 13847100001",
                                       id="15020419901120152X")
    finally:
        structlog.reset_defaults()  # the configuration captured this test's stderr
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "applicant 1502**********0039 called from 138****0001"
    assert line["id"] == "1502**********152X"
    assert mask_text("case 12150200MB1A00010L300080500100020261127000001") == (
        "case 12150200MB1A00010L300080500100020261127000001")  # case numbers are not personal data


def test_the_bundle_carries_the_wsdl_the_sector_publishes() -> None:
    shipped = default_bundles_dir() / "social_security" / "service.wsdl"
    published = Path(__file__).parents[2] / "adapters" / "simulators" / "social_security.wsdl"
    assert filecmp.cmp(shipped, published, shallow=False)



def test_logging_writes_to_the_current_stderr_not_a_closed_one(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import io

    swapped = io.StringIO()
    monkeypatch.setattr("sys.stderr", swapped)
    configure_logging("info")
    swapped.close()  # a CLI runner's stream, gone when it finishes
    monkeypatch.undo()
    structlog.get_logger().info("after the swap", phone="13847100001")
    written = capsys.readouterr().err
    assert "after the swap" in written and "138****0001" in written and "13847100001" not in written


def test_the_pool_size_comes_from_the_environment_and_must_be_positive() -> None:
    assert Settings.from_env({}).db_pool_size == 20
    assert Settings.from_env({"YIWANG_DB_POOL_SIZE": "35"}).db_pool_size == 35
    with pytest.raises(ConfigError, match="YIWANG_DB_POOL_SIZE"):
        Settings.from_env({"YIWANG_DB_POOL_SIZE": "0"})


def test_the_overflow_beyond_the_pool_comes_from_the_environment_and_reaches_the_engine(tmp_path: Path) -> None:
    assert Settings.from_env({}).db_max_overflow == 10
    settings = Settings.from_env({"YIWANG_DB_MAX_OVERFLOW": "0", "YIWANG_DB_POOL_SIZE": "3",
                                  "YIWANG_VAR_DIR": str(tmp_path)})
    engine = open_database(settings)
    try:
        assert (engine.pool.size(), engine.pool._max_overflow) == (3, 0)  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    with pytest.raises(ConfigError, match="YIWANG_DB_MAX_OVERFLOW must be a whole number"):
        Settings.from_env({"YIWANG_DB_MAX_OVERFLOW": "-1"})


@pytest.mark.timeout(60)
def test_a_busy_process_reuses_its_connections_rather_than_opening_new_ones(db_url: str) -> None:
    """Three rounds of 15 threads each holding a connection at once: the pool keeps them all, so only the
    first round connects (a pool of 5 closed 10 at every return and opened them again next round)."""
    engine = make_engine(db_url)
    connects: list[int] = []
    event.listen(engine, "connect", lambda *_: connects.append(1))
    together = threading.Barrier(15)

    def hold() -> None:
        with engine.connect() as conn:  # a reading transaction: on SQLite a writing one takes the write lock
            conn.execution_options(**{READ_ONLY: True}).execute(text("SELECT 1"))
            together.wait(timeout=20)

    try:
        for _round in range(3):
            threads = [threading.Thread(target=hold) for _ in range(15)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
    finally:
        engine.dispose()
    assert len(connects) == 15
