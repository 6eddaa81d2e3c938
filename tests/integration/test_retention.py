"""Retention on SQLite and PostgreSQL: old message bodies, notifications and message-log records are
purged (archived first when asked, still sealed), young ones kept; an interrupted purge leaves whole
batches done and nothing half-done; the message log still verifies after a purge, and a tampered or
forged retention marker is named. Log files rotate daily and keep the configured number."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy.exc import DatabaseError

from certstore.keyring import FieldSealer, MasterKeys, is_sealed
from certstore.signing import Ed25519Signer, encode_signature
from gateway.audit.ledger import AUDIT, MESSAGE, Filters, Ledger, _retention_payload
from gateway.audit.retention import DEAD_LETTER_BODIES, JsonLinesArchive, Retention, RetentionPolicy
from gateway.bootstrap.app import build_gateway
from gateway.config import ConfigError, Settings
from gateway.domain.clock import FixedClock
from gateway.observability.logs import configure_logging
from gateway.persistence.blind_index import BlindIndex
from gateway.persistence.ledger_tables import ledger_records, ledger_retention
from gateway.persistence.notification_tables import webhook_deliveries, webhook_subscriptions
from gateway.persistence.personal_data import PersonalData
from gateway.persistence.repository import Failure
from gateway.persistence.tables import case_notifications, dead_letters
from gateway.persistence.uow import UnitOfWork
from tests.support.ledger import tamper as tamper_records

ID_NUMBER, PHONE = "150203198503120039", "13847100001"
KEYS = MasterKeys.parse(MasterKeys.generate("t1"))
SEALER = FieldSealer(KEYS)
SIGNER = Ed25519Signer.generate()
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Interrupted(Exception):
    pass


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def ledger(engine: Engine, clock: FixedClock) -> Ledger:
    return Ledger(engine, SEALER, SIGNER, clock=clock)


def retention(engine: Engine, ledger: Ledger, clock: FixedClock, archive: Any = None, batch: int = 2,
              audit_days: int = 0) -> Retention:
    return Retention(engine, ledger, clock, RetentionPolicy(days=180, audit_days=audit_days, batch=batch),
                     archive=archive)


def add_dead_letters(engine: Engine, clock: FixedClock, count: int, status: str) -> list[int]:
    personal = PersonalData(BlindIndex(b"k" * 32), SEALER)
    failure = Failure("transport", "refused", attempts=3, canonical_payload={"applicant": {"id_number": ID_NUMBER}},
                      rendered_request={"phone": PHONE}, last_response={"status": 503},
                      history=({"at": "t", "failure": "transport"},))
    with UnitOfWork(engine, personal) as uow:
        ids = [uow.dead_letters.add(None, failure, clock.now(), about={
            "case_no": f"C{i}", "sector": "social_security", "operation": "submit_case",
            "idempotency_key": f"C{i}:1:submit_case"}) for i in range(count)]
        uow.commit()
    with engine.begin() as conn:
        conn.execute(update(dead_letters).where(dead_letters.c.id.in_(ids)).values(status=status))
    return ids


def add_notifications(engine: Engine, clock: FixedClock, first_seq: int, count: int) -> None:
    now = clock.now()
    with engine.begin() as conn:
        if conn.execute(select(webhook_subscriptions.c.id)).first() is None:
            conn.execute(insert(webhook_subscriptions).values(
                id="wh_000000000001", owner_id="id_a", owner_name="hall", url="https://hall.example/hook",
                secret="sealed", events=["*"], active=True, created_at=now))
        for seq in range(first_seq, first_seq + count):
            conn.execute(insert(case_notifications).values(
                case_no="C1", seq=seq, trigger="accept", to_state="accepted", matter_code="M" * 31, at=now,
                status="published", published_at=now))
            conn.execute(insert(webhook_deliveries).values(
                subscription_id="wh_000000000001", case_no="C1", seq=seq, event={"seq": seq}, status="delivered",
                attempts=1, next_at=now, created_at=now, delivered_at=now))


def bodies(engine: Engine, ids: list[int]) -> list[bool]:
    """For each dead letter: does it still hold its bodies?"""
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters).where(dead_letters.c.id.in_(ids)).order_by(dead_letters.c.id))
        return [all(row[c] is not None for c in DEAD_LETTER_BODIES) for row in rows.mappings()]


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def archived(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(directory.glob("retention-*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()]


def test_old_bodies_are_purged_young_ones_kept_and_the_archive_holds_only_sealed_bodies(
        engine: Engine, ledger: Ledger, clock: FixedClock, tmp_path: Path) -> None:
    old_replayed = add_dead_letters(engine, clock, 3, "replayed")
    old_discarded = add_dead_letters(engine, clock, 1, "discarded")
    old_dead = add_dead_letters(engine, clock, 1, "dead")  # still an operator's business: kept whole
    add_notifications(engine, clock, 1, 3)
    clock.advance(100 * DAY)
    young = add_dead_letters(engine, clock, 2, "replayed")
    add_notifications(engine, clock, 10, 2)
    clock.advance(100 * DAY)  # the first ones are 200 days old, the second 100

    told: list[int] = []
    done = retention(engine, ledger, clock, JsonLinesArchive(tmp_path / "archive", clock)).run(told.append)

    assert done == 4 + 3 + 3
    assert told == sorted(told) and told[-1] == done  # batch by batch: `yiwang audit retention`'s progress
    assert bodies(engine, old_replayed + old_discarded) == [False] * 4
    assert bodies(engine, old_dead + young) == [True] * 3
    assert count(engine, dead_letters) == 7  # the rows and their outcomes stay
    with engine.connect() as conn:
        kept = conn.execute(select(dead_letters.c.error_class, dead_letters.c.idempotency_key)
                            .where(dead_letters.c.id == old_replayed[0])).one()
    assert tuple(kept) == ("transport", "C0:1:submit_case")
    assert (count(engine, webhook_deliveries), count(engine, case_notifications)) == (2, 2)

    lines = archived(tmp_path / "archive")
    assert [line["table"] for line in lines] == ["dead_letters"] * 4 + ["webhook_deliveries"] * 3 + [
        "case_notifications"] * 3
    assert {line["row"]["id"] for line in lines[:4]} == set(old_replayed + old_discarded)
    assert all(is_sealed(line["row"][c]) for line in lines[:4] for c in DEAD_LETTER_BODIES)
    written = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "archive").iterdir())
    assert ID_NUMBER not in written and PHONE not in written
    assert retention(engine, ledger, clock, JsonLinesArchive(tmp_path / "archive", clock)).run() == 0


@pytest.mark.parametrize("written_first", [False, True], ids=["archive-fails", "crash-after-archive"])
def test_an_interrupted_purge_leaves_whole_batches_done_and_the_rest_untouched(
        engine: Engine, ledger: Ledger, clock: FixedClock, tmp_path: Path, written_first: bool) -> None:
    ids = add_dead_letters(engine, clock, 5, "replayed")
    clock.advance(200 * DAY)
    archive = JsonLinesArchive(tmp_path / "archive", clock)
    calls = 0

    def failing_second_batch(table: str, rows: list[dict[str, Any]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            if written_first:  # written and fsynced, then the process dies before the purge commits
                archive(table, rows)
            raise Interrupted
        archive(table, rows)

    with pytest.raises(Interrupted):
        retention(engine, ledger, clock, failing_second_batch).run()
    assert bodies(engine, ids) == [False, False, True, True, True]  # batch one done, batch two rolled back whole
    assert len(archived(tmp_path / "archive")) == (4 if written_first else 2)

    assert retention(engine, ledger, clock, archive).run() == 3
    assert bodies(engine, ids) == [False] * 5
    assert {line["row"]["id"] for line in archived(tmp_path / "archive")} == set(ids)  # none purged unarchived


def write_messages(ledger: Ledger, count: int, case_no: str) -> None:
    for i in range(count):
        ledger.message("social_security", "sent", "submit_case", case_no, f"{case_no}:{i}",
                       {"applicant": {"id_number": ID_NUMBER}}, "sent")


def test_the_message_log_verifies_after_a_purge_and_its_markers_are_signed(
        engine: Engine, ledger: Ledger, clock: FixedClock, tmp_path: Path) -> None:
    write_messages(ledger, 5, "OLD")
    ledger.audit("identity:a", "keys issue", None, {"n": 1})
    ledger.checkpoint()  # checkpoints within the purged part must not read as removed records
    clock.advance(200 * DAY)
    write_messages(ledger, 2, "NEW")
    ledger.checkpoint()

    purged = retention(engine, ledger, clock, JsonLinesArchive(tmp_path / "archive", clock)).run()

    assert purged == 5
    report = ledger.verify()
    assert report.intact, report.problems
    assert (report.records, report.retention_markers) == (3, 3)  # 2 new messages + the audit record; batches of 2
    assert [r.case_no for r in ledger.records(Filters(MESSAGE))] == ["NEW", "NEW"]
    assert len(ledger.records(Filters(AUDIT))) == 1  # audit records are kept (YIWANG_AUDIT_RETENTION_DAYS=0)
    kept = [line["row"] for line in archived(tmp_path / "archive")]
    assert [row["seq"] for row in kept] == [1, 2, 3, 4, 5] and all(is_sealed(row["body"]) for row in kept)
    write_messages(ledger, 1, "LATER")  # the writer goes on after the purge
    assert ledger.verify().intact


def test_audit_records_are_purged_too_when_their_retention_is_set(
        engine: Engine, ledger: Ledger, clock: FixedClock) -> None:
    ledger.audit("identity:a", "keys issue", None, {"n": 1})
    clock.advance(400 * DAY)
    ledger.audit("identity:a", "keys issue", None, {"n": 2})
    assert retention(engine, ledger, clock, audit_days=365).run() == 1
    assert ledger.verify().intact and len(ledger.records(Filters(AUDIT))) == 1


def test_an_interrupted_log_purge_still_verifies(engine: Engine, ledger: Ledger, clock: FixedClock) -> None:
    write_messages(ledger, 5, "OLD")
    clock.advance(200 * DAY)
    calls = 0

    def failing_second_batch(table: str, rows: list[dict[str, Any]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        retention(engine, ledger, clock, failing_second_batch).run()
    assert [r.seq for r in ledger.records(Filters(MESSAGE))] == [3, 4, 5]
    assert ledger.verify().intact


def tamper(engine: Engine, *statements: str) -> None:
    """Run SQL past the append-only triggers of the records and of the retention markers."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_retention_no_update" if engine.dialect.name == "sqlite"
                             else "ALTER TABLE ledger_retention DISABLE TRIGGER USER")
    tamper_records(engine, *statements)


