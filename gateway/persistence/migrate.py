"""Schema migrations with Alembic: `upgrade(engine)` brings a database to the newest revision.

Every process calls it at start-up (`uow.create_schema`), so several may run it at the same instant on
one database. The whole upgrade is therefore ONE transaction that starts by taking the database's
migration lock: on PostgreSQL `pg_advisory_xact_lock(MIGRATION_LOCK)`, on SQLite the write lock
`BEGIN IMMEDIATE` takes (the begin hook of `engine.make_engine`). The second process waits there,
then reads the version table and finds the schema current. Both databases have transactional DDL,
so a migration that fails half-way leaves nothing behind.

Two kinds of database made without Alembic are brought under it (`_adopt`):
- tables but no version table: made by `metadata.create_all` (before migrations existed, or by a
  test). If its schema is the current metadata's — whole tables may be missing, they are created —
  it is stamped at head; any other difference is an error that names the differences.
- a version table but none of our tables: the tables were dropped (`metadata.drop_all` leaves
  `alembic_version`), so the database is empty again and is migrated from the start.

The migrations live in `migrations/versions/`. To add one, change the tables, then run
    .venv/bin/python -m gateway.persistence.migrate revision "add cases.priority"
which autogenerates `migrations/versions/NNNN_add_cases_priority.py` against a scratch SQLite database
at head; read and tidy it before committing (`tests/integration/test_migrations.py` fails until it matches).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, inspect, select
from sqlalchemy.exc import OperationalError

from gateway.persistence.engine import READ_ONLY, SQLITE_BUSY_TIMEOUT_MS, make_engine
from gateway.persistence.schema import metadata  # whole: every table module

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
MIGRATION_LOCK = 8_748_655_011_491_701_858  # int.from_bytes(b"yiwangdb", "big"): our advisory lock key


class SchemaMismatch(RuntimeError):
    """A database without a version table whose tables differ from the current metadata."""


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to `revision` (default: the newest), safely against concurrent callers."""
    with migration_transaction(engine) as conn:
        _adopt(conn)
        command.upgrade(alembic_config(conn), revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for a database Alembic has not touched."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{READ_ONLY: True})  # a deferred BEGIN on SQLite: no write lock
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head() -> str:
    """The newest revision in `migrations/versions/`."""
    head_revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head_revision is not None, "no migrations found"
    return head_revision


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code: no ini file, no dependence on the working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection  # env.py migrates on it, inside our transaction
    return config


def context_options(connection: Connection) -> dict[str, Any]:
    """How env.py configures Alembic; also what `_adopt` and the tests compare the schema with."""
    return {
        "target_metadata": metadata,
        "compare_type": True,
        "render_as_batch": connection.dialect.name == "sqlite",  # SQLite ALTERs by copying the table
        "transactional_ddl": True,  # on SQLite too: we run every migration inside our own transaction
        "version_table": VERSION_TABLE,
    }


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the database's migration lock; commits when the block ends.

    On SQLite, foreign keys are off for its length: a batch ALTER copies a table, drops the original and
    renames the copy, and with them on, dropping a referenced table fails (or fails the COMMIT when
    deferred). `PRAGMA foreign_key_check` runs before the commit instead. The pragma only takes effect
    outside a transaction, so it is set on the driver's connection before BEGIN and restored after.
    """
    with _connect(engine) as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw: Any = conn.connection.dbapi_connection
        foreign_keys = sqlite and raw.execute("PRAGMA foreign_keys").fetchone()[0]
        if foreign_keys:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
                elif sqlite and not raw.in_transaction:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # an engine without make_engine's begin hook
                yield conn
                if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise RuntimeError(f"the migration leaves rows with dangling foreign keys: {broken[:10]}")
        finally:
            if foreign_keys:
                raw.execute("PRAGMA foreign_keys=ON")


def _connect(engine: Engine) -> Connection:
    """A connection; on SQLite, riding out a brand-new file's switch to WAL by another process.

    Two processes opening a database file that does not exist yet both run `PRAGMA journal_mode=WAL`
    (engine.py); the switch needs a lock SQLite does not wait for, so one of them gets "database is
    locked" at once, whatever the busy timeout. Once the file is in WAL mode this cannot happen again.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return engine.connect()
        except OperationalError as exc:
            locked = engine.dialect.name == "sqlite" and "database is locked" in str(exc.orig)
            if not locked or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def schema_differences(conn: Connection) -> list[Any]:
    """What `alembic revision --autogenerate` would write: empty when the database matches the metadata.

    Tables the metadata does not know are ignored (they are not ours)."""

    def ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (type_ == "table" and reflected and compare_to is None)

    context = MigrationContext.configure(conn, opts={**context_options(conn), "include_object": ours})
    return list(compare_metadata(context, metadata))


def _adopt(conn: Connection) -> None:
    present = set(inspect(conn).get_table_names())
    ours = present & set(metadata.tables)
    if VERSION_TABLE in present:
        if not ours and _recorded_revisions_are_ours(conn):
            # The tables were dropped but not the version table: the database is empty, start over.
            conn.exec_driver_sql(f"DELETE FROM {VERSION_TABLE}")
        return
    if not ours:
        return  # an empty database: the migrations create everything
    metadata.create_all(conn, tables=[t for name, t in metadata.tables.items() if name not in present])
    differences = schema_differences(conn)
    if differences:
        listed = "\n".join(f"  {d!r}" for d in differences[:20])
        raise SchemaMismatch(
            f"the database has tables but no {VERSION_TABLE} table, and they differ from the current schema:\n"
            f"{listed}\nBring it in line by hand, or `alembic stamp <revision it matches>` and start again."
        )
    command.stamp(alembic_config(conn), "head")


def _recorded_revisions_are_ours(conn: Connection) -> bool:
    """Whether the version table records our revisions (not another application's: that is left alone)."""
    recorded = {row[0] for row in conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")}
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    return recorded <= known


def new_revision(message: str) -> Path:
    """Autogenerate the next revision (NNNN_<message>.py) from a scratch SQLite database at head."""
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            upgrade(engine)
            with migration_transaction(engine) as conn:
                config = alembic_config(conn)
                rev_id = f"{int(head()) + 1:04d}"
                script = command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
        finally:
            engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        sys.exit('usage: python -m gateway.persistence.migrate revision "what changes"')
    print(new_revision(sys.argv[2]))
