"""The operators' console in a real browser: signing in through its form, and the checks every console page
passes — the base of tests/e2e/test_console_browser.py, which each page's tests extend.

Contract (functions, no fixtures; the `page`, `page_log` and `live_gateway` fixtures are tests/conftest.py's):
- `sign_in(page, base_url, key)`: opens /console/sign-in, fills the field labelled "API 密钥", clicks the sign-in
  button and waits for the overview (`<h1>概览</h1>` at /console) — as a person does; the session cookie is then
  the page's context's. `refused_sign_in(...)`: the same for a key the console turns away, waiting for the
  answer page instead.
- `sign_out(page)`: the header's "退出" button, then the sign-in page.
- `check_page(page, log, name)`: the page as it is now passes what every console page must:
  axe-core finds no serious or critical violation, no horizontal scroll at 1280x800 nor 768x1024, the page's
  log holds no console error (`expected_errors`: those the test expects, e.g. the document's own 404) and no
  Content-Security-Policy violation; then its screenshot var/screenshots/console-NAME.png.
- `tour(page, log, base_url, stops)`: visits each `Stop` (path, screenshot name, the status its document is
  answered with) and checks it as above. A new page's tests add their stops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.browser import PageLog, axe_check, no_horizontal_scroll, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Page

CONSOLE = "/console"
KEY_LABEL = "API 密钥"
SIGN_IN_BUTTON = "用密钥登录"
SIGN_OUT_BUTTON = "退出"


def sign_in(page: Page, base_url: str, key: str) -> None:
    """Sign in through the form as a person would; back on the overview (a page's test then goes to its page)."""
    _submit_key(page, base_url, key)
    page.wait_for_url(f"{base_url}{CONSOLE}")
    page.get_by_role("heading", level=1, name="概览").wait_for()


def refused_sign_in(page: Page, base_url: str, key: str) -> None:
    """Submit a key the console turns away (an unknown key, a role it is not for); the answer page is loaded."""
    _submit_key(page, base_url, key)
    page.wait_for_load_state()


def _submit_key(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}{CONSOLE}/sign-in")
    page.get_by_label(KEY_LABEL).fill(key)
    with page.expect_navigation():
        page.get_by_role("button", name=SIGN_IN_BUTTON).click()


def sign_out(page: Page) -> None:
    with page.expect_navigation(url=re.compile(r"/console/sign-in$")):
        page.get_by_role("button", name=SIGN_OUT_BUTTON).click()


def document_error(status: int) -> str:
    """What chromium logs as a console error when a document is answered with an error status."""
    return f"Failed to load resource: the server responded with a status of {status}"


def check_page(page: Page, log: PageLog, name: str, expected_errors: Iterable[str] = ()) -> Path:
    """What every console page passes, on the page as it is now; its screenshot console-NAME.png."""
    axe_check(page)
    no_horizontal_scroll(page)
    expected = list(expected_errors)
    unexpected = [error for error in log.console_errors
                  if not any(error.startswith(allowed) for allowed in expected)]
    assert unexpected == [] and len(log.console_errors) == len(expected), (
        f"{page.url}: console errors {log.console_errors}, expected only {expected}")
    assert log.uncaught == [], f"{page.url}: uncaught exceptions {log.uncaught}"
    assert log.csp_violations == [], f"{page.url}: CSP violations {log.csp_violations}"
    return screenshot(page, f"console-{name}")


@dataclass(frozen=True)
class Stop:
    """One page of a tour: its path under the base URL, its screenshot's name, its document's status."""

    path: str
    name: str
    status: int = 200


def tour(page: Page, log: PageLog, base_url: str, stops: Iterable[Stop]) -> list[Path]:
    """Visit each stop in turn and check it (`check_page`); the screenshots written."""
    written = []
    for stop in stops:
        log.console_errors.clear()  # each stop answers for its own errors
        answer = page.goto(f"{base_url}{stop.path}")
        assert answer is not None and answer.status == stop.status, (
            f"{stop.path}: status {answer.status if answer else None}, expected {stop.status}")
        errors = [document_error(stop.status)] if stop.status >= 400 else []
        written.append(check_page(page, log, stop.name, errors))
    return written
