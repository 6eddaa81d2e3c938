"""The tamper-evident logs: hash chains with signed checkpoints, on SQLite and PostgreSQL.

Every tampering test first gets past the append-only triggers, as an attacker with database access would
(SQLite: drop them; PostgreSQL: disable them), then changes, removes or reorders rows, and checks that
`verify()` — and `yiwang audit verify` — names what was done, where.
"""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing
import typer
from sqlalchemy import Engine, event, insert, select, text
from sqlalchemy.exc import DatabaseError
from typer.testing import CliRunner

from certstore.algorithms import CryptoError
from certstore.keyring import FieldSealer, MasterKeys
from certstore.signing import Ed25519Signer, encode_signature, load_or_create_signing_key
from gateway.audit.ledger import AUDIT, MESSAGE, Filters, Ledger, Problem, record_hash
from gateway.cli.audit import audit_commands, make_audit_app
from gateway.persistence.ledger_tables import ledger_checkpoints, ledger_records
from tests.support.ledger import tamper

ID_NUMBER = "150203198503120039"
KEYS = MasterKeys.parse(MasterKeys.generate("t1"))


def make_ledger(engine: Engine, **options: object) -> Ledger:
    return Ledger(engine, FieldSealer(KEYS), SIGNER, **options)  # type: ignore[arg-type]


SIGNER = Ed25519Signer.generate()


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    return make_ledger(engine)


def fill(ledger: Ledger, count: int = 5) -> None:
    for i in range(1, count + 1):
        ledger.audit("identity:id_a", "keys issue", f"n={i}", {"i": i})


def problems(ledger: Ledger) -> list[tuple[str, int | None]]:
    return [(p.kind, p.seq) for p in ledger.verify().problems]


def only(ledger: Ledger, kind: str) -> Problem:
    found = [p for p in ledger.verify().problems if p.kind == kind]
    assert found, f"no {kind} problem in {ledger.verify().problems}"
    return found[0]


def test_intact_chains_verify(ledger: Ledger) -> None:
    fill(ledger, 4)
    ledger.message("social_security", "sent", "submit_case", "C1", "k1", {"x": 1}, "sent")
    ledger.message("social_security", "received", "submit_case", "C1", "k1", {"sector_ref": "SB1"}, "ok")
    assert ledger.checkpoint() == 2
    report = ledger.verify()
    assert report.intact and (report.chains, report.records, report.checkpoints) == (2, 6, 2)
    assert [r.seq for r in ledger.records(Filters(AUDIT))] == [1, 2, 3, 4]


def test_the_tables_refuse_update_and_delete(ledger: Ledger, engine: Engine) -> None:
    fill(ledger, 1)
    ledger.checkpoint()
    for statement in ("UPDATE ledger_records SET actor = 'x'", "DELETE FROM ledger_records",
                      "UPDATE ledger_checkpoints SET seq = 9", "DELETE FROM ledger_checkpoints"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert ledger.verify().intact


def test_a_changed_record_is_named(ledger: Ledger, engine: Engine) -> None:
    fill(ledger)
    record = ledger.records(Filters(AUDIT))[2]
    tamper(engine, f"UPDATE ledger_records SET actor = 'identity:someone_else' WHERE id = {record.id}")
    problem = only(ledger, "changed")
    assert (problem.chain, problem.seq, problem.record_id) == (record.chain, 3, record.id)
    assert problems(ledger) == [("changed", 3)]


def test_a_removed_middle_record_is_named(ledger: Ledger, engine: Engine) -> None:
    fill(ledger)
    tamper(engine, "DELETE FROM ledger_records WHERE seq = 3")
    assert problems(ledger) == [("removed", 3)]
    assert "seq 3 missing" in only(ledger, "removed").detail


def test_removing_the_last_record_before_a_checkpoint_is_named(ledger: Ledger, engine: Engine) -> None:
    fill(ledger, 4)
    ledger.checkpoint()
    tamper(engine, "DELETE FROM ledger_records WHERE seq = 4")
    assert problems(ledger) == [("removed", 4)]
    assert "no longer there" in only(ledger, "removed").detail


def test_a_rewritten_and_rehashed_chain_is_caught_by_its_checkpoint(ledger: Ledger, engine: Engine) -> None:
    fill(ledger, 3)
    ledger.checkpoint()
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(ledger_records).order_by(ledger_records.c.seq))]
    rows[1]["actor"] = "identity:forger"
    statements = []
    for i, row in enumerate(rows):  # the attacker fixes every hash after the change
        row["prev_hash"] = rows[i - 1]["hash"] if i else "genesis"
        row["hash"] = record_hash(row, "sha256")
        statements.append(f"UPDATE ledger_records SET actor = '{row['actor']}', prev_hash = '{row['prev_hash']}', "
                          f"hash = '{row['hash']}' WHERE id = {row['id']}")
    tamper(engine, *statements)
    assert problems(ledger) == [("changed", 3)]
    assert "signed another record" in only(ledger, "changed").detail


