"""Alembic migrations: they build the metadata's schema exactly, idempotently, and under concurrent start-up.

`test_migrated_schema_matches_the_metadata` is the one that fails when a table changes without a
migration: add one with `python -m gateway.persistence.migrate revision "what changes"`.

Each test runs on SQLite (a file of its own) and on PostgreSQL (a schema of its own inside the run's
database, chosen through `search_path` and dropped afterwards, so other tests' tables are untouched).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from gateway.persistence import tables as t
from gateway.persistence.bundle_tables import bundle_versions
from gateway.persistence.engine import make_engine
from gateway.persistence.migrate import (
    VERSION_TABLE,
    SchemaMismatch,
    alembic_config,
    context_options,
    current,
    head,
    migration_transaction,
    upgrade,
)
from gateway.persistence.schema import TABLE_MODULES
from gateway.persistence.schema_version import at_newest, newest_revision
from gateway.persistence.tables import metadata
from gateway.persistence.uow import create_schema
from tests.support.services import empty_database

REPO = Path(__file__).resolve().parents[2]
EVERY_TABLE = set(metadata.tables)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (a PostgreSQL schema is dropped afterwards with alembic_version)."""
    with empty_database(request, tmp_path, "migrations") as url:
        yield url


@pytest.fixture
def empty(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def differences(engine: Engine, target: MetaData = metadata) -> list[Any]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts=context_options(conn)), target))


def test_upgrade_creates_every_table_of_the_metadata(empty: Engine) -> None:
    assert tables(empty) == set() and current(empty) is None
    upgrade(empty)
    assert tables(empty) == EVERY_TABLE | {VERSION_TABLE}
    assert current(empty) == head()
    indexes = {ix["name"] for name in EVERY_TABLE for ix in inspect(empty).get_indexes(name)}
    assert {ix.name for table in metadata.tables.values() for ix in table.indexes} <= indexes


def test_migrated_schema_matches_the_metadata(empty: Engine) -> None:
    upgrade(empty)
    assert differences(empty) == [], "the tables changed without a migration: see gateway/persistence/migrate.py"
    # ...and the comparison does see a change: a column the migrations never added.
    changed = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["cases"].append_column(Column("priority", Integer))
    assert [d[0] for d in differences(empty, changed)] == ["add_column"]


def test_upgrading_twice_changes_nothing(empty: Engine) -> None:
    create_schema(empty)  # what every process does at start-up
    with empty.begin() as conn:
        conn.execute(text("INSERT INTO case_counters (scope, last_seq) VALUES ('x', 7)"))
    statements: list[str] = []
    event.listen(empty, "before_cursor_execute", lambda *args: statements.append(args[2]))
    create_schema(empty)
    assert not [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "DROP", "INSERT",
                                                                         "UPDATE", "DELETE"))]
    assert current(empty) == head()
    with empty.connect() as conn:
        assert conn.execute(text("SELECT last_seq FROM case_counters")).scalar_one() == 7


def test_downgrade_to_base_removes_every_table(empty: Engine) -> None:
    upgrade(empty)
    with migration_transaction(empty) as conn:
        command.downgrade(alembic_config(conn), "base")
    assert tables(empty) == {VERSION_TABLE}
    assert current(empty) is None


# --- databases made without Alembic ------------------------------------------------------------------


def test_a_database_made_by_create_all_is_adopted_at_head(empty: Engine) -> None:
    metadata.create_all(empty, tables=[t for name, t in metadata.tables.items() if name != "material_files"])
    upgrade(empty)  # the missing table is created, the rest kept
    assert current(empty) == head()
    assert tables(empty) == EVERY_TABLE | {VERSION_TABLE}
    assert differences(empty) == []


def test_a_database_made_by_create_all_but_different_is_refused(empty: Engine) -> None:
    metadata.create_all(empty)
    with empty.begin() as conn:
        conn.execute(text("DROP INDEX ix_cases_state"))
    with pytest.raises(SchemaMismatch, match="ix_cases_state"):
        upgrade(empty)
    assert current(empty) is None  # nothing recorded


