"""Shared fixtures for every folder of tests/: databases (SQLite and a per-run PostgreSQL database), the
simulator, gateways. Helpers that test modules import (keys per role, applications, draining) live in
tests/support/, never in a test module.

Under pytest-xdist each worker is a run of its own: its own PostgreSQL database, RabbitMQ vhost and temporary
folders (the names are random), so workers share nothing but the servers.

Every test that takes `db_url` starts from an empty schema of its own at the newest migration, without
paying for the migrations each time: they run once per run (a SQLite file each test copies; the PostgreSQL
database, emptied before each test — see PostgresSchema). tests/integration/test_migrations.py runs them from
scratch.

Real services, real connections. When PostgreSQL is not reachable the PostgreSQL variants skip with
a message saying how to start it — unless YIWANG_REQUIRE_SERVICES=1 (as `.ci/run` sets), which turns
a missing service into a failure. The same holds for the browser tests' chromium and Playwright (`chromium`,
`page`: tests/support/browser.py), and `live_gateway` serves a gateway over HTTP for them.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from sqlalchemy import Connection, Engine, NullPool, create_engine, text

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, build_gateway
from gateway.domain.clock import Clock
from gateway.persistence.engine import make_engine
from gateway.persistence.uow import create_schema
from tests.support.browser import LiveGateway, PageLog, launched_chromium, opened_page, served_gateway
from tests.support.gateways import SECTOR_SECRETS, SeedFile, activate_shipped, settings_for_tests
from tests.support.schedule import (  # noqa: F401 - hooks: long tests dealt out first (see the module)
    pytest_collection_modifyitems,
    pytest_configure_node,
    pytest_runtest_logreport,
    pytest_sessionfinish,
)
from tests.support.services import (
    PG_ADMIN_URL,
    PG_HOW_TO_START,
    postgres_schema_of_its_own,
    rabbitmq_vhost,
    service_missing,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """A command run in-process (typer's runner) configures structlog for the whole process, its level too;
    each test gets back the configuration it started with, so what one logs never hides another's lines."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session", autouse=True)
def seed_parsed_once() -> Iterator[None]:
    """Every gateway seeds its catalogue from the shipped file: parsed once per run (see SeedFile)."""
    with SeedFile.parsed_once():
        yield


@pytest.fixture(autouse=True)
def sector_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECTOR_SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test run's own, dropped at the end."""
    name = f"yiwang_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "missing"
        admin.dispose()
        service_missing("PostgreSQL at 127.0.0.1:5432", PG_HOW_TO_START, exc)
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# One digest of everything the migrations build in PostgreSQL's `public` schema — relations, columns,
# constraints, indexes, triggers (and whether they are enabled), functions, sequences — and the revision
# recorded. Two equal digests: the same schema, so emptying its tables gives what migrating afresh would.
SCHEMA_DIGEST = """
SELECT md5(string_agg(item, E'\\n' ORDER BY item)) FROM (
  SELECT concat_ws(' ', 'rel', relkind, relname, relpersistence, relrowsecurity, reloptions::text) AS item
    FROM pg_class WHERE relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'col', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT concat_ws(' ', 'con', conrelid::regclass::text, conname, pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'idx', pg_get_indexdef(i.indexrelid))
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'trg', pg_get_triggerdef(t.oid), t.tgenabled)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
  UNION ALL
  SELECT concat_ws(' ', 'fn', p.oid::regprocedure::text, md5(p.prosrc))
    FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'seq', s.seqrelid::regclass::text, s.seqtypid, s.seqstart, s.seqincrement, s.seqcycle)
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT concat_ws(' ', 'type', typname, typtype) FROM pg_type
    WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd', 'r', 'm')
  UNION ALL
  SELECT concat_ws(' ', 'revision', version_num) FROM alembic_version
) AS schema_items
"""
TABLES_BUT_THE_VERSION = """SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace
                            AND relkind IN ('r', 'p') AND relname <> 'alembic_version'"""
RESTART_SEQUENCES = """SELECT setval(s.seqrelid, s.seqstart, false)
                       FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
                       WHERE c.relnamespace = 'public'::regnamespace"""


@dataclass
class PostgresSchema:
    """The run's PostgreSQL database at the newest migration, emptied before each test.

    Dropping the tables and migrating again costs ~0.3 s a test; emptying the tables (their triggers off:
    the logs are append-only) and restarting the sequences gives the same database in ~20 ms. That holds
    only for the schema the migrations built, so its digest is checked first: a test that changed the
    schema itself (or left something else in `public`) gets the schema dropped and migrated again."""

    url: str
    engine: Engine  # without a pool: no connection of ours stays open while a test runs
    digest: str | None = None
    tables: tuple[str, ...] = ()

    @classmethod
    def migrated(cls, url: str) -> PostgresSchema:
        schema = cls(url, create_engine(url, poolclass=NullPool))
        schema.rebuild()
        return schema

    def empty(self) -> None:
        with self.engine.begin() as conn:
            if self._digest(conn) == self.digest:
                conn.execute(text("SET LOCAL session_replication_role = replica"))  # no triggers, no FK checks
                conn.exec_driver_sql("".join(f'DELETE FROM "{table}";' for table in self.tables))
                conn.execute(text(RESTART_SEQUENCES))
                return
        self.rebuild()

    def rebuild(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        create_schema(self.engine)  # the real migrations, from the first
        with self.engine.connect() as conn:
            self.digest = self._digest(conn)
            self.tables = tuple(conn.execute(text(TABLES_BUT_THE_VERSION)).scalars())

    @staticmethod
    def _digest(conn: Connection) -> str | None:
        """None without a version table (the tables were dropped, say): nothing the same to empty."""
        if conn.execute(text("SELECT to_regclass('public.alembic_version')")).scalar() is None:
            return None
        return conn.execute(text(SCHEMA_DIGEST)).scalar_one()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run (the real migrations): each test starts from a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "yiwang.db"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()  # the last connection closing checkpoints the WAL into the file: one file to copy
    assert not path.with_name(path.name + "-wal").exists(), "the template's WAL was not checkpointed"
    return path


@pytest.fixture(scope="session")
def postgres_schema(postgres_url: str) -> PostgresSchema:
    """The run's PostgreSQL database migrated to head once (the real migrations), emptied before each test."""
    return PostgresSchema.migrated(postgres_url)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test that takes it runs on both databases, on an empty schema of its own at the newest migration."""
    if request.param == "sqlite":
        path = tmp_path / "yiwang.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    schema: PostgresSchema = request.getfixturevalue("postgres_schema")
    schema.empty()
    yield schema.url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'yiwang.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test's database (already at the newest migration)."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def simulator() -> Iterator[SocialSecuritySimulator]:
    with SocialSecuritySimulator(decision_delay_ms=50) as sim:
        yield sim


@pytest.fixture
def make_gateway(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Gateway]]:
    """Build a gateway on the test's database; every one built is closed at the end."""
    built: list[Gateway] = []

    def make(clock: Clock | None = None, bundles: tuple[str, ...] = ("social_security",), **overrides: Any
             ) -> Gateway:
        """`bundles`: the shipped bundles registered and activated (if not already) — the sectors with a
        system; every other department decides through the back office."""
        gateway = build_gateway(settings_for_tests(tmp_path / "var", db_url, **overrides), clock=clock)
        built.append(gateway)
        activate_shipped(gateway.bundles, *bundles)
        return gateway

    yield make
    for gateway in built:
        gateway.close()


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A RabbitMQ virtual host of this test run's own (amqp:// URL), deleted at the end."""
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """One headless chromium per run (per xdist worker); a skip saying `make browser` where it is missing."""
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def page_log() -> PageLog:
    """What went wrong in the test's `page`: console errors, uncaught exceptions, CSP violations."""
    return PageLog()


@pytest.fixture
def page(chromium: Browser, page_log: PageLog) -> Iterator[Page]:
    """A page in a context of its own: 1280x800, zh-CN, Asia/Shanghai; its problems go into `page_log`."""
    with opened_page(chromium, page_log) as page:
        yield page


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of the module's own at the newest migration: a copy of the SQLite template, or a PostgreSQL
    schema of its own (migrated afresh, ~0.6 s) — never the run's shared schema, which `db_url` empties.
    A test that needs SQLite only: `@pytest.mark.parametrize("live_db", ["sqlite"], indirect=True)`."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("live-db") / "yiwang.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    with postgres_schema_of_its_own(request.getfixturevalue("postgres_url"), "live") as url:
        engine = make_engine(url)
        create_schema(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="module")
def live_gateway(live_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """A gateway served by uvicorn on an ephemeral port (with its simulators), for the module's tests, on each
    database; what one test adds stays for the next, so tests make their own cases and look only at those."""
    with served_gateway(live_db, tmp_path_factory.mktemp("live-var")) as live:
        yield live