def purged_log(engine: Engine, ledger: Ledger, clock: FixedClock) -> None:
    write_messages(ledger, 3, "OLD")
    clock.advance(200 * DAY)
    write_messages(ledger, 2, "NEW")
    ledger.checkpoint()  # signs seq 5: cutting off the tail after the marker would show
    retention(engine, ledger, clock, batch=10).run()
    assert ledger.verify().intact


def test_a_tampered_retention_marker_is_named(engine: Engine, ledger: Ledger, clock: FixedClock) -> None:
    purged_log(engine, ledger, clock)
    tamper(engine, "UPDATE ledger_retention SET seq = 4",  # claim one more record was purged ...
           "DELETE FROM ledger_records WHERE seq = 4")  # ... and remove it
    kinds = sorted((p.kind, p.seq) for p in ledger.verify().problems)
    assert kinds == [("forged_retention", 4), ("removed", 1)]  # the marker is ignored: seq 1–4 are missing


def test_a_marker_signed_by_a_stranger_lets_the_database_delete_but_verify_names_it(
        engine: Engine, ledger: Ledger, clock: FixedClock) -> None:
    purged_log(engine, ledger, clock)
    newest = ledger.records(Filters(MESSAGE))[-1]
    stranger, now, before = Ed25519Signer.generate(), clock.now(), clock.now()
    signature = stranger.sign(_retention_payload(newest.chain, newest.seq, newest.hash, before, now))
    with engine.begin() as conn:  # no trigger stands in the way: a marker covers the records
        conn.execute(insert(ledger_retention).values(
            chain=newest.chain, seq=newest.seq, head_hash=newest.hash, purged_before=before, at=now,
            signature=encode_signature(signature), key_id=stranger.key_id))
        conn.execute(ledger_records.delete().where(ledger_records.c.chain == newest.chain))
    problems = ledger.verify().problems
    assert [(p.kind, p.seq) for p in problems] == [("forged_retention", 5), ("removed", 5)]
    assert stranger.key_id in problems[0].detail


