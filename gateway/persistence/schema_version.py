"""Is a database already at the newest migration? Answered with one read, no lock and no Alembic.

Every command opens the database through `uow.create_schema`; Alembic's upgrade takes the migration lock
(SQLite's write lock) and loads every migration script, which is most of a short CLI command's start-up.
A database that is current needs none of that. Migration ids are sequential four-digit numbers and each
file is named `<id>_<slug>.py` (`migrate.revision` makes them so; tests/integration/test_migrations.py
checks every file), so the newest id is the largest prefix in `migrations/versions/`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from gateway.persistence.engine import READ_ONLY
from gateway.persistence.schema import metadata

VERSIONS_DIR = Path(__file__).with_name("migrations") / "versions"


def newest_revision() -> str:
    """The id of the newest migration file."""
    return max(path.name.split("_", 1)[0] for path in VERSIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.py"))


def at_newest(engine: Engine) -> bool:
    """True when the database is stamped with the newest revision and holds every table of the metadata.

    Anything else — no version table, an older stamp, tables dropped under a stamp, a database that does not
    answer — is False, and the caller runs the full upgrade, which adopts, migrates or reports the error."""
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**{READ_ONLY: True})  # a deferred BEGIN on SQLite: no write lock
            stamped = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
            tables = set(inspect(conn).get_table_names())
    except DBAPIError:  # no version table yet (or no database): the upgrade will say which
        return False
    return stamped == [newest_revision()] and set(metadata.tables) <= tables
