"""API keys and identities: issuing rules, query-free authentication, cross-process views, `require()`, CLI."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from typer.testing import CliRunner

import gateway.persistence.identity_tables  # noqa: F401 - registers `identities` on the shared metadata
from gateway.cli.common import BAD_INPUT, NOT_FOUND
from gateway.cli.keys import make_keys_app
from gateway.domain.codes import credit_code_check_char
from gateway.domain.roles import Identity, NotAllowed, NotAuthenticated, Role
from gateway.http.callers import require
from gateway.persistence.tables import metadata
from gateway.security.api_keys import ApiKeyStore, IdentityError

DEPARTMENT = "11150200MB1A0001" + "0" + credit_code_check_char("11150200MB1A00010")  # a valid credit code


@pytest.fixture
def store(engine: Engine) -> ApiKeyStore:
    return ApiKeyStore(engine)


class StatementCounter:
    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(statement.split()[0])

    @property
    def count(self) -> int:
        return len(self.statements)


class HandTimer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- issue, authenticate, revoke ---------------------------------------------------------------------


def test_issued_key_authenticates_until_revoked(store: ApiKeyStore) -> None:
    identity, key = store.issue("Xincheng window 3", [Role.WINDOW, Role.HALL_CLIENT])

    assert key.startswith("yw_") and len(key) > 40
    assert identity.id.startswith("id_") and len(identity.id) == 15
    assert store.authenticate(key) == identity
    assert identity.roles == {Role.WINDOW, Role.HALL_CLIENT}

    assert store.revoke(identity.id) == identity
    assert store.authenticate(key) is None  # this instance sees its own revocation at once


def test_scoped_identities_keep_their_scope(store: ApiKeyStore) -> None:
    clerk, clerk_key = store.issue("HR clerk", [Role.CLERK], department=DEPARTMENT)
    admin, admin_key = store.issue("HR IT", [Role.SECTOR_ADMIN], sector="social_security")

    assert store.authenticate(clerk_key) == Identity(clerk.id, "HR clerk", frozenset({Role.CLERK}), DEPARTMENT)
    assert store.authenticate(admin_key) == admin and admin.sector == "social_security"


def test_list_and_get_show_prefix_and_utc_times_but_no_secret(store: ApiKeyStore) -> None:
    identity, key = store.issue("auditor", [Role.AUDITOR])
    store.revoke(identity.id)

    [issued] = store.list()
    assert issued == store.get(identity.id)
    assert issued.identity == identity and issued.key_prefix == key[:10] and not issued.active
    assert issued.created_at.tzinfo == UTC and issued.revoked_at is not None and issued.revoked_at.tzinfo == UTC
    assert not any(key in str(v) for v in vars(issued).values())
    assert store.get("id_000000000000") is None


def test_the_raw_key_is_stored_nowhere(engine: Engine, store: ApiKeyStore, tmp_path: Path) -> None:
    _, key = store.issue("hall", [Role.HALL_CLIENT])

    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                assert not any(key in str(value) for value in row), table.name
    for file in tmp_path.iterdir():  # the database file and its WAL, byte for byte
        assert key.encode() not in file.read_bytes(), file.name


@pytest.mark.parametrize(
    ("roles", "scope", "message"),
    [
        ([], {}, "身份至少需要一个角色"),
        (["mayor"], {}, "没有角色 mayor；角色有：hall_client、window、clerk、"),
        ([Role.CLERK], {}, "clerk 角色须指定 department"),
        ([Role.CLERK], {"department": "11150200MB1A00010X"}, "department 11150200MB1A00010X 不是有效的统一社会信用代码（GB 32100）"),  # noqa: E501
        ([Role.SECTOR_ADMIN], {}, "sector_admin 角色须指定 sector"),
        ([Role.WINDOW], {"department": DEPARTMENT}, "只有 clerk 角色可以指定 department"),
        ([Role.CLERK], {"department": DEPARTMENT, "sector": "tax"}, "只有 sector_admin 角色可以指定 sector"),
    ],
)
def test_issuing_rules(store: ApiKeyStore, engine: Engine, roles: list[Any], scope: dict[str, str], message: str) -> None:
    with pytest.raises(IdentityError) as raised:
        store.issue("someone", roles, **scope)
    assert str(raised.value).startswith(message)
    assert store.list() == []


def test_issuing_needs_a_name(store: ApiKeyStore) -> None:
    with pytest.raises(IdentityError, match="^身份须有持有人名称$"):
        store.issue("  ", [Role.OPERATOR])


def test_revoking_unknown_or_revoked_identities(store: ApiKeyStore) -> None:
    with pytest.raises(IdentityError, match=r"^没有身份 id_nobody$"):
        store.revoke("id_nobody")
    identity, _ = store.issue("operator", [Role.OPERATOR])
    store.revoke(identity.id)
    with pytest.raises(IdentityError, match=rf"^身份 {identity.id} 已于 .*\+08:00 吊销$"):
        store.revoke(identity.id)


# --- the cache: no query per request -----------------------------------------------------------------


def test_authenticate_costs_no_query_after_warm_up(engine: Engine, store: ApiKeyStore) -> None:
    identity, key = store.issue("window", [Role.WINDOW])
    store.authenticate(key)  # warm-up: the first load
    counter = StatementCounter(engine)

    assert all(store.authenticate(key) == identity for _ in range(1000))
    assert counter.count == 0


def test_unknown_keys_reload_at_most_once_a_second(engine: Engine) -> None:
    timer = HandTimer()
    store = ApiKeyStore(engine, refresh_s=60, timer=timer)
    store.authenticate("yw_warm-up")
    counter = StatementCounter(engine)

    assert all(store.authenticate(f"yw_guess-{n}") is None for n in range(1000))
    assert counter.count == 0  # the map was loaded less than a second ago
    timer.now += 1.0
    assert all(store.authenticate(f"yw_guess-{n}") is None for n in range(1000))
    assert [s for s in counter.statements if s != "BEGIN"] == ["SELECT"]  # one reload, one query, for the flood
    queries = counter.count
    assert store.authenticate("not-a-yiwang-key") is None and counter.count == queries  # no reload at all


def test_key_issued_by_another_process_authenticates_after_the_miss_reload(engine: Engine) -> None:
    timer = HandTimer()
    first, second = ApiKeyStore(engine, refresh_s=60, timer=timer), ApiKeyStore(engine)
    first.authenticate("yw_warm-up")

    identity, key = second.issue("new window", [Role.WINDOW])
    assert first.authenticate(key) is None  # a miss within a second of the last load: no reload yet
    timer.now += 1.0
    assert first.authenticate(key) == identity


def test_revocation_by_another_process_is_seen_within_refresh_s(engine: Engine) -> None:
    first, second = ApiKeyStore(engine, refresh_s=0.2), ApiKeyStore(engine)
    identity, key = second.issue("window", [Role.WINDOW])
    assert first.authenticate(key) == identity

    second.revoke(identity.id)
    deadline = time.monotonic() + 0.2 + 0.1  # refresh_s, plus slack for a slow machine
    while first.authenticate(key) is not None:
        assert time.monotonic() < deadline, "revocation not seen within refresh_s"
        time.sleep(0.01)


def test_concurrent_authenticate_is_consistent(engine: Engine) -> None:
    store = ApiKeyStore(engine, refresh_s=0.005)  # reload often, so threads race reloads
    issued = [store.issue(f"window {n}", [Role.WINDOW]) for n in range(5)]
    revoked, revoked_key = store.issue("gone", [Role.WINDOW])
    store.revoke(revoked.id)
    wrong: list[str] = []

    def hammer() -> None:
        for n in range(300):
            identity, key = issued[n % len(issued)]
            if store.authenticate(key) != identity or store.authenticate(revoked_key) is not None:
                wrong.append(key)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_revocation_during_concurrent_reloads_is_not_undone(engine: Engine) -> None:
    store = ApiKeyStore(engine, refresh_s=0.0)  # every call reloads
    identity, key = store.issue("window", [Role.WINDOW])
    stop = threading.Event()

    def reload_forever() -> None:
        while not stop.is_set():
            store.authenticate("yw_someone-else")

    threads = [threading.Thread(target=reload_forever) for _ in range(4)]
    for t in threads:
        t.start()
    store.revoke(identity.id)
    after = [store.authenticate(key) for _ in range(50)]
    stop.set()
    for t in threads:
        t.join()
    assert after == [None] * 50


# --- require() with the real store -------------------------------------------------------------------


@pytest.fixture
def client(store: ApiKeyStore) -> TestClient:
    app = FastAPI()
    app.state.keystore = store

    @app.exception_handler(NotAuthenticated)
    def unauthenticated(_: Request, exc: NotAuthenticated) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=401)

    @app.exception_handler(NotAllowed)
    def not_allowed(_: Request, exc: NotAllowed) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.get("/audit")
    def audit(identity: Identity = Depends(require(Role.AUDITOR, Role.OPERATOR))) -> dict[str, str]:
        return {"id": identity.id}

    return TestClient(app)


def test_require_admits_only_the_roles_it_names(client: TestClient, store: ApiKeyStore) -> None:
    auditor, auditor_key = store.issue("auditor", [Role.AUDITOR])
    _, window_key = store.issue("window", [Role.WINDOW])

    assert client.get("/audit").status_code == 401
    assert client.get("/audit", headers={"X-API-Key": "yw_not-a-key"}).status_code == 401
    assert client.get("/audit", headers={"X-API-Key": window_key}).status_code == 403
    for headers in ({"Authorization": f"Bearer {auditor_key}"}, {"X-API-Key": auditor_key}):
        response = client.get("/audit", headers=headers)
        assert response.status_code == 200 and response.json() == {"id": auditor.id}

    store.revoke(auditor.id)
    assert client.get("/audit", headers={"X-API-Key": auditor_key}).status_code == 401


# --- the CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli(store: ApiKeyStore) -> Any:
    runner, app = CliRunner(), make_keys_app(lambda: store)
    return lambda *args: runner.invoke(app, list(args))


def test_cli_issue_revoke_list(cli: Any, store: ApiKeyStore) -> None:
    issued = cli("issue", "--name", "HR clerk", "--role", "clerk", "--role", "auditor", "--department", DEPARTMENT)
    assert issued.exit_code == 0, issued.output
    key = re.search(r"^key: (\S+)$", issued.output, re.M).group(1)  # type: ignore[union-attr]
    identity_id = re.search(r"^identity: (id_\w+)$", issued.output, re.M).group(1)  # type: ignore[union-attr]
    assert "will not be shown again" in issued.output
    assert store.authenticate(key) == store.get(identity_id).identity  # type: ignore[union-attr]

    listed = cli("list")
    assert listed.exit_code == 0 and identity_id in listed.output and key[:10] in listed.output
    assert key not in listed.output and "auditor, clerk" in listed.output and DEPARTMENT in listed.output

    revoked = cli("revoke", identity_id)
    assert revoked.exit_code == 0 and f"revoked {identity_id} (HR clerk)" in revoked.output
    assert store.authenticate(key) is None


@pytest.mark.parametrize(
    ("args", "message", "exit_code"),
    [
        (["issue", "--name", "x", "--role", "mayor"], "error: 没有角色 mayor；角色有：hall_client", BAD_INPUT),
        (["issue", "--name", "x", "--role", "clerk"], "error: clerk 角色须指定 department", BAD_INPUT),
        (["revoke", "id_nobody"], "error: 没有身份 id_nobody", NOT_FOUND),
    ],
)
def test_cli_bad_input_is_a_readable_message_and_its_exit_code(cli: Any, args: list[str], message: str,
                                                                exit_code: int) -> None:
    result = cli(*args)
    assert result.exit_code == exit_code
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert "Traceback" not in result.output
