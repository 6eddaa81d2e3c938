"""The console's overview page (`/console`, ops/console/overview.py): the figures of `GET /v1/ops/overview` for the
same scope, grouped, each linked to the console page of the list it counts where the identity may enter it, the
dead letters' 7-day trend as an accessible chart and table, and the figures' region alone for htmx's refresh.
The gateway is tests/support/overview.py's scene. Both databases."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway
from gateway.domain.roles import Role
from tests.support.console import key_of, sign_in
from tests.support.overview import HF, SS, TREND, TREND_DAYS, Scene, overview_scene

ANCHOR = re.compile(r'<a href="([^"]+)">([^<]*)</a>')


@pytest.fixture
def scene(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Scene:
    return overview_scene(make_gateway, simulator)


def page(scene: Scene, role: Role, htmx: bool = False, **scope: str) -> str:
    client = TestClient(scene.app)
    sign_in(client, key_of(scene.gateway, role, **scope))
    answer = client.get("/console", headers={"HX-Request": "true"} if htmx else {})
    assert answer.status_code == 200, answer.text
    return answer.text


def links(text: str) -> list[tuple[str, str]]:
    """Every (address, text) of the figures' region, in the page's order."""
    region = text[text.index('<p class="muted">统计时间'):]
    return [(html.unescape(url), html.unescape(label)) for url, label in ANCHOR.findall(region)]


def test_an_operator_sees_every_figure_linked_to_what_it_counts(scene: Scene) -> None:
    text = page(scene, Role.OPERATOR)
    shown = links(text)
    assert "<h1>概览</h1>" in text and text.count("<h1") == 1
    assert "统计时间：2026-12-02 10:00:00" in text
    # cases: by state (every state) and overdue
    assert ("/console/cases?overdue=true", "2") in shown
    assert ("/console/cases?state=accepted", "2") in shown and ("/console/cases?state=closed", "1") in shown
    assert sum(1 for url, _ in shown if url.startswith("/console/cases?state=")) == 14
    # the outbox and the one queue in process
    assert [(u, t) for u, t in shown if "outbox=" in u] == [
        ("/console/cases?outbox=pending", "2"), ("/console/cases?outbox=queued", "0"),
        ("/console/cases?outbox=leased", "1"), ("/console/cases?outbox=due", "8 天 00 小时"),
        ("/console/cases?outbox=pending", "2")]
    # dead letters: waiting, by sector and class, the trend day by day (zero shown as zero)
    letters = [(u, t) for u, t in shown if u.startswith("/console/dead-letters")]
    assert letters[:6] == [
        ("/console/dead-letters", "6"),
        (f"/console/dead-letters?sector={HF}&error_class=timeout", "2"),
        (f"/console/dead-letters?sector={HF}&error_class=mapping", "1"),
        (f"/console/dead-letters?sector={SS}&error_class=sector_fault", "1"),
        (f"/console/dead-letters?sector={SS}&error_class=timeout", "1"),
        (f"/console/dead-letters?sector={SS}&error_class=transport", "1")]
    trend = letters[6:]
    assert [int(t) for _, t in trend] == TREND
    assert trend[-1][0] == "/console/dead-letters?status=any&since=2026-12-02T00%3A00%3A00&until=2026-12-03T00%3A00%3A00"
    # circuits and adapters lead to the sector's adapters; certificates are not the operator's page: unlinked
    assert (f"/console/adapters/{HF}", HF) in shown and (f"/console/adapters/{SS}", SS) in shown
    assert (f"/console/adapters/{SS}?version={scene.version}", scene.version) in shown
    assert "未通过" not in text and "failed，通过 1/3，2026-12-02 09:00:00" in text
    assert not any(u.startswith("/console/certificates") for u, _ in shown)
    assert "gw-server" in text and "ss-client" in text and "hf-client" in text and ">far<" not in text
    assert "没有摆渡链路" in text


def test_the_trend_is_a_chart_with_its_numbers_for_screen_readers(scene: Scene) -> None:
    text = page(scene, Role.OPERATOR)
    chart = text[text.index("<svg"):text.index("</svg>")]
    assert 'role="img"' in chart and 'aria-labelledby="trend-title trend-desc"' in chart
    assert '<h3 id="trend-title">近 7 天每日新增死信</h3>' in text
    described = "；".join(f"{day}：{n}" for day, n in zip(TREND_DAYS, TREND, strict=True))
    assert f'<desc id="trend-desc">{described}</desc>' in chart
    assert chart.count("<rect") == 7 and 'height="0"' in chart and 'height="90"' in chart  # the largest: full
    assert "style" not in chart
    for day in TREND_DAYS:
        assert f'<td data-label="日期">{day}</td>' in text


def test_htmx_refreshes_the_figures_region_alone(scene: Scene) -> None:
    full = page(scene, Role.OPERATOR)
    assert 'hx-get="/console" hx-trigger="every 10s" hx-swap="innerHTML"' in full
    partial = page(scene, Role.OPERATOR, htmx=True)
    assert "<html" not in partial and "<h1" not in partial
    assert links(partial) == links(full)


def test_a_sector_administrator_sees_their_sector_only(scene: Scene) -> None:
    text = page(scene, Role.SECTOR_ADMIN, sector=HF)
    shown = links(text)
    assert "<h1>概览（housing_fund）</h1>" in text
    assert 'id="h-cases"' not in text and 'id="h-outbox"' not in text
    assert not any(u.startswith("/console/cases") for u, _ in shown)
    letters = [(u, t) for u, t in shown if u.startswith("/console/dead-letters")]
    assert letters[:3] == [(f"/console/dead-letters?sector={HF}", "3"),
                           (f"/console/dead-letters?sector={HF}&error_class=timeout", "2"),
                           (f"/console/dead-letters?sector={HF}&error_class=mapping", "1")]
    assert [int(t) for _, t in letters[3:]] == [0, 0, 0, 1, 0, 0, 2]
    assert SS not in text and "gw-server" not in text and "hf-client" in text
    assert (f"/console/adapters/{HF}", HF) in shown and ("/console/certificates?name=hf-client", "hf-client") in shown


def test_the_auditor_and_the_administrators_see_the_whole_gateway_linked_where_they_may_go(scene: Scene) -> None:
    auditor = page(scene, Role.AUDITOR)
    shown = links(auditor)
    assert 'id="h-cases"' in auditor and 'id="h-outbox"' in auditor and ">6<" in auditor
    assert not any(u.startswith(("/console/cases", "/console/dead-letters", "/console/adapters")) for u, _ in shown)
    security = links(page(scene, Role.SECURITY_ADMIN))
    assert ("/console/certificates?name=gw-server", "gw-server") in security
    assert not any(u.startswith("/console/adapters") for u, _ in security)
    system = links(page(scene, Role.SYSTEM_ADMIN))
    assert (f"/console/adapters/{SS}", SS) in system and not any(u.startswith("/console/certificates") for u, _ in system)