def test_swapped_records_are_named(ledger: Ledger, engine: Engine) -> None:
    fill(ledger)
    tamper(engine, "UPDATE ledger_records SET seq = -2 WHERE seq = 2", "UPDATE ledger_records SET seq = 2 WHERE seq = 3",
           "UPDATE ledger_records SET seq = 3 WHERE seq = -2")
    found = problems(ledger)
    assert ("reordered", 3) in found and ("reordered", 2) in found
    assert "reordered" in only(ledger, "reordered").detail


def test_a_forged_checkpoint_is_named(ledger: Ledger, engine: Engine) -> None:
    fill(ledger, 3)
    ledger.checkpoint()
    tamper(engine, "UPDATE ledger_checkpoints SET head_hash = 'sha256:00' WHERE seq = 3")
    assert problems(ledger) == [("forged_checkpoint", 3)]


def test_a_checkpoint_signed_by_a_stranger_is_named(ledger: Ledger, engine: Engine) -> None:
    fill(ledger, 2)
    head = ledger.records(Filters(AUDIT))[-1]
    stranger, at = Ed25519Signer.generate(), datetime.now(UTC)
    from gateway.audit.ledger import _checkpoint_payload  # the attacker knows the format: it is no secret

    with engine.begin() as conn:
        conn.execute(insert(ledger_checkpoints).values(
            chain=head.chain, seq=2, head_hash=head.hash, at=at, key_id=stranger.key_id,
            signature=encode_signature(stranger.sign(_checkpoint_payload(head.chain, 2, head.hash, at)))))
    problem = only(ledger, "forged_checkpoint")
    assert stranger.key_id in problem.detail