def test_tables_dropped_without_the_version_table_are_created_again(empty: Engine) -> None:
    upgrade(empty)
    metadata.drop_all(empty)  # what a test harness emptying a database by dropping the tables does
    assert tables(empty) == {VERSION_TABLE}
    upgrade(empty)
    assert tables(empty) == EVERY_TABLE | {VERSION_TABLE}
    assert current(empty) == head()



# --- a current database, known without Alembic -------------------------------------------------------------


def test_every_migration_is_named_by_its_revision_and_follows_the_one_before() -> None:
    """What `schema_version.newest_revision` relies on: ids are sequential and name their files."""
    scripts = sorted(ScriptDirectory.from_config(alembic_config()).walk_revisions(), key=lambda s: s.revision)
    assert [s.revision for s in scripts] == [f"{n:04d}" for n in range(1, len(scripts) + 1)]
    for script in scripts:
        assert Path(script.path).name.startswith(f"{script.revision}_")
        assert script.down_revision == (f"{int(script.revision) - 1:04d}" if script.revision != "0001" else None)
    assert newest_revision() == head()


def test_a_current_database_is_known_without_alembic_and_anything_else_is_not(empty: Engine) -> None:
    assert not at_newest(empty)  # no version table
    upgrade(empty)
    assert at_newest(empty)
    with migration_transaction(empty) as conn:
        command.downgrade(alembic_config(conn), f"{int(head()) - 1:04d}")
    assert not at_newest(empty)  # stamped with an older revision
    create_schema(empty)
    assert at_newest(empty) and current(empty) == head()
    metadata.drop_all(empty)  # tables gone under a stamp at head
    assert not at_newest(empty)
    create_schema(empty)  # so the full upgrade runs and creates them again
    assert tables(empty) == EVERY_TABLE | {VERSION_TABLE} and at_newest(empty)


# --- processes -----------------------------------------------------------------------------------------

RACER = textwrap.dedent(
    """
    import sys, time
    from gateway.persistence.engine import make_engine
    from gateway.persistence.migrate import current, upgrade
    url, start_at = sys.argv[1], float(sys.argv[2])
    engine = make_engine(url)
    time.sleep(max(0.0, start_at - time.time()))
    upgrade(engine)
    print(current(engine))
    """
)


