"""Every list pages one way (issue 16): `limit` and `cursor` in; `items`, `next_cursor`, `total` out.

- Walking a list page by page while rows are added between the pages shows every row that was there once,
  never one twice, in the list's order (keyset paging), on SQLite and PostgreSQL.
- Walking it with nothing added gives exactly the list read in one page; the last page says so
  (`next_cursor` null) and `total` counts the list where it is given.
- A garbled, edited or foreign cursor is a 422 `invalid-cursor` problem on every list, and changes nothing.
- The OpenAPI document: every list operation takes `limit` and `cursor` and answers a page; none answers
  a bare array (but the dead-letter counts, a summary by sector and error class).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.persistence.keyset import Keyset
from gateway.persistence.notification_tables import webhook_deliveries
from gateway.persistence.repository import Failure
from gateway.security.approvals import Action
from ops.dead_letters import DeadLetterFilter
from tests.support.catalogue import shipped
from tests.support.gateways import COMPLETE_APPLICATION
from tests.support.hostile import assert_problem

UNEMPLOYMENT = COMPLETE_APPLICATION["matter_code"]
APPLICANT = COMPLETE_APPLICATION["applicant"]["id_number"]
LOOPBACK = "127.0.0.1"
SAME_INSTANT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # dead letters tie on time: the id breaks the tie
PAGING_CASE = "PAGING-CASE"


class World:
    """A gateway, its app in-process, and one identity per role the lists need."""

    def __init__(self, gateway: Gateway, client: TestClient) -> None:
        self.gateway, self.client = gateway, client
        self.headers: dict[Role, dict[str, str]] = {}
        self.case_no = self.hook_id = ""

    def as_(self, role: Role) -> dict[str, str]:
        if role not in self.headers:
            scope = {"sector": "social_security"} if role is Role.SECTOR_ADMIN else {}
            _, key = self.gateway.keys.issue(f"paging {role}", [role], **scope)
            self.headers[role] = {"Authorization": f"Bearer {key}"}
        return self.headers[role]


@pytest.fixture
def world(make_gateway: Callable[..., Gateway]) -> Iterator[World]:
    gateway = make_gateway(webhook_insecure_hosts=frozenset({LOOPBACK}))
    with TestClient(create_app(gateway)) as client:
        yield World(gateway, client)


# --- how each list gets a row -------------------------------------------------------------------------------


def _audit(world: World, n: int) -> None:
    world.gateway.ledger.audit("identity:paging", "paging", f"row {n}")


def _message(world: World, n: int) -> None:
    world.gateway.ledger.message("social_security", "sent", f"op {n}", PAGING_CASE, None, {"n": n}, "200")


def _case(world: World, n: int) -> None:
    answer = world.client.post("/v1/cases", json=COMPLETE_APPLICATION, headers=world.as_(Role.HALL_CLIENT))
    assert answer.status_code == 201, answer.text


def _dead_letter(world: World, n: int) -> None:
    about = {"case_no": PAGING_CASE, "sector": "social_security", "operation": "submit_case",
             "idempotency_key": f"{PAGING_CASE}:{n}"}
    with world.gateway.service.uow() as uow:
        uow.dead_letters.add(None, Failure("transport", f"down {n}", 1), SAME_INSTANT, about=about)
        uow.commit()


def _cause(world: World, n: int) -> None:
    """A dead letter of a cause of its own: the words differ (numbers would not make another cause)."""
    word = "".join(chr(ord("a") + int(digit)) for digit in str(n))
    about = {"case_no": PAGING_CASE, "sector": "social_security", "operation": "submit_case",
             "idempotency_key": f"{PAGING_CASE}:{n}"}
    with world.gateway.service.uow() as uow:
        uow.dead_letters.add(None, Failure("transport", f"down at {word}", 1), SAME_INSTANT, about=about)
        uow.commit()


def _replay_run(world: World, n: int) -> None:
    world.gateway.dead_letters.start_replay(DeadLetterFilter(ids=frozenset({10**6 + n})), by="identity:paging",
                                            reason=f"run {n}")


def _identity(world: World, n: int) -> None:
    world.gateway.keys.issue(f"identity {n}", [Role.HALL_CLIENT])


def _webhook(world: World, n: int) -> None:
    answer = world.client.post("/v1/webhooks", headers=world.as_(Role.HALL_CLIENT),
                               json={"url": f"http://{LOOPBACK}:9/hook/{n}", "events": ["submit"]})
    assert answer.status_code == 201, answer.text


def _delivery(world: World, n: int) -> None:
    """A delivery to the world's subscription that failed for good (so the operators' list shows it too)."""
    now = datetime.now(UTC)
    event = {"event_id": f"ev-{n}", "case_no": PAGING_CASE, "seq": n, "trigger": "submit", "from_state": None,
             "to_state": "submitted", "matter_code": UNEMPLOYMENT, "at": "2026-12-07T20:10:00.000+08:00"}
    row = {"subscription_id": world.hook_id, "case_no": PAGING_CASE, "seq": n, "event": event,
           "status": "failed", "attempts": 3, "next_at": now, "last_status": 503, "created_at": now}
    with world.gateway.engine.begin() as conn:
        conn.execute(insert(webhook_deliveries).values(row))


def _approval(world: World, n: int) -> None:
    approvals = world.client.app.state.approvals  # type: ignore[attr-defined]  # set by create_app
    approvals.request(Action.PUBLISH_MATTER, {"code": UNEMPLOYMENT, "version": n}, f"matter:{n}", "identity:paging")


def _secret(world: World, n: int) -> None:
    world.gateway.certs.set_secret(f"paging-{n:02}", "s3cret", actor="identity:paging")


def _matter_version(world: World, n: int) -> None:
    world.gateway.catalogue.draft(replace(shipped(UNEMPLOYMENT), hours=f"第 {n} 版"), "identity:paging")


def _nothing(world: World, n: int) -> None:
    """Lists whose rows the gateway brings (the catalogue, a case's events, a sector's bundle versions)."""


@dataclass(frozen=True)
class Listing:
    name: str
    role: Role
    path: str
    add: Callable[[World, int], None]
    id_of: Callable[[dict[str, Any]], Any] = lambda item: item["id"]
    counted: bool = True  # answers `total`
    grows: bool = True  # rows can be added during a walk
    method: str = "GET"
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None

    def page(self, world: World, limit: int, cursor: str | None = None) -> dict[str, Any]:
        answer = self.ask(world, {**self.params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        page: dict[str, Any] = answer.json()
        assert set(page) == {"items", "next_cursor", "total"}, page
        assert len(page["items"]) <= limit
        return page

    def ask(self, world: World, params: dict[str, Any]) -> Any:
        return world.client.request(self.method, self.path.format(case_no=world.case_no, hook_id=world.hook_id),
                                    params=params,
                                    json=self.body, headers=world.as_(self.role))

    def whole(self, world: World) -> list[Any]:
        page = self.page(world, 500)
        assert page["next_cursor"] is None
        return [self.id_of(item) for item in page["items"]]


LISTINGS = [
    Listing("audit", Role.AUDITOR, "/v1/audit", _audit, counted=False, params={"action": "paging"}),
    Listing("messages", Role.OPERATOR, "/v1/messages", _message, counted=False, params={"case_no": PAGING_CASE}),
    Listing("my-cases", Role.HALL_CLIENT, "/v1/cases/lookup", _case, lambda c: c["case_no"], method="POST",
            body={"id_number": APPLICANT}),
    Listing("dead-letters", Role.OPERATOR, "/v1/ops/dead-letters", _dead_letter, params={"case_no": PAGING_CASE}),
    Listing("dead-letter-causes", Role.OPERATOR, "/v1/ops/dead-letters/causes", _cause, lambda c: c["cause"],
            params={"case_no": PAGING_CASE}),
    Listing("replay-runs", Role.OPERATOR, "/v1/ops/replays", _replay_run, counted=False),
    Listing("identities", Role.SECURITY_ADMIN, "/v1/identities", _identity),
    Listing("webhooks", Role.HALL_CLIENT, "/v1/webhooks", _webhook),
    Listing("webhook-deliveries", Role.HALL_CLIENT, "/v1/webhooks/{hook_id}/deliveries", _delivery, counted=False),
    Listing("webhook-failures", Role.OPERATOR, "/v1/ops/webhook-failures", _delivery, counted=False),
    Listing("approvals", Role.CATALOGUE_ADMIN, "/v1/approvals", _approval),
    Listing("certificates", Role.SECURITY_ADMIN, "/v1/certificates", _secret, lambda e: e["name"]),
    Listing("matter-versions", Role.HALL_CLIENT, f"/v1/matters/{UNEMPLOYMENT}/versions", _matter_version,
            lambda v: v["version"]),
    Listing("matters", Role.HALL_CLIENT, "/v1/matters", _nothing, lambda m: m["implementation_code"], grows=False),
    Listing("case-events", Role.HALL_CLIENT, "/v1/cases/{case_no}/events", _nothing, lambda e: e["seq"],
            grows=False),
    Listing("bundle-versions", Role.SECTOR_ADMIN, "/v1/adapters/social_security/versions", _nothing,
            lambda v: v["version"], grows=False),
]
GROWING = [listing for listing in LISTINGS if listing.grows]


def _prepared(world: World, listing: Listing, rows: int) -> None:
    if listing.name == "case-events" or listing.name == "my-cases":
        _case(world, 0)
        world.case_no = world.client.post("/v1/cases/lookup", json={"id_number": APPLICANT}, headers=world.as_(
            Role.HALL_CLIENT)).json()["items"][0]["case_no"]
    if listing.add is _delivery:
        _webhook(world, 0)
        world.hook_id = world.client.get("/v1/webhooks", headers=world.as_(Role.HALL_CLIENT)).json()["items"][0]["id"]
    for n in range(1, rows + 1):
        listing.add(world, n)


def _walk(world: World, listing: Listing, limit: int, between: Callable[[int], None]) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        page = listing.page(world, limit, cursor)
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(page["items"]) == limit  # a page short of the limit is the last
        between(len(pages))


@pytest.mark.parametrize("listing", GROWING, ids=[listing.name for listing in GROWING])
def test_a_walk_while_rows_are_added_shows_every_row_once_in_order(world: World, listing: Listing) -> None:
    _prepared(world, listing, 5)
    before = listing.whole(world)
    assert len(before) >= 5
    pages = _walk(world, listing, 2, lambda nth: listing.add(world, 100 + nth))
    seen = [listing.id_of(item) for page in pages for item in page["items"]]
    after = listing.whole(world)
    assert len(after) > len(before)  # rows were added meanwhile
    assert len(seen) == len(set(seen)), "a row shown twice"
    assert set(before) <= set(seen), "a row skipped"
    assert set(seen) <= set(after)
    assert seen == [row for row in after if row in set(seen)], "out of the list's order"
    assert pages[-1]["next_cursor"] is None


@pytest.mark.parametrize("listing", LISTINGS, ids=[listing.name for listing in LISTINGS])
def test_a_walk_gives_the_whole_list_with_its_total(world: World, listing: Listing) -> None:
    _prepared(world, listing, 3)
    whole = listing.whole(world)
    pages = _walk(world, listing, 1 if len(whole) < 4 else 2, lambda nth: None)
    assert [listing.id_of(item) for page in pages for item in page["items"]] == whole
    assert len(pages) > 1 or len(whole) <= 1
    assert {page["total"] for page in pages} == ({len(whole)} if listing.counted else {None})


def _forged(cursor: str) -> str:
    """The cursor with its key changed and the rest left as it was (the tag no longer fits)."""
    body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    body["k"][-1] = body["k"][-1] + 1 if isinstance(body["k"][-1], int) else body["k"][-1] + "x"
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("listing", LISTINGS, ids=[listing.name for listing in LISTINGS])
def test_a_garbled_edited_or_foreign_cursor_is_refused_and_changes_nothing(world: World, listing: Listing) -> None:
    _prepared(world, listing, 3)
    whole = listing.whole(world)
    own = listing.page(world, 1)["next_cursor"]
    foreign = Keyset("another-list", (int,)).encode((1,))
    for cursor in ("!!!", "e30", "x" * 501, foreign, *([_forged(own)] if own else [])):
        answer = listing.ask(world, {**listing.params, "cursor": cursor})
        assert_problem(answer, 422, "invalid-cursor" if len(cursor) <= 500 else "invalid-request")
    assert listing.whole(world) == whole


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_cursor_of_one_cases_timeline_is_refused_on_anothers(world: World) -> None:
    _case(world, 1)
    _case(world, 2)
    hall = world.as_(Role.HALL_CLIENT)
    mine, other = (c["case_no"] for c in world.client.post("/v1/cases/lookup", json={"id_number": APPLICANT},
                                                           headers=hall).json()["items"])
    cursor = world.client.get(f"/v1/cases/{mine}/events", params={"limit": 1}, headers=hall).json()["next_cursor"]
    assert cursor is not None
    assert world.client.get(f"/v1/cases/{mine}/events", params={"cursor": cursor}, headers=hall).status_code == 200
    refused = world.client.get(f"/v1/cases/{other}/events", params={"cursor": cursor}, headers=hall)
    assert_problem(refused, 422, "invalid-cursor")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_dead_letter_cursor_is_bound_to_its_sort(world: World) -> None:
    for n in range(3):
        _dead_letter(world, n)
    operator = world.as_(Role.OPERATOR)
    cursor = world.client.get("/v1/ops/dead-letters", params={"limit": 1}, headers=operator).json()["next_cursor"]
    refused = world.client.get("/v1/ops/dead-letters", params={"sort": "attempts", "cursor": cursor}, headers=operator)
    assert_problem(refused, 422, "invalid-cursor")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_list_in_the_openapi_document_pages_and_none_is_a_bare_array(world: World) -> None:
    document = world.client.get("/openapi.json").json()
    paged = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("responses", {}).get("200", {}).get("content", {}).get(
                "application/json", {}).get("schema", {})
            if schema.get("type") == "array":
                assert path == "/v1/ops/dead-letters/counts", f"{method} {path} answers a bare array"
            if schema.get("$ref", "").startswith("#/components/schemas/Page_"):
                names = {p["name"] for p in operation.get("parameters", [])}
                assert {"limit", "cursor"} <= names, f"{method} {path} takes {names}"
                paged.append(path)
    assert sorted(paged) == sorted(PAGED_PATHS)


PAGED_PATHS = ["/v1/audit", "/v1/messages", "/v1/matters", "/v1/matters/{code}/versions", "/v1/cases/lookup",
               "/v1/cases/{case_no}/events", "/v1/adapters/{sector}/versions", "/v1/identities", "/v1/approvals",
               "/v1/certificates", "/v1/webhooks", "/v1/webhooks/{webhook_id}/deliveries", "/v1/ops/dead-letters",
               "/v1/ops/dead-letters/causes", "/v1/ops/replays", "/v1/ops/webhook-failures", "/v1/ops/ferry/channels",
               "/v1/ops/ferry/channels/{channel}/gaps", "/v1/ops/ferry/channels/{channel}/quarantine"]