def test_two_writers_append_concurrently_and_both_chains_verify(engine: Engine) -> None:
    first, second = make_ledger(engine), make_ledger(engine)
    threads = [threading.Thread(target=fill, args=(writer, 15)) for writer in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first.checkpoint(), second.checkpoint()
    report = first.verify()
    assert report.intact, report.problems
    assert (report.chains, report.records) == (2, 60)
    for writer in (first, second):
        seqs = [r.seq for r in writer.records(Filters(AUDIT, actor="identity:id_a"), 100) if writer.writer in r.chain]
        assert seqs == list(range(1, 31))


@pytest.mark.timeout(60)
def test_callers_arriving_during_a_write_are_committed_together_each_with_its_own_record(engine: Engine) -> None:
    """Group commit: while one record's transaction is held open, 20 more callers queue; the next writer
    commits them all in one transaction, each caller returns its own record, and the chain verifies."""
    ledger = make_ledger(engine)
    held, release = threading.Event(), threading.Event()
    commits: list[int] = []

    @event.listens_for(engine, "commit")
    def count(_conn: object) -> None:
        commits.append(1)
        if not held.is_set():  # the first record's transaction waits for the crowd to gather
            held.set()
            release.wait(timeout=20)

    records: dict[int, object] = {}

    def append(i: int) -> None:
        records[i] = ledger.audit("identity:id_a", "keys issue", f"n={i}", {"i": i})

    first = threading.Thread(target=append, args=(0,))
    first.start()
    assert held.wait(timeout=20)
    crowd = [threading.Thread(target=append, args=(i,)) for i in range(1, 21)]
    for thread in crowd:
        thread.start()
    time.sleep(0.3)  # every caller of the crowd has queued its record behind the held one
    release.set()
    for thread in (first, *crowd):
        thread.join(timeout=20)
    event.remove(engine, "commit", count)
    assert len(commits) == 2  # the held record's transaction, then one for all 20 others
    assert sorted(r.subject for r in records.values()) == sorted(f"n={i}" for i in range(21))  # type: ignore[attr-defined]
    assert sorted(r.seq for r in records.values()) == list(range(1, 22))  # type: ignore[attr-defined]
    assert ledger.verify().intact


def test_a_record_whose_body_cannot_be_sealed_fails_alone(ledger: Ledger) -> None:
    class Unsealable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    with pytest.raises(Exception):  # noqa: B017 - whatever the body's failure is, it reaches its caller
        ledger.audit("identity:id_a", "keys issue", "bad", {"x": Unsealable()})
    fill(ledger, 2)
    assert ledger.verify().intact


def test_message_bodies_are_sealed_at_rest(ledger: Ledger, engine: Engine) -> None:
    ledger.message("social_security", "sent", "submit_case", "C1", "k1", {"applicant": {"id_number": ID_NUMBER}},
                   "sent")
    with engine.connect() as conn:
        raw = [str(tuple(row)) for row in conn.execute(select(ledger_records))]
    assert ID_NUMBER not in "".join(raw) and "yw1." in "".join(raw)
    record = ledger.records(Filters(MESSAGE))[0]
    assert ledger.open_body(record)["body"]["applicant"]["id_number"] == ID_NUMBER
    assert (record.sector, record.action, record.subject, record.outcome) == ("social_security", "sent",
                                                                              "submit_case", "sent")


def test_checkpoints_come_every_n_records_and_every_interval(engine: Engine) -> None:
    counted = make_ledger(engine, checkpoint_every=3)
    fill(counted, 7)
    with engine.connect() as conn:
        assert [r.seq for r in conn.execute(select(ledger_checkpoints))] == [3, 6]
    timed = make_ledger(engine, checkpoint_ms=20)
    timed.start()
    try:
        fill(timed, 1)
        deadline = time.monotonic() + 5
        while not any(r.chain.endswith(timed.writer) for r in _checkpoints(engine)):
            assert time.monotonic() < deadline, "no timed checkpoint"
            time.sleep(0.01)
    finally:
        timed.close()
    counted.close()  # the shutdown checkpoint signs seq 7
    assert sorted(r.seq for r in _checkpoints(engine)) == [1, 3, 6, 7]
    assert counted.verify().intact


def _checkpoints(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(conn.execute(select(ledger_checkpoints)))


def test_the_sm3_digest_names_itself_in_each_hash(engine: Engine) -> None:
    ledger = make_ledger(engine, digest_name="sm3")
    fill(ledger, 2)
    assert all(r.hash.startswith("sm3:") for r in ledger.records(Filters(AUDIT)))
    assert ledger.verify().intact


def test_the_signing_key_is_made_once_sealed_and_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger-signing.key"
    first = load_or_create_signing_key(path, KEYS)
    assert load_or_create_signing_key(path, KEYS).key_id == first.key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.private_bytes().hex() not in path.read_text()
    with pytest.raises(CryptoError):
        load_or_create_signing_key(path, MasterKeys.parse(MasterKeys.generate("t1")))  # same id, other key
    assert list(tmp_path.iterdir()) == [path]  # no scratch file left behind


# --- the command line --------------------------------------------------------------------------------------


@contextmanager
def opened(ledger: Ledger) -> Iterator[Ledger]:
    yield ledger


def test_a_whole_chain_deleted_with_its_checkpoints_is_caught_by_the_anchors_kept_outside(
    ledger: Ledger, engine: Engine, tmp_path: Path
) -> None:
    fill(ledger, 3)
    ledger.message("social_security", "sent", "submit_case", "C1", "k1", {"x": 1}, "sent")
    ledger.checkpoint()
    runner, app = CliRunner(), make_audit_app(lambda: opened(ledger))
    exported = runner.invoke(app, ["anchors"])
    assert exported.exit_code == 0 and exported.output.count("head_hash") == 2
    kept = tmp_path / "anchors.jsonl"
    kept.write_text(exported.output + '{"event": "delivered", "sector": "social_security"}\n')  # a log line
    assert runner.invoke(app, ["verify", "--anchors", str(kept)]).exit_code == 0

    [audit_chain] = {r.chain for r in ledger.records(Filters(AUDIT))}
    tamper(engine, f"DELETE FROM ledger_checkpoints WHERE chain = '{audit_chain}'",
           f"DELETE FROM ledger_records WHERE chain = '{audit_chain}'")
    assert ledger.verify().intact  # inside the database nothing is left to show it
    caught = runner.invoke(app, ["verify", "--anchors", str(kept)])
    assert caught.exit_code == 1 and "removed" in caught.output and "no longer there" in caught.output
    (tmp_path / "garbage").write_text("not json\n")
    assert runner.invoke(app, ["verify", "--anchors", str(tmp_path / "garbage")]).exit_code == 2


# --- verifying from anchors kept outside the database ------------------------------------------------------


def rewrite_from(engine: Engine, seq: int) -> None:
    """Change the record at `seq` and fix every hash after it, as an attacker covering their tracks would;
    the database's checkpoints go too, so nothing inside the database contradicts the rewrite."""
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(ledger_records).order_by(ledger_records.c.seq))]
    rows[seq - 1]["actor"] = "identity:forger"
    statements = ["DELETE FROM ledger_checkpoints"]
    for i, row in enumerate(rows):
        row["prev_hash"] = rows[i - 1]["hash"] if i else "genesis"
        row["hash"] = record_hash(row, "sha256")
        statements.append(f"UPDATE ledger_records SET actor = '{row['actor']}', prev_hash = '{row['prev_hash']}', "
                          f"hash = '{row['hash']}' WHERE id = {row['id']}")
    tamper(engine, *statements)


