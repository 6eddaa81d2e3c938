"""Alembic's entry point, for both ways of running migrations.

- In code (`gateway.persistence.migrate.upgrade`, what every process does at start-up): the caller
  passes a connection in `config.attributes["connection"]`, already inside the transaction holding the
  migration lock; we migrate on it and the caller commits.
- From the `alembic` command line (repo root, `alembic.ini`): we open the database named by
  `YIWANG_DATABASE_URL` (default `sqlite:///var/yiwang.db`, from alembic.ini) and migrate inside the
  same kind of locked transaction. Offline (`--sql`) mode is not supported.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from gateway.persistence.engine import make_engine
from gateway.persistence.migrate import context_options, migration_transaction
from gateway.persistence.schema import metadata

config = context.config
target_metadata = metadata  # whole: gateway.persistence.schema imports every table module


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **context_options(connection))
    with context.begin_transaction():  # inside the caller's transaction: Alembic opens none of its own
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
elif context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = os.environ.get("YIWANG_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set YIWANG_DATABASE_URL or sqlalchemy.url in alembic.ini")
    engine = make_engine(url)
    try:
        with migration_transaction(engine) as conn:
            run_migrations(conn)
    finally:
        engine.dispose()
