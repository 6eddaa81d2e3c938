"""The operators' console in chromium: every console role signs in through the form and sees the navigation
PAGES gives it, other roles get the "not for you" page and no session; the skip link and the sign-in form work
from the keyboard alone; signing out ends the session on the server; the Content-Security-Policy stops a
script an escaping slip would let in; and every page there is passes the tour (tests/support/console_browser.py:
axe-core, no sideways scroll at 1280x800 and 768x1024, no console error or CSP violation, a screenshot).

A page's own tests go here too: sign in with `sign_in`, drive the page, and add its `Stop`s to `STOPS` (or
call `check_page` on a state a stop cannot reach). The module runs on SQLite and PostgreSQL (`live_gateway`):
the pages read the database, and both together stay within the browser tests' allowance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from gateway.domain.roles import Role
from ops.console.web import COOKIE, PAGES
from tests.support.browser import LiveGateway, PageLog
from tests.support.console_browser import (
    CONSOLE,
    SIGN_OUT_BUTTON,
    Stop,
    check_page,
    document_error,
    refused_sign_in,
    sign_in,
    sign_out,
    tour,
)
from tests.support.gateways import SOCIAL_SECURITY_AGENCY

if TYPE_CHECKING:
    from playwright.sync_api import Page

# SQLite only: the pages read only the session store here, which tests/api/test_console_sessions.py runs on both
# databases; on both, this module took twice its time for no page more proved.
pytestmark = [pytest.mark.timeout(30), pytest.mark.parametrize("live_db", ["sqlite"], indirect=True)]

SECTOR = "social_security"
CONSOLE_ROLES = {Role.OPERATOR: {}, Role.SECTOR_ADMIN: {"sector": SECTOR}, Role.SYSTEM_ADMIN: {},
                 Role.SECURITY_ADMIN: {}, Role.AUDITOR: {}}
OTHER_ROLES = {Role.HALL_CLIENT: {}, Role.WINDOW: {}, Role.CLERK: {"department": SOCIAL_SECURITY_AGENCY}}

# The pages a signed-in operator tours (the sign-in page and the "not for you" page are checked on their own).
# The dead-letter pages as a new gateway shows them, with nothing to list; tests/e2e/test_console_flows.py
# checks them full, a letter's story, a bulk plan and a running run (their screenshots without "-empty"), and
# tests/e2e/test_console_tour.py every page with content, the overview's figures too.
STOPS = (
    Stop(CONSOLE, "overview-empty"),
    Stop(CONSOLE + "/no-such-page", "problem", 404),
    Stop(CONSOLE + "/dead-letters", "dead-letters-empty"),
    Stop(CONSOLE + "/replays", "replays-empty"),
)


def nav_titles(page: Page) -> list[str]:
    return page.get_by_role("navigation", name="控制台导航").get_by_role("link").all_inner_texts()


def session_cookie(page: Page) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == COOKIE), None)


def wait_for(page: Page, condition: Callable[[], bool], seconds: float = 5) -> None:
    """Events reach the test through a binding, after the page's own work: poll a little (waiting in the page,
    so that Playwright delivers them meanwhile)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        page.wait_for_timeout(20)


def test_each_console_role_signs_in_and_sees_its_own_navigation(
        live_gateway: LiveGateway, page: Page, page_log: PageLog) -> None:
    for role, scope in CONSOLE_ROLES.items():
        page.context.clear_cookies()
        sign_in(page, live_gateway.url, live_gateway.key(role, name=f"值班 {role}", **scope))
        assert nav_titles(page) == [p.title for p in PAGES if role in p.roles], role
        assert page.get_by_role("button", name=SIGN_OUT_BUTTON).is_visible()
        assert session_cookie(page) is not None
    assert page_log.problems() == []


def test_other_roles_get_the_not_for_you_page_and_no_session(
        live_gateway: LiveGateway, page: Page, page_log: PageLog) -> None:
    for role, scope in OTHER_ROLES.items():
        page_log.console_errors.clear()
        refused_sign_in(page, live_gateway.url, live_gateway.key(role, name="窗口 李明", **scope))
        assert page.get_by_role("heading", level=1).inner_text() == "控制台不对该角色开放", role
        assert session_cookie(page) is None
    check_page(page, page_log, "not-for-you", [document_error(403)])  # the page of the last of them
    page.goto(f"{live_gateway.url}{CONSOLE}")
    assert page.url.startswith(f"{live_gateway.url}{CONSOLE}/sign-in")