@pytest.fixture
def anchored(ledger: Ledger, tmp_path: Path) -> tuple[typer.Typer, Path]:
    """Ten records anchored outside the database (`yiwang audit anchors` at seq 10), then three more."""
    app = make_audit_app(lambda: opened(ledger))
    fill(ledger, 10)
    ledger.checkpoint()
    kept = tmp_path / "anchors.jsonl"
    exported = CliRunner().invoke(app, ["anchors"])
    assert exported.exit_code == 0 and '"signature"' in exported.stdout
    kept.write_text(exported.stdout)
    fill(ledger, 3)
    ledger.checkpoint()
    return app, kept


def verified(app: typer.Typer, *args: str, code: int = 0) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["verify", *args, "--json"])
    assert result.exit_code == code, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_verify_from_anchors_reads_only_what_came_after_them(anchored: tuple[typer.Typer, Path]) -> None:
    app, kept = anchored
    full = verified(app)
    assert (full["records"], full["anchored_chains"], full["intact"]) == (13, 0, True)
    incremental = verified(app, "--anchors", str(kept))
    assert (incremental["records"], incremental["anchored_chains"], incremental["intact"]) == (4, 1, True)
    said = CliRunner().invoke(app, ["verify", "--anchors", str(kept)])
    assert said.exit_code == 0 and "4 records" in said.stdout and "1 chains from their anchor" in said.stdout


