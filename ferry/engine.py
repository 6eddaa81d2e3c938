"""The agent's SQLite file: one engine, writes that take the lock up front.

pysqlite defers BEGIN until the first write, so a read-then-write transaction (the station allocating the next
sequence number, a poll taking its due rows) could interleave with another process's — `yiwang ferry run-once`
beside a running `serve` — and lose an update. As SQLAlchemy's documented recipe does (and the gateway's own
engine), the driver's transaction handling is switched off and every transaction begins `BEGIN IMMEDIATE`.
`synchronous=FULL`: the agent writes little, and a receipt written to the link folder must never announce a batch
whose record a power cut took back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection

BUSY_TIMEOUT_MS = 30_000


def state_engine(path: Path) -> Engine:
    """The engine of the agent's state file at `path` (its folder is made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000,
                                                               "check_same_thread": False})
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # BEGIN is ours (see the module docstring)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA secure_delete=ON")  # a deleted row leaves no old bytes in the file
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
