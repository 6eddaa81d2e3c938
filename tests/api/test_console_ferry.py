"""The console's ferry page (`/console/ferry`, ops/console/ferry.py) on a link made by two real stations
(tests/support/ferry_stations.py `troubled`): the link both ways with its gap and quarantined file, the link's
page, the overview's figure leading to it, and the resend form — written and audited through the same service as
`POST /v1/ops/ferry/channels/{channel}/resend`, refused without the CSRF token, for another sector's administrator
(not found) and for a role the page does not admit. Both databases."""

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
from tests.support.console import key_of, sign_in
from tests.support.ferry_stations import DOWN, LINK, UP, FerryClock, LinkClock, TestLink, make_link, troubled, watching

PAGE = f"/console/ferry/{LINK}"
RESEND = f"{PAGE}/resend"


@dataclass
class Console:
    gateway: Gateway
    link: TestLink
    app: Any

    def signed_in(self, role: Role, **scope: str) -> tuple[TestClient, str]:
        client = TestClient(self.app)
        return client, sign_in(client, key_of(self.gateway, role, **scope))

    def resends(self) -> list[tuple[str | None, str | None, Any]]:
        ledger = self.gateway.ledger
        return [(r.subject, r.outcome, ledger.open_body(r)) for r in ledger.records(Filters(AUDIT), 500)
                if r.action == "ops ferry resend"]

    def written(self) -> list[str]:
        return [path.name for path in self.link.near.config.outgoing.ready()]


@pytest.fixture
def console(make_gateway: Callable[..., Gateway], tmp_path: Path) -> Console:
    clock = FerryClock()
    gateway = make_gateway(clock=LinkClock(clock), bundles=())
    link = make_link(gateway.engine, tmp_path / "ferry", clock)
    troubled(link)
    gateway = watching(gateway, link)
    return Console(gateway, link, create_app(gateway))


def test_the_ferry_page_lists_the_link_both_ways_with_its_gap_and_quarantine(console: Console) -> None:
    client, _ = console.signed_in(Role.OPERATOR)
    listing = client.get("/console/ferry")
    assert listing.status_code == 200, listing.text
    text = listing.text
    assert f'<a href="{PAGE}">{LINK}</a>' in text and text.count("<h1") == 1
    assert f"<code>{DOWN}</code>" in text and f"<code>{UP}</code>" in text
    assert '<td data-label="未补缺口" class="number">1（最早已等待 2 分 30 秒）</td>' in text
    assert '<td data-label="滞后批次" class="number">3</td>' in text
    assert '<td data-label="对端最后信号">30 秒前</td>' in text
    assert "隔离批次：1（<code>unreadable</code> 1）" in text
    detail = client.get(PAGE).text
    assert ('<td data-label="起" class="number">2</td><td data-label="止" class="number">2</td>' in detail)
    assert f"<code>{UP}_0000000099_deadbeef.ferry</code>" in detail
    assert '<label for="resend-reason">' in detail and 'name="csrf"' in detail
    overview = client.get("/console").text  # the overview's ferry figure leads here
    assert f'<td data-label="链路"><a href="{PAGE}">{LINK}</a></td>' in overview


def test_the_resend_form_writes_the_batches_again_and_is_audited(console: Console) -> None:
    client, csrf = console.signed_in(Role.SECTOR_ADMIN, sector=LINK)  # the link's own sector administrator
    form = {"from": "2", "to": "3", "reason": "网闸丢弃了第 2、3 批"}
    refused = client.post(RESEND, data=form, follow_redirects=False)  # no CSRF token
    assert refused.status_code == 403 and "CSRF" in refused.text
    bad = client.post(RESEND, data={**form, "to": "9", "csrf": csrf}, follow_redirects=False)  # only 3 were sent
    assert bad.status_code == 422 and "重发范围无效" in bad.text
    blank = client.post(RESEND, data={**form, "reason": "  ", "csrf": csrf}, follow_redirects=False)
    assert blank.status_code == 422
    assert console.written() == [] and console.resends() == []
    answer = client.post(RESEND, data={**form, "csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"{PAGE}?resent=2"
    assert "已重新写入 2 批" in client.get(answer.headers["location"]).text
    assert [name.split("_")[-2] for name in console.written()] == ["0000000002", "0000000003"]
    [(subject, outcome, detail)] = console.resends()
    assert (subject, outcome) == (f"ferry:{DOWN}", "2 batches written again")
    assert detail["reason"] == "网闸丢弃了第 2、3 批" and (detail["from"], detail["to"]) == (2, 3)


def test_another_sector_finds_no_link_and_other_roles_are_not_let_in(console: Console) -> None:
    other, csrf = console.signed_in(Role.SECTOR_ADMIN, sector="housing_fund")
    assert LINK not in other.get("/console/ferry").text
    assert other.get(PAGE).status_code == 404
    form = {"from": "1", "to": "1", "reason": "r", "csrf": csrf}
    assert other.post(RESEND, data=form, follow_redirects=False).status_code == 404
    for role in (Role.SYSTEM_ADMIN, Role.AUDITOR):
        client, csrf = console.signed_in(role)
        assert client.get("/console/ferry").status_code == 403
        assert client.post(RESEND, data={**form, "csrf": csrf}, follow_redirects=False).status_code == 403
        assert 'href="/console/ferry"' not in client.get("/console").text
    assert console.written() == [] and console.resends() == []