def test_records_no_marker_covers_cannot_be_deleted(engine: Engine, ledger: Ledger, clock: FixedClock) -> None:
    purged_log(engine, ledger, clock)
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_records"))
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE ledger_retention SET seq = 1"))
    assert ledger.verify().intact


def test_the_log_file_rotates_daily_and_keeps_the_configured_number(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "yiwang.log"
    path.parent.mkdir()
    for day in range(1, 11):  # ten days of rotated files from before
        (path.parent / f"yiwang.log.2026-11-{day:02d}").write_text("old\n")
    configure_logging("info", "json", log_file=path, keep_days=3)
    try:
        structlog.get_logger("t").info("to the file", phone=PHONE)
        structlog.get_config()["logger_factory"]().handler.doRollover()  # what midnight does
        structlog.get_logger("t").info("after rotation")
    finally:
        structlog.reset_defaults()
    rotated = sorted(p.name for p in path.parent.iterdir() if p.name != "yiwang.log")
    assert len(rotated) == 3 and "yiwang.log.2026-11-01" not in rotated
    newest = max(path.parent.glob("yiwang.log.*"), key=os.path.getmtime)
    line = json.loads(newest.read_text(encoding="utf-8").splitlines()[-1])
    assert line["event"] == "to the file" and line["phone"] == "138****0001"
    assert json.loads(path.read_text(encoding="utf-8"))["event"] == "after rotation"


def test_retention_settings_come_from_the_environment_and_the_job_is_scheduled(tmp_path: Path) -> None:
    settings = Settings.from_env({"YIWANG_RETENTION_DAYS": "30", "YIWANG_AUDIT_RETENTION_DAYS": "3650",
                                  "YIWANG_RETENTION_ARCHIVE_DIR": str(tmp_path / "a"),
                                  "YIWANG_RETENTION_INTERVAL_MS": "1000", "YIWANG_LOG_FILE": str(tmp_path / "y.log"),
                                  "YIWANG_LOG_RETENTION_DAYS": "7"})
    assert (settings.retention_days, settings.audit_retention_days, settings.retention_archive_dir,
            settings.retention_interval_ms, settings.log_file, settings.log_retention_days) == (
        30, 3650, tmp_path / "a", 1000, tmp_path / "y.log", 7)
    defaults = Settings.from_env({})
    assert (defaults.retention_days, defaults.audit_retention_days, defaults.retention_archive_dir,
            defaults.retention_interval_ms, defaults.log_file, defaults.log_retention_days) == (
        180, 0, None, 3_600_000, None, 30)
    for name, bad in (("YIWANG_RETENTION_DAYS", "0"), ("YIWANG_AUDIT_RETENTION_DAYS", "-1"),
                      ("YIWANG_LOG_RETENTION_DAYS", "x")):
        with pytest.raises(ConfigError, match=name if bad != "x" else "invalid"):
            Settings.from_env({name: bad})
    gateway = build_gateway(Settings(var_dir=tmp_path / "var", dispatch_in_process=False))
    try:
        job = next(job for job in gateway.scheduler.jobs if job.name == "retention")
        assert job.every == timedelta(hours=1)
    finally:
        gateway.close()
