"""The console's overview and ferry pages in chromium (tests/support/browser.py), signed in as an operator on a
served gateway with a dead letter waiting: no serious or critical accessibility issue (axe-core), no horizontal
scrolling at 1280 and 768 px, nothing the Content-Security-Policy blocked, and htmx's refresh of the figures
swaps them in place. Both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from gateway.domain.roles import Role
from gateway.persistence.repository import Failure
from tests.support.browser import LiveGateway, PageLog, axe_check, no_horizontal_scroll, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.timeout(60)


def signed_in(live: LiveGateway, page: Page, role: Role) -> None:
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))  # the console has none: not our 404
    page.goto(f"{live.url}/console/sign-in")
    page.fill("#key", live.key(role))
    page.click("text=用密钥登录")
    page.wait_for_url(f"{live.url}/console")


def test_the_overview_is_accessible_and_refreshes_its_figures(live_gateway: LiveGateway, page: Page,
                                                              page_log: PageLog) -> None:
    with live_gateway.gateway.service.uow() as uow:
        about = {"case_no": "browser-overview", "sector": "housing_fund", "operation": "submit_case",
                 "idempotency_key": "browser-overview:1"}
        uow.dead_letters.add(None, Failure("timeout", "no answer"), datetime.now(UTC), about=about)
        uow.commit()
    signed_in(live_gateway, page, Role.OPERATOR)
    assert page.locator("h1").inner_text() == "概览"
    assert page.locator("svg.trend rect").count() == 7
    axe_check(page)
    no_horizontal_scroll(page)
    screenshot(page, "console-overview")
    page.evaluate("() => document.querySelector('#figures p.muted').textContent = 'stale'")
    page.evaluate("() => htmx.trigger('#figures', 'every 10s')")  # what the timer fires, without the wait
    page.wait_for_function("() => document.querySelector('#figures p.muted').textContent.startsWith('统计时间')")
    assert page_log.problems() == []


def test_the_ferry_page_is_accessible(live_gateway: LiveGateway, page: Page, page_log: PageLog) -> None:
    signed_in(live_gateway, page, Role.OPERATOR)
    page.click("nav >> text=摆渡通道")
    page.wait_for_url(f"{live_gateway.url}/console/ferry")
    assert page.locator("h1").inner_text() == "摆渡通道"
    axe_check(page)
    no_horizontal_scroll(page)
    assert page_log.problems() == []