def test_the_skip_link_is_the_first_stop_and_moves_focus_to_main(
        live_gateway: LiveGateway, page: Page, page_log: PageLog) -> None:
    sign_in(page, live_gateway.url, live_gateway.key(Role.OPERATOR))
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent.trim()") == "跳到主要内容"
    assert page.locator("a.skip").is_visible()  # shown while it has the focus
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.id === 'main'")
    assert page_log.problems() == []


def test_the_sign_in_form_works_from_the_keyboard_alone(live_gateway: LiveGateway, page: Page) -> None:
    page.goto(f"{live_gateway.url}{CONSOLE}/sign-in")
    for _ in range(5):  # the skip link, the brand, then the key's field
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "key":
            break
    assert page.evaluate("() => document.activeElement.id") == "key"
    page.keyboard.type(live_gateway.key(Role.OPERATOR))
    with page.expect_navigation(url=f"{live_gateway.url}{CONSOLE}"):
        page.keyboard.press("Enter")
    assert page.get_by_role("heading", level=1).inner_text() == "概览"


def test_signing_out_ends_the_session(live_gateway: LiveGateway, page: Page, page_log: PageLog) -> None:
    sign_in(page, live_gateway.url, live_gateway.key(Role.OPERATOR))
    cookie = session_cookie(page)
    assert cookie is not None
    sign_out(page)
    assert session_cookie(page) is None
    page.go_back()  # the overview is not kept (no-store): asked again, it sends the browser to sign in
    assert page.url.startswith(f"{live_gateway.url}{CONSOLE}/sign-in")
    page.reload()
    assert page.url.startswith(f"{live_gateway.url}{CONSOLE}/sign-in")
    # the server forgot the session, not only the browser its cookie
    again = httpx.get(f"{live_gateway.url}{CONSOLE}", cookies={COOKIE: cookie}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith(f"{CONSOLE}/sign-in")
    assert page_log.problems() == []


INJECT = """() => {
  const script = document.createElement('script');
  script.textContent = 'window.__injected = "script"';
  document.querySelector('main').append(script);
  document.querySelector('main').insertAdjacentHTML('beforeend',
    '<img alt="x" src="data:," onerror="window.__injected = \\'handler\\'">');
}"""


def test_the_policy_stops_what_an_escaping_slip_would_let_in(
        live_gateway: LiveGateway, page: Page, page_log: PageLog) -> None:
    sign_in(page, live_gateway.url, live_gateway.key(Role.OPERATOR))
    page.evaluate(INJECT)  # as a payload rendered unescaped would: an inline script and an inline handler
    wait_for(page, lambda: len(page_log.csp_violations) >= 2)
    assert page.evaluate("() => window.__injected") is None
    assert sorted(v.split(" ")[0] for v in page_log.csp_violations) == ["script-src-attr", "script-src-elem"]


def test_the_pages_pass_the_tour(live_gateway: LiveGateway, page: Page, page_log: PageLog) -> None:
    answer = page.goto(f"{live_gateway.url}{CONSOLE}/sign-in")
    assert answer is not None and answer.status == 200
    check_page(page, page_log, "sign-in")
    sign_in(page, live_gateway.url, live_gateway.key(Role.OPERATOR, name="值班员 王芳"))
    written = tour(page, page_log, live_gateway.url, STOPS)
    assert [path.name for path in written] == [f"console-{stop.name}.png" for stop in STOPS]



def test_the_checks_fail_a_page_that_logs_an_error_nobody_expected(
        live_gateway: LiveGateway, page: Page, page_log: PageLog) -> None:
    page.goto(f"{live_gateway.url}{CONSOLE}/no-such-page")  # its 404 is logged, and this test does not say so
    with pytest.raises(AssertionError, match="console errors"):
        check_page(page, page_log, "unexpected")
    with pytest.raises(AssertionError, match="status 404, expected 200"):
        tour(page, page_log, live_gateway.url, [Stop(CONSOLE + "/no-such-page", "unexpected")])
