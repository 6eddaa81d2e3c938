"""The browser tests' support works (tests/support/browser.py): chromium opens the gateway's own /docs page
served by uvicorn; axe-core passes an accessible page and fails one with serious violations, both under the
console's strict Content-Security-Policy; an inline script the policy blocks is recorded; a page too wide for
a tablet is caught; a screenshot is written."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from gateway.domain.roles import Role
from tests.support.browser import LiveGateway, PageLog, axe_check, no_horizontal_scroll, screenshot
from tests.support.local_server import LocalServer, Reply, Seen

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.timeout(30)

# The console's policy (CONSOLE-SPEC.md): nothing inline, nothing from elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PIXEL = "data:image/gif;base64,R0lGODlhAQABAAAAACw="

PAGES = {
    "/accessible": f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>死信</title></head>
<body><nav aria-label="主导航"><a href="/accessible">概览</a></nav>
<main><h1>死信</h1><img src="{PIXEL}" alt="状态图标">
<form method="post" action="/accessible"><label for="q">关联号</label><input id="q" name="q">
<button type="submit">搜索</button></form>
<table><caption>死信列表</caption><tr><th scope="col">编号</th></tr><tr><td>17</td></tr></table>
</main></body></html>""",
    "/inaccessible": f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>死信</title></head>
<body><main><h1>死信</h1><img src="{PIXEL}"><button type="button"></button></main></body></html>""",
    "/inline-script": """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>内联</title></head>
<body><main><h1>内联脚本</h1><script>document.title = "ran";</script></main></body></html>""",
    "/too-wide": """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>宽</title>
<link rel="stylesheet" href="/wide.css"></head>
<body><main><h1>宽表</h1><div class="wide">x</div></main></body></html>""",
}
STYLES = {"/wide.css": ".wide { width: 1000px; }"}


def serve(seen: Seen) -> Reply:
    if seen.path in STYLES:
        return Reply(body=STYLES[seen.path].encode(), content_type="text/css", headers={"Content-Security-Policy": CSP})
    if seen.path == "/favicon.ico":
        return Reply(204, b"", content_type="image/x-icon")  # chromium asks for it; a 404 is a console error
    if seen.path not in PAGES:
        return Reply(404, b"", content_type="text/plain")
    return Reply(body=PAGES[seen.path].encode(), content_type="text/html; charset=utf-8",
                 headers={"Content-Security-Policy": CSP})


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with LocalServer(serve) as server:
        yield server.url


def test_the_live_gateway_answers_over_http_on_each_database(live_gateway: LiveGateway, live_db: str) -> None:
    assert live_gateway.gateway.settings.database_url == live_db
    operator = {"Authorization": f"Bearer {live_gateway.key(Role.OPERATOR)}"}
    assert httpx.get(f"{live_gateway.url}/v1/ops/dead-letters", headers=operator).status_code == 200
    assert httpx.get(f"{live_gateway.url}/v1/ops/dead-letters", headers=live_gateway.keys.window).status_code == 403
    assert httpx.get(f"{live_gateway.url}/v1/ops/dead-letters").status_code == 401
    assert {sector: sim.url.startswith("http://127.0.0.1:") for sector, sim in live_gateway.simulators.items()} == {
        "social_security": True, "housing_fund": True}


@pytest.mark.parametrize("live_db", ["sqlite"], indirect=True)  # the page reads no database: once is enough
def test_chromium_opens_the_gateways_docs_page(live_gateway: LiveGateway, page: Page, page_log: PageLog) -> None:
    page.goto(f"{live_gateway.url}/docs")
    assert page.title() == "Yiwang gateway · API 文档"
    # Swagger UI's bundle ran under the page's policy (its rendering of the whole API is left out: seconds)
    assert page.evaluate("() => typeof SwaggerUIBundle") == "function"
    assert page_log.csp_violations == []


def test_axe_passes_an_accessible_page_under_the_consoles_policy(site: str, page: Page, page_log: PageLog) -> None:
    page.goto(f"{site}/accessible")
    axe_check(page)
    assert page_log.problems() == []  # injecting axe broke no rule of the page's policy


def test_axe_fails_a_page_with_serious_violations(site: str, page: Page) -> None:
    page.goto(f"{site}/inaccessible")
    with pytest.raises(AssertionError) as failed:
        axe_check(page)
    report = str(failed.value)
    assert "image-alt (critical)" in report and "button-name (critical)" in report, report
    assert "img" in report and "button" in report  # the targets, as selectors


def test_an_inline_script_the_policy_blocks_is_recorded(site: str, page: Page, page_log: PageLog) -> None:
    page.goto(f"{site}/inline-script")
    deadline = time.monotonic() + 5
    while not page_log.csp_violations and time.monotonic() < deadline:
        page.wait_for_timeout(20)  # the event reaches the test through a binding, after the load
    assert page.title() == "内联"  # the script did not run
    assert page_log.csp_violations == [f"script-src-elem blocked inline at {site}/inline-script:2"]
    assert any("Content Security Policy" in error for error in page_log.console_errors)


def test_a_page_wider_than_a_tablet_is_caught(site: str, page: Page) -> None:
    page.goto(f"{site}/accessible")
    no_horizontal_scroll(page)
    page.goto(f"{site}/too-wide")
    with pytest.raises(AssertionError, match=r"at 768x1024: 10\d\d px wide in 768 px; sticking out: div\.wide"):
        no_horizontal_scroll(page)
    assert page.viewport_size == {"width": 1280, "height": 800}  # put back


def test_a_screenshot_is_written(site: str, page: Page, tmp_path: Path) -> None:
    page.goto(f"{site}/accessible")
    path = screenshot(page, "accessible-page", folder=tmp_path)
    assert path == tmp_path / "accessible-page.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="lower-case"):
        screenshot(page, "../elsewhere", folder=tmp_path)
