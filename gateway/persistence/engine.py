"""Database engines: SQLite by default (WAL, BEGIN IMMEDIATE for writes), PostgreSQL by URL.

pysqlite defers BEGIN until the first write, so a read-then-write transaction can interleave with
another process's and lose an update. Following SQLAlchemy's documented recipe we switch off the
driver's own transaction handling and emit BEGIN ourselves: `BEGIN IMMEDIATE` (takes the write
lock up front) for writing units of work, a plain deferred `BEGIN` for read-only ones; the writing
threads of one process queue on a lock of ours first (`_queue_writers`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url

READ_ONLY = "yiwang_read_only"  # execution option a read-only unit of work sets
SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL's counterparts, set on every session: a writer waits at most as long for a row lock as a SQLite
# writer waits for the file, and a session left idle inside a transaction (a thread that died mid-unit of work)
# is ended by the server after a minute, so its row locks cannot stop the clock or the dispatcher for ever.
# No unit of work waits on the network inside a transaction, so neither limit is met in normal work.
POSTGRES_SESSION_OPTIONS = f"-c lock_timeout={SQLITE_BUSY_TIMEOUT_MS} -c idle_in_transaction_session_timeout=60000"


DEFAULT_POOL_SIZE = 20
MAX_OVERFLOW = 10


def make_engine(url: str, pool_size: int = DEFAULT_POOL_SIZE, max_overflow: int = MAX_OVERFLOW) -> Engine:
    """`pool_size` connections are kept open, and up to MAX_OVERFLOW more made when busier. Why 20, not
    SQLAlchemy's 5: the API serves up to 40 requests at once on threads, a submission uses two connections
    one after the other, and a connection beyond the pool is closed when returned: under load a small pool
    made the API open a new connection (a new PostgreSQL backend process) for most requests (bench)."""
    parsed = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    if parsed.get_backend_name() != "sqlite":
        # Beside any `options` the URL gives (e.g. `-csearch_path=...`): connect_args would replace them.
        given = parsed.query.get("options", ())
        options = " ".join([*([given] if isinstance(given, str) else given), POSTGRES_SESSION_OPTIONS])
        return create_engine(parsed.difference_update_query(["options"]), pool_pre_ping=True,
                             connect_args={"options": options}, **pool)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                           **pool)
    event.listen(engine, "connect", _on_sqlite_connect)
    _queue_writers(engine)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
    cursor = dbapi_connection.cursor()
    _switch_to_wal(cursor)
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no committed transaction
    # Freed pages are zeroed: a sealed value replaced or a row deleted leaves no old bytes in the file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """Two processes creating one new database file at once: switching it to WAL can report "locked"
    at once, whatever the busy timeout; the other process finishes in milliseconds, so try again."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _queue_writers(engine: Engine) -> None:
    """BEGIN IMMEDIATE for writing units of work, plain BEGIN for reading ones; and the writers of this
    process queue for the write lock on a lock of our own first.

    Why the queue: a writer that finds SQLite's lock taken waits in SQLite's busy handler, which sleeps
    (1, 2, 5 ... up to 100 ms) between tries, so the lock often stands free while writers sleep. With the
    dispatcher's and the API's threads writing at once, that wasted most of the lock's time (bench: the
    embedded deployment delivered 26 cases/s with 8 delivery threads, fewer than with one). Threads of this
    process now wait on a `threading.Lock`, woken the moment it is released; other processes are still
    kept apart by SQLite's lock and its busy timeout, as before. A writer that waited the busy timeout for
    our lock goes on to BEGIN IMMEDIATE anyway and fails there as it would have."""
    writers = threading.Lock()

    def begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("BEGIN")
            return
        if writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            connection.info[_HOLDS_WRITERS] = writers
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            end(connection)
            raise

    def end(connection: Connection) -> None:  # before COMMIT or ROLLBACK: the next writer's BEGIN waits at most that
        held = connection.info.pop(_HOLDS_WRITERS, None)
        if held is not None:
            held.release()

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)


_HOLDS_WRITERS = "yiwang.holds_writers_lock"
