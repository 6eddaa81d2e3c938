"""PostgreSQL and RabbitMQ for the tests: where they are, a schema or a vhost of a test's own, and what a
missing one means (a skip, or a failure under YIWANG_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("YIWANG_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


PG_HOW_TO_START = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


REQUIRE_SERVICES = os.environ.get("YIWANG_REQUIRE_SERVICES") == "1"


def service_missing(what: str, how: str, error: Exception) -> None:
    message = f"{what} is not reachable ({error.__class__.__name__}: {error}); {how}"
    if REQUIRE_SERVICES:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def postgres_schema_of_its_own(database_url: str, prefix: str) -> Iterator[str]:
    """An empty schema of its own in the database at `database_url`, chosen through `search_path`: the URL
    that sees only it. Dropped afterwards with what was made in it, so other tests' tables are untouched."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def empty_database(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Iterator[str]:
    """The URL of an empty database of the test's own, on `request.param` ("sqlite" | "postgres"): a new
    SQLite file `<name>.db`, or a schema of its own in the run's PostgreSQL database (`name` its prefix)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
        return
    with postgres_schema_of_its_own(request.getfixturevalue("postgres_url"), name) as url:
        yield url


RABBITMQ_HOW_TO_START = "start it with: rabbitmq-server -detached"


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A virtual host of its own on the local broker (guest may use it), deleted afterwards: its URL."""
    vhost = f"yiwang-test-{uuid.uuid4().hex[:10]}"
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        for command in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
            subprocess.run(["rabbitmqctl", "-q", *command], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        service_missing("RabbitMQ at 127.0.0.1:5672 (with rabbitmqctl)", RABBITMQ_HOW_TO_START, exc)
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
