"""The unit of work: one database transaction around the repositories a service needs.

Everything a service writes inside one `with units() as uow:` block — the case, its events,
its outbox rows, the idempotency record — commits together at `uow.commit()`, or not at all (invariant 1).
This is the one transaction idiom: a service is handed `UnitsOfWork` (the factory), never an engine; a
store with statements of its own runs them on `uow.conn`. A read passes `read_only=True` (on SQLite a
deferred BEGIN, no write lock: gateway/persistence/engine.py); a write commits explicitly, and whatever
was not committed when the block ends is rolled back.
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection, Engine

from gateway.persistence import schema  # noqa: F401 - the schema whole wherever a unit of work runs
from gateway.persistence.engine import READ_ONLY
from gateway.persistence.personal_data import NoPersonalData, PersonalData
from gateway.persistence.repository import (
    CaseRepository,
    DeadLetterRepository,
    IdempotencyRepository,
    OutboxRepository,
    Subscribers,
)


class UnitOfWork:
    cases: CaseRepository
    outbox: OutboxRepository
    dead_letters: DeadLetterRepository
    idempotency: IdempotencyRepository

    def __init__(self, engine: Engine, personal: PersonalData | None = None, *, read_only: bool = False,
                 subscribers: Subscribers | None = None) -> None:
        self._engine = engine
        self._subscribers = subscribers
        # NoPersonalData is no PersonalData: it stands in for one and refuses every call.
        self._personal: PersonalData = personal or NoPersonalData()  # type: ignore[assignment]
        self._read_only = read_only

    def __enter__(self) -> UnitOfWork:
        conn: Connection = self._engine.connect()
        if self._read_only:
            conn = conn.execution_options(**{READ_ONLY: True})
        self._conn = conn
        self._tx = conn.begin()
        self.cases = CaseRepository(conn, self._personal, self._subscribers)
        self.outbox = OutboxRepository(conn)
        self.dead_letters = DeadLetterRepository(conn, self._personal)
        self.idempotency = IdempotencyRepository(conn, self._personal)
        return self

    @property
    def conn(self) -> Connection:
        """The transaction's connection, for a store's own statements (they commit with `commit()`)."""
        return self._conn

    def commit(self) -> None:
        self._tx.commit()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Anything not explicitly committed is rolled back: a failure half-way stores nothing.
        if self._tx.is_active:
            self._tx.rollback()
        self._conn.close()


class UnitsOfWork:
    """The unit-of-work factory of one database: `units()` for a write, `units(read_only=True)` for a read."""

    def __init__(self, engine: Engine, personal: PersonalData | None = None,
                 subscribers: Subscribers | None = None) -> None:
        self.engine = engine  # for what is not a unit of work: the schema, health probes, stores not yet moved
        # Which active sectors subscribe to a case event (the live registry's): each new event of a case commits
        # with one outbox row per sector subscribed to it. None: no one subscribes (tools, most tests).
        self.subscribers = subscribers
        # NoPersonalData stands in for PersonalData (duck-typed), refusing every use: hence the ignore.
        self.personal: PersonalData = personal or NoPersonalData()  # type: ignore[assignment]
        self.dialect = engine.dialect.name  # "sqlite" or "postgresql"

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        return UnitOfWork(self.engine, self.personal, read_only=read_only, subscribers=self.subscribers)


def create_schema(engine: Engine) -> None:
    """Bring the schema to the newest migration (safe when several processes start at once)."""
    from gateway.persistence.schema_version import at_newest

    if at_newest(engine):  # the usual case: one read, no lock, no Alembic (a CLI command starts faster)
        return
    from gateway.persistence.migrate import upgrade  # Alembic is only needed when there is something to do

    upgrade(engine)