def test_verify_from_anchors_catches_a_record_changed_after_the_anchor(
        anchored: tuple[typer.Typer, Path], engine: Engine) -> None:
    app, kept = anchored
    tamper(engine, "UPDATE ledger_records SET actor = 'identity:forger' WHERE seq = 12")
    report = verified(app, "--anchors", str(kept), code=1)
    assert [(p["kind"], p["seq"]) for p in report["problems"]] == [("changed", 12)]


def test_verify_from_anchors_catches_a_rewrite_before_the_anchor_that_contradicts_it(
        anchored: tuple[typer.Typer, Path], engine: Engine, ledger: Ledger) -> None:
    app, kept = anchored
    rewrite_from(engine, 3)
    assert ledger.verify().intact  # inside the database nothing is left to show it
    report = verified(app, "--anchors", str(kept), code=1)
    [problem] = report["problems"]
    assert (problem["kind"], problem["seq"]) == ("changed", 10) and "rewritten" in problem["detail"]
    assert report["records"] == 4  # caught without reading the records before the anchor


def test_verify_from_anchors_catches_the_anchored_record_itself_changed(
        anchored: tuple[typer.Typer, Path], engine: Engine) -> None:
    app, kept = anchored
    tamper(engine, "UPDATE ledger_records SET subject = 'n=forged' WHERE seq = 10")
    report = verified(app, "--anchors", str(kept), code=1)
    assert [(p["kind"], p["seq"]) for p in report["problems"]] == [("changed", 10)]


def test_an_anchor_whose_signature_fails_is_a_finding_and_not_a_starting_point(
        anchored: tuple[typer.Typer, Path]) -> None:
    app, kept = anchored
    anchor = json.loads(kept.read_text())
    kept.write_text(json.dumps({**anchor, "seq": 9}) + "\n")  # moved back: its signature no longer matches
    report = verified(app, "--anchors", str(kept), code=1)
    assert [p["kind"] for p in report["problems"]] == ["forged_checkpoint"]
    assert (report["records"], report["anchored_chains"]) == (13, 0)  # verified in full instead


@pytest.mark.parametrize("content, says", [
    ("not json\n", "anchors.jsonl:1: not a JSON anchor line"),
    ('{"chain": "audit:x", "seq": "nine", "head_hash": "sha256:00"}\n', "not a JSON anchor line"),
    ('{"chain": "audit:x", "seq": 1, "head_hash": "sha256:00", "at": "yesterday", "key_id": "k", '
     '"signature": "s"}\n', "not a JSON anchor line"),
    ('{"event": "delivered"}\n', "holds no anchor"),
    ("", "holds no anchor"),
])
def test_a_garbled_anchors_file_is_a_usage_error(ledger: Ledger, tmp_path: Path, content: str, says: str) -> None:
    fill(ledger, 2)
    kept = tmp_path / "anchors.jsonl"
    kept.write_text(content)
    result = CliRunner().invoke(make_audit_app(lambda: opened(ledger)), ["verify", "--anchors", str(kept)])
    assert result.exit_code == 2 and says in result.stderr and "Traceback" not in result.output


def test_audit_verify_exits_0_when_intact_1_naming_problems_2_on_bad_input(ledger: Ledger, engine: Engine) -> None:
    runner, app = CliRunner(), make_audit_app(lambda: opened(ledger))
    fill(ledger, 3)
    intact = runner.invoke(app, ["verify"])
    assert intact.exit_code == 0 and "intact" in intact.output
    listed = runner.invoke(app, ["list", "--action", "keys issue", "--since", "2000-01-01T00:00"])
    assert listed.exit_code == 0 and listed.output.count("keys issue") == 3
    tamper(engine, "DELETE FROM ledger_records WHERE seq = 2")
    broken = runner.invoke(app, ["verify"])
    assert broken.exit_code == 1 and "removed" in broken.output and "seq 2 missing" in broken.output
    assert runner.invoke(app, ["list", "--since", "yesterday"]).exit_code == 2
    assert runner.invoke(app, ["tail", "--kind", "gossip"]).exit_code == 2