@pytest.mark.slow
def test_two_processes_upgrading_an_empty_database_at_once_both_succeed(empty_url: str, tmp_path: Path) -> None:
    start_at = str(time.time() + 1.5)  # after both have imported
    racers = [subprocess.Popen([sys.executable, "-c", RACER, empty_url, start_at], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err.decode()[-2000:] for _, err in outputs]
    assert [out.decode().strip() for out, _ in outputs] == [head(), head()]
    engine = make_engine(empty_url)
    try:
        assert tables(engine) == EVERY_TABLE | {VERSION_TABLE}
        assert differences(engine) == []
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.slow
def test_the_alembic_command_line_migrates_the_database_it_is_given(sqlite_url: str) -> None:
    alembic = Path(sys.executable).with_name("alembic")
    env = {**os.environ, "YIWANG_DATABASE_URL": sqlite_url}
    done = subprocess.run([str(alembic), "upgrade", "head"], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    engine = make_engine(sqlite_url)
    try:
        assert current(engine) == head()
        assert differences(engine) == []
    finally:
        engine.dispose()


# --- migrations of existing rows ---------------------------------------------------------------------

OWNED_KEYS = "0011"  # idempotency keys belong to their caller (issue 14)
AT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
CASES = sa.table("cases", *(sa.column(c) for c in ("case_no", "matter_code", "matter_version", "state", "channel",
                                                   "region_code", "applicant_index", "supplement_rounds", "version",
                                                   "created_at", "updated_at")),
                 *(sa.column(c, sa.JSON) for c in ("applicant", "green_channel", "materials", "form",
                                                   "missing_materials")))
EVENTS = sa.table("case_events", *(sa.column(c) for c in ("case_no", "seq", "at", "trigger", "to_state", "actor",
                                                          "reason")), sa.column("data", sa.JSON))
KEY_COLUMNS = ("key", "request_hash", "case_no", "status_code", "created_at")
KEYS = sa.table("idempotency_keys", *map(sa.column, KEY_COLUMNS), sa.column("response", sa.JSON))
OWNED = sa.table("idempotency_keys", *map(sa.column, ("owner", *KEY_COLUMNS)), sa.column("response", sa.JSON))


def submitted(conn: Connection, case_no: str, actor: str, key: str) -> None:
    """A case as the revisions before OWNED_KEYS stored one: its submit event and its Idempotency-Key."""
    conn.execute(sa.insert(CASES).values(
        case_no=case_no, matter_code="M", matter_version=1, state="submitted", channel="online_pc",
        region_code="150200", applicant_index="x", supplement_rounds=0, version=1, created_at=AT, updated_at=AT,
        applicant={}, green_channel=[], materials=[], form={}, missing_materials=[]))
    conn.execute(sa.insert(EVENTS).values(case_no=case_no, seq=1, at=AT, trigger="submit", to_state="submitted",
                                          actor=actor, reason="", data={}))
    conn.execute(sa.insert(KEYS).values(key=key, request_hash="h", case_no=case_no, status_code=201,
                                        created_at=AT, response={"case_no": case_no}))


def test_existing_idempotency_keys_take_their_owner_from_the_submit_event(empty: Engine) -> None:
    """...and a downgrade, where two identities used one key, keeps the first use."""
    before = ScriptDirectory.from_config(alembic_config()).get_revision(OWNED_KEYS).down_revision
    upgrade(empty, str(before))
    with empty.begin() as conn:
        submitted(conn, "C1", "applicant:id_hall", "k-1")
        submitted(conn, "C2", "agent:id_village", "k-2")
    upgrade(empty)
    with empty.connect() as conn:
        rows = set(conn.execute(sa.select(OWNED.c.owner, OWNED.c.key, OWNED.c.case_no)).all())
    assert rows == {("id_hall", "k-1", "C1"), ("id_village", "k-2", "C2")}
    assert inspect(empty).get_pk_constraint("idempotency_keys")["constrained_columns"] == ["owner", "key"]
    reused = {"key": "k-1", "case_no": "C2", "request_hash": "h", "status_code": 201, "response": {},
              "created_at": AT + timedelta(minutes=1)}
    with empty.begin() as conn:  # the same key is another identity's own ...
        conn.execute(sa.insert(OWNED).values(owner="id_village", **reused))
    with pytest.raises(IntegrityError), empty.begin() as conn:  # ... and still once per identity
        conn.execute(sa.insert(OWNED).values(owner="id_hall", **reused))
    with migration_transaction(empty) as conn:  # a key global again names one case: its first use
        command.downgrade(alembic_config(conn), str(before))
    with empty.connect() as conn:
        assert set(conn.execute(sa.select(KEYS.c.key, KEYS.c.case_no)).all()) == {("k-1", "C1"), ("k-2", "C2")}


# --- what migrations do to data already stored ------------------------------------------------------------


def _case_row(case_no: str, created_at: datetime) -> dict[str, Any]:
    return {"case_no": case_no, "matter_code": "M", "matter_version": 1, "state": "in_process", "channel": "online_pc",
            "region_code": "150200", "applicant": {}, "applicant_index": "i", "green_channel": [], "materials": [],
            "form": {}, "missing_materials": [], "supplement_rounds": 0, "version": 1, "created_at": created_at,
            "updated_at": created_at}


# case_tasks as revision 0011 left it (later revisions add columns the current table definition inserts)
TASKS_0011 = sa.table("case_tasks", *(sa.column(c) for c in ("case_no", "task_id", "department", "credit_code",
                                                              "sector", "lead", "state", "sector_ref")))


def _task_row(case_no: str, sector_ref: str | None, sector: str = "public_security") -> dict[str, Any]:
    return {"case_no": case_no, "task_id": "1", "department": "d", "credit_code": "c", "sector": sector,
            "lead": True, "state": "in_process", "sector_ref": sector_ref}


def test_references_held_twice_are_set_aside_with_a_dead_letter_when_they_become_unique(empty: Engine) -> None:
    """0012: of the tasks holding one reference of a sector, the earliest case's keeps it; each later one gives
    it up and gets a `validation` dead letter naming both cases. Nothing else changes, nothing is deleted."""
    upgrade(empty, ScriptDirectory.from_config(alembic_config()).get_revision("0012").down_revision)
    day = datetime(2026, 11, 24, 2, tzinfo=UTC)
    cases = {"LATER": day + timedelta(hours=2), "FIRST": day, "ALSO": day + timedelta(hours=1), "OTHER": day,
             "ELSEWHERE": day + timedelta(hours=3), "WAITING": day}
    with empty.begin() as conn:
        conn.execute(insert(t.cases), [_case_row(no, at) for no, at in cases.items()])
        conn.execute(insert(TASKS_0011), [_task_row("LATER", "GA1"), _task_row("FIRST", "GA1"),
                                            _task_row("ALSO", "GA1"), _task_row("OTHER", "GA2"),
                                            _task_row("ELSEWHERE", "GA1", sector="housing_fund"),
                                            _task_row("WAITING", None)])
    upgrade(empty)
    with empty.connect() as conn:
        references = dict(conn.execute(select(t.case_tasks.c.case_no, t.case_tasks.c.sector_ref)).all())
        letters = conn.execute(select(t.dead_letters).order_by(t.dead_letters.c.case_no)).mappings().all()
    assert references == {"FIRST": "GA1", "LATER": None, "ALSO": None, "OTHER": "GA2", "ELSEWHERE": "GA1",
                          "WAITING": None}
    assert [(d["case_no"], d["sector"], d["error_class"], d["status"], d["outbox_id"]) for d in letters] == [
        ("ALSO", "public_security", "validation", "dead", None), ("LATER", "public_security", "validation", "dead", None)]
    assert all("FIRST" in d["error_message"] and d["case_no"] in d["error_message"] and "'GA1'" in d["error_message"]
               for d in letters)
    with pytest.raises(IntegrityError), empty.begin() as conn:  # from now on the database refuses a second holder
        conn.execute(update(t.case_tasks).where(t.case_tasks.c.case_no == "LATER").values(sector_ref="GA2"))
    with empty.begin() as conn:  # ...but not tasks without one, nor the same reference at another sector
        conn.execute(update(t.case_tasks).where(t.case_tasks.c.case_no == "OTHER").values(sector_ref=None))


def test_every_table_module_is_in_the_one_list() -> None:
    """A table module left off `TABLE_MODULES` would be missing from the migrations' comparison."""
    package = Path(t.__file__).parent
    on_disk = {path.stem for path in package.glob("*tables.py")}
    assert {module.__name__.rpartition(".")[2] for module in TABLE_MODULES} == on_disk


# bundle_versions as revision 0014 left it (0015 adds test_outcome)
VERSIONS_0014 = sa.table("bundle_versions", *(sa.column(c) for c in (
    "sector", "version", "status", "kind", "archive", "sha256", "registered_at", "registered_by")),
    sa.column("summary", sa.JSON), sa.column("test_result", sa.JSON(none_as_null=True)))


def test_versions_tested_before_the_outcome_was_kept_get_the_outcome_their_result_says(empty: Engine) -> None:
    """0015: reachable → accepted, not reachable → unreachable, never tested → NULL (activation needs force)."""
    upgrade(empty, "0014")
    results = {"1": {"reachable": True, "answer": "ok"}, "2": {"reachable": False, "answer": "ConnectError"},
               "3": None}
    with empty.begin() as conn:
        for version, result in results.items():
            conn.execute(sa.insert(VERSIONS_0014).values(
                sector="s", version=version, status="registered", kind="rest", archive=b"zip", sha256="0" * 64,
                summary={}, test_result=result, registered_at=AT, registered_by="test"))
    upgrade(empty)
    with empty.connect() as conn:
        outcomes = dict(conn.execute(sa.select(bundle_versions.c.version, bundle_versions.c.test_outcome)).all())
    assert outcomes == {"1": "accepted", "2": "unreachable", "3": None}
