"""Every console page in chromium with real content on it: the overview scene of tests/support/overview.py (cases in
several states, overdue ones, dead letters, adapters with versions and a rehearsal's report, certificates nearing
expiry) plus a troubled ferry link (tests/support/ferry_stations.py), audit records and a pending approval, served
over HTTP. Each role signs in once and tours the pages it may enter (tests/support/console_browser.py `tour`:
axe-core finds no serious or critical issue, no sideways scroll at 1280x800 nor 768x1024, no console error or CSP
violation, a screenshot console-NAME.png). The overview's figures refresh themselves (htmx polls every 10 s: the
page's clock is Playwright's, moved on). On the adapter's page, a form-heavy one, Tab reaches every interactive
element in document order, each with an accessible name.

SQLite only, one gateway for the whole tour: the pages' queries are proved on both databases by
tests/api/test_console_*.py; this module proves what only a browser sees, within the browser tests' allowance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.bootstrap.serving import serve_in_thread
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from gateway.security.approvals import Action, Approvals
from tests.support.browser import PageLog
from tests.support.console_browser import CONSOLE, Stop, sign_in, tour
from tests.support.ferry_stations import LINK, make_link, troubled, watching
from tests.support.gateways import register_again
from tests.support.overview import HF, SS, overview_scene

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.timeout(60), pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
NEXT = "2026.12.9"  # the housing fund's second version, registered and waiting for approval


@dataclass
class Tour:
    url: str
    gateway: Gateway
    case_no: str  # a case with a dead letter, overdue

    def key(self, role: Role, **scope: str) -> str:
        _, key = self.gateway.keys.issue(f"巡检 {role}", [role], **scope)
        return key


@pytest.fixture
def scene(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator, tmp_path: Path
          ) -> Iterator[Tour]:
    scene = overview_scene(make_gateway, simulator)
    link = make_link(scene.gateway.engine, tmp_path / "ferry")  # its keys valid from today: its clock is near
    troubled(link)
    scene.clock.advance(link.clock.now - scene.clock.now())  # the gateway's clock where the link's stations are
    gateway = watching(scene.gateway, link)
    register_again(gateway.bundles, HF, NEXT, tmp_path / "next")  # a version to test, rehearse, activate
    Approvals(gateway.engine, scene.clock).request(
        Action.ACTIVATE_BUNDLE, {"sector": HF, "version": NEXT, "force": False}, f"{HF} {NEXT}", "system-admin-1", HF)
    with gateway.engine.connect() as conn:
        case_no = conn.execute(select(t.cases.c.case_no).where(t.cases.c.state == "accepted")
                               .order_by(t.cases.c.case_no)).scalars().first()
    assert case_no is not None
    with serve_in_thread(create_app(gateway)) as url:
        yield Tour(url, gateway, case_no)


def signed_in_tour(page: Page, log: PageLog, scene: Tour, key: str, stops: list[Stop]) -> None:
    page.context.clear_cookies()
    sign_in(page, scene.url, key)
    written = tour(page, log, scene.url, stops)
    assert [path.name for path in written] == [f"console-{stop.name}.png" for stop in stops]


# The focused element's accessible name as the console's markup gives it (aria-label, aria-labelledby, <label>,
# a button's text or value), its tag, and whether it comes after the one focused before in the document.
FOCUSED = """(previous) => {
  const el = document.activeElement;
  const text = (node) => (node ? node.textContent : '').replace(/\\s+/g, ' ').trim();
  const byIds = (ids) => ids.split(/\\s+/).map((id) => text(document.getElementById(id))).join(' ').trim();
  const name = (el.getAttribute('aria-label') || '').trim()
    || (el.getAttribute('aria-labelledby') ? byIds(el.getAttribute('aria-labelledby')) : '')
    || [...(el.labels || [])].map(text).join(' ').trim()
    || (['submit', 'button', 'reset'].includes(el.type) && el.tagName === 'INPUT' ? el.value.trim() : '')
    || text(el) || (el.getAttribute('title') || '').trim();
  const order = window.__lastFocused
    ? Boolean(window.__lastFocused.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) : true;
  window.__lastFocused = el;
  return {tag: el.tagName.toLowerCase(), name, after: order, body: el === document.body};
}"""
FOCUSABLE = """() => [...document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]')]
  .filter((el) => !el.disabled && el.type !== 'hidden' && el.tabIndex >= 0 && el.getClientRects().length > 0)
  .filter((el, _, all) => el.type !== 'radio' || all.find((r) => r.type === 'radio' && r.name === el.name) === el)
  .length"""


def tab_through(page: Page) -> list[dict[str, Any]]:
    """Tab from the top of the page until the focus leaves the document; each element focused on the way."""
    page.evaluate("() => { document.activeElement.blur(); window.__lastFocused = null; }")
    seen = []
    for _ in range(200):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused["body"]:
            break
        seen.append(focused)
    return seen


def test_every_page_with_content_passes_the_tour_for_the_roles_that_may_enter_it(
        scene: Tour, page: Page, page_log: PageLog) -> None:
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))  # the console has none: not our 404
    page.clock.install()  # the page's timers, moved on by the test (htmx's polling)
    signed_in_tour(page, page_log, scene, scene.key(Role.OPERATOR), [
        Stop(CONSOLE, "overview"),
        Stop(CONSOLE + "/cases?state=accepted", "cases"),
        Stop(f"{CONSOLE}/cases/{scene.case_no}", "journey"),
        Stop(CONSOLE + "/ferry", "ferry"),
        Stop(f"{CONSOLE}/ferry/{LINK}", "ferry-channel"),
    ])
    page.goto(f"{scene.url}{CONSOLE}")
    assert page.locator("svg.trend rect").count() == 7
    page.evaluate("() => document.querySelector('#figures p.muted').textContent = 'stale'")
    page.clock.run_for(10_500)  # hx-trigger="every 10s"
    page.wait_for_function("() => document.querySelector('#figures p.muted').textContent.startsWith('统计时间')")
    assert page_log.problems() == []
    signed_in_tour(page, page_log, scene, scene.key(Role.SYSTEM_ADMIN), [
        Stop(CONSOLE + "/adapters", "adapters"),
        Stop(f"{CONSOLE}/adapters/{HF}", "adapter"),
        Stop(CONSOLE + "/approvals", "approvals"),
    ])
    page.goto(f"{scene.url}{CONSOLE}/adapters/{HF}")
    focused = tab_through(page)
    assert len(focused) == page.evaluate(FOCUSABLE) > 15, focused  # every one reached, the forms' too
    assert [f for f in focused if not f["name"]] == [], "focused with no accessible name"
    assert all(f["after"] for f in focused), f"the focus went back up the page: {focused}"
    signed_in_tour(page, page_log, scene, scene.key(Role.SECURITY_ADMIN), [
        Stop(CONSOLE + "/certificates", "certificates"),
        Stop(CONSOLE + "/certificates/gw-server/rotate", "certificate-rotate"),
    ])
    page.goto(f"{scene.url}{CONSOLE}/certificates")  # the scene's days moved on: gw-server's lapsed, ss-client's near
    expired = page.get_by_role("table", name="gw-server（网关自用）").get_by_role("row").nth(1)
    assert expired.get_by_text("（已过期）").is_visible()
    assert page.get_by_role("table", name="ss-client（部门 social_security）").get_by_text("（即将到期）").is_visible()
    signed_in_tour(page, page_log, scene, scene.key(Role.AUDITOR), [
        Stop(CONSOLE + "/audit", "audit"),
        Stop(CONSOLE + "/audit/verify", "audit-verify"),
    ])
    signed_in_tour(page, page_log, scene, scene.key(Role.SECTOR_ADMIN, sector=SS), [
        Stop(CONSOLE + "/dead-letters", "sector-dead-letters"),
        Stop(f"{CONSOLE}/adapters/{SS}", "sector-adapter"),
    ])
    assert page_log.problems() == []