def test_admin_commands_write_audit_records_read_only_ones_do_not() -> None:
    app = typer.Typer()
    written: list[tuple[str, str | None, str]] = []

    @app.command()
    def revoke(identity_id: str, password: str = "") -> None:
        if identity_id == "bad":
            raise typer.Exit(2)

    @app.command("list")
    def list_() -> None:
        pass

    details: list[object] = []
    audit_commands(app, "keys", lambda action, subject, detail, outcome: (
        written.append((action, subject, outcome)), details.append(detail)))
    runner = CliRunner()
    assert runner.invoke(app, ["revoke", "id_1", "--password", "p4ss"]).exit_code == 0
    assert runner.invoke(app, ["revoke", "bad"]).exit_code == 2
    assert runner.invoke(app, ["list"]).exit_code == 0
    assert written == [("keys revoke", "identity_id=id_1", "ok"), ("keys revoke", "identity_id=bad", "exit 2")]
    assert "p4ss" not in str(details) and "(not recorded)" in str(details)


def test_long_strings_in_bodies_are_kept_as_their_length_and_digest(ledger: Ledger) -> None:
    inline_file = "QUJD" * 20_000
    ledger.message("housing_fund", "sent", "submit_case", "C1", "k1", {"content_base64": inline_file, "n": 1}, "sent")
    body = ledger.open_body(ledger.records(Filters(MESSAGE))[0])["body"]
    assert body["n"] == 1 and body["content_base64"].startswith("[80000 characters elided; sha256 ")


def test_checkpoint_settings_come_from_the_environment_and_bad_ones_are_named() -> None:
    from gateway.config import ConfigError, Settings

    settings = Settings.from_env({"YIWANG_CHECKPOINT_EVERY": "50", "YIWANG_CHECKPOINT_MS": "5000"})
    assert (settings.checkpoint_every, settings.checkpoint_ms) == (50, 5000)
    with pytest.raises(ConfigError, match="YIWANG_CHECKPOINT_EVERY"):
        Settings.from_env({"YIWANG_CHECKPOINT_EVERY": "0"})


def test_verify_tells_its_progress(ledger: Ledger) -> None:
    fill(ledger, 1200)
    told: list[tuple[int, int]] = []
    assert ledger.verify(progress=lambda read, total: told.append((read, total))).records == 1200
    assert told == [(500, 1200), (1000, 1200)]  # what `yiwang audit verify` draws its progress bar from


def test_audit_list_takes_the_apis_direction_for_messages_and_prints_json(ledger: Ledger) -> None:
    ledger.message("social_security", "sent", "submit_case", "C1", "k1", {"x": 1}, "sent")
    ledger.message("social_security", "received", "submit_case", "C1", "k1", {"sector_ref": "SB1"}, "ok")
    app = make_audit_app(lambda: opened(ledger))
    listed = CliRunner().invoke(app, ["list", "--kind", "message", "--direction", "received", "--json"])
    assert listed.exit_code == 0, listed.output
    [received] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (received["action"], received["case_no"], received["sector"]) == ("received", "C1", "social_security")
    assert received["at"].endswith("+08:00") and "body" not in received  # GET /v1/messages' fields, no body
    refused = CliRunner().invoke(app, ["list", "--direction", "received"])  # --kind audit has no direction
    assert refused.exit_code == 2 and "--direction" in refused.stderr


def test_the_checkpoint_log_lines_are_signed_anchors_too(ledger: Ledger, tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logged:
        fill(ledger, 10)
        ledger.checkpoint()
    fill(ledger, 2)
    shipped = tmp_path / "shipped.log"  # the JSON log lines as a log shipper keeps them, other events among them
    shipped.write_text("".join(json.dumps(event) + "\n" for event in logged))
    result = CliRunner().invoke(make_audit_app(lambda: opened(ledger)), ["verify", "--anchors", str(shipped), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["anchored_chains"], report["records"]) == (1, 3)  # read from the logged checkpoint at seq 10 on
