"""The operators' view of the ferry over HTTP (`/v1/ops/ferry`, ops/ferry_api.py), on channel state made by two
real stations on the gateway's database: a link both ways (last batch and its age, lag, gaps, the far side's
beacon, quarantined files by code), its gaps and quarantined files, and a resend — written, audited — or refused
with a problem (a bad range, an unknown link, no reason) and nothing written. Operators and the link's sector
administrator act on it; another sector's administrator finds nothing. Both databases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from tests.support.ferry_stations import DOWN, LINK, UP, FerryClock, LinkClock, TestLink, make_link, troubled, watching

FERRY = "/v1/ops/ferry"
PROBLEM = "urn:yiwang:problem:"


@dataclass
class Desk:
    gateway: Gateway
    link: TestLink
    operator: TestClient
    own_admin: TestClient  # sector_admin of public_security: the link's sector
    other_admin: TestClient  # sector_admin of housing_fund

    def audited(self, action: str) -> list[tuple[str | None, str | None, Any]]:
        ledger = self.gateway.ledger
        return [(r.subject, r.outcome, ledger.open_body(r)) for r in ledger.records(Filters(AUDIT), 500)
                if r.action == action]

    def written(self) -> list[str]:
        return [path.name for path in self.link.near.config.outgoing.ready()]


@pytest.fixture
def desk(make_gateway: Callable[..., Gateway], tmp_path: Path) -> Desk:
    """One link in trouble: 3 batches sent down; 4 sent up of which the 2nd was lost (a gap), a beacon after
    two minutes, and a file no key signed (quarantined)."""
    clock = FerryClock()
    gateway = make_gateway(clock=LinkClock(clock), bundles=())
    return in_trouble(gateway, make_link(gateway.engine, tmp_path / "ferry", clock))


def in_trouble(gateway: Gateway, link: TestLink) -> Desk:
    troubled(link)
    gateway = watching(gateway, link)
    app = create_app(gateway)

    def client(role: Role, **scope: str) -> TestClient:
        _, key = gateway.keys.issue(f"ferry {role}", [role], **scope)
        return TestClient(app, headers={"Authorization": f"Bearer {key}"})

    return Desk(gateway, link, client(Role.OPERATOR), client(Role.SECTOR_ADMIN, sector=LINK),
                client(Role.SECTOR_ADMIN, sector="housing_fund"))


def test_operators_see_each_link_both_ways_its_gaps_and_quarantined_files(desk: Desk) -> None:
    answer = desk.operator.get(f"{FERRY}/channels")
    assert answer.status_code == 200, answer.text
    [link] = answer.json()["items"]
    assert (link["channel"], link["sector"], link["mode"]) == (LINK, LINK, "one_way")
    down, up = link["down"], link["up"]
    assert (down["channel"], down["sending"], down["last_seq"]) == (DOWN, True, 3)
    assert down["last_batch_age_s"] == 150 and down["last_batch_at"] == "2026-12-07T16:00:00.000+08:00"
    assert (up["channel"], up["sending"], up["last_seq"], up["highest_seen"]) == (UP, False, 1, 4)
    assert (up["open_gaps"], up["lag"], up["oldest_gap_age_s"]) == (1, 3, 150)
    assert up["last_signal_age_s"] == 30  # the beacon
    assert link["quarantined"] == 1 and link["quarantined_by_code"] == {"unreadable": 1}
    assert (link["beacon_every_s"], link["resend_after_s"]) == (60, None)  # one-way: beacons, no receipts
    # the detail: its gaps and quarantined files
    gaps = desk.operator.get(f"{FERRY}/channels/{LINK}/gaps")
    assert gaps.status_code == 200, gaps.text
    assert gaps.json()["items"] == [{"channel": UP, "seq_from": 2, "seq_to": 2, "named_at": "2026-12-07T16:00:00.000+08:00",
                            "age_s": 150.0}]
    [quarantined] = desk.operator.get(f"{FERRY}/channels/{LINK}/quarantine").json()["items"]
    assert (quarantined["channel"], quarantined["code"]) == (UP, "unreadable")
    assert quarantined["file"] == f"{UP}_0000000099_deadbeef.ferry" and quarantined["reason"]
    for what in ("gaps", "quarantine"):
        unknown = desk.operator.get(f"{FERRY}/channels/civil_affairs/{what}")
        assert unknown.status_code == 404 and unknown.json()["type"] == PROBLEM + "ferry-channel-not-found"
    # the link's sector administrator sees it as operators do; another sector's sees nothing of it
    assert desk.own_admin.get(f"{FERRY}/channels").json()["items"][0]["down"] == link["down"]
    assert desk.own_admin.get(f"{FERRY}/channels/{LINK}/gaps").json() == gaps.json()
    assert desk.other_admin.get(f"{FERRY}/channels").json() == {"items": [], "next_cursor": None, "total": 0}
    for what in ("gaps", "quarantine"):
        assert desk.other_admin.get(f"{FERRY}/channels/{LINK}/{what}").status_code == 404


BAD_RESENDS = [
    (LINK, {"from": 2, "to": 9, "reason": "r"}, 422, "invalid-resend-range"),  # only 3 were sent
    (LINK, {"from": 3, "to": 2, "reason": "r"}, 422, "invalid-resend-range"),
    (LINK, {"from": 0, "to": 2, "reason": "r"}, 422, "invalid-request"),
    (LINK, {"from": 1, "to": 2, "reason": "  "}, 422, "reason-required"),
    (LINK, {"from": 1, "to": 2}, 422, "invalid-request"),
    (LINK, {"from": 1, "to": 2, "reason": "r", "extra": 1}, 422, "invalid-request"),
    ("civil_affairs", {"from": 1, "to": 2, "reason": "r"}, 404, "ferry-channel-not-found"),
    ("no such link!", {"from": 1, "to": 2, "reason": "r"}, 422, "invalid-request"),
]


def test_a_resend_writes_the_kept_batches_again_and_is_audited_a_bad_one_nothing(desk: Desk) -> None:
    for path, body, status, problem in BAD_RESENDS:
        answer = desk.operator.post(f"{FERRY}/channels/{path}/resend", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"] == PROBLEM + problem, body
    other = desk.other_admin.post(f"{FERRY}/channels/{LINK}/resend", json={"from": 1, "to": 2, "reason": "r"})
    assert other.status_code == 404  # another sector's link: as if it did not exist
    assert desk.written() == [] and desk.audited("ops ferry resend") == []  # the link took every file
    answer = desk.own_admin.post(f"{FERRY}/channels/{LINK}/resend",  # the sector's own administrator may
                                 json={"from": 2, "to": 3, "reason": "网闸丢弃了第 2、3 批"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"channel": DOWN, "from": 2, "to": 3, "resent": 2}
    assert [name.split("_")[-2] for name in desk.written()] == ["0000000002", "0000000003"]
    [(subject, outcome, detail)] = desk.audited("ops ferry resend")
    assert (subject, outcome) == (f"ferry:{DOWN}", "2 batches written again")
    assert detail["reason"] == "网闸丢弃了第 2、3 批" and (detail["from"], detail["to"]) == (2, 3)
    desk.link.carry(desk.link.near, desk.link.far)
    assert desk.link.received_by_far().duplicate_batches == 2  # the far side had applied them: dropped
