"""Browser tests: Debian's chromium driven by Playwright, pages checked for accessibility and layout, and a
real gateway served over HTTP for them to open.

Contract (the fixtures in tests/conftest.py are thin wrappers of these; test modules import the functions):
- `launched_chromium()`: Playwright and one headless chromium — the executable at
  $YIWANG_CHROMIUM or /usr/bin/chromium (`make browser` installs Debian's), never a browser Playwright downloads
  — with the flags a closed network needs (no background connections, no QUIC, no sync) and a new empty
  profile (Playwright's launch makes one per browser and removes it at close). Missing Playwright, chromium
  or a launch that fails: `service_missing` (a skip saying how to install, a failure under
  YIWANG_REQUIRE_SERVICES=1).
- `opened_page(browser, log)`: a page in a context of its own (1280x800, zh-CN, Asia/Shanghai, every wait at
  most 10 s) whose console errors, uncaught exceptions and Content-Security-Policy violations go into `log`
  (a `PageLog`). Violations are read from the page's `securitypolicyviolation` events through a binding:
  neither the listener (an init script) nor the binding is itself subject to the page's CSP.
- `axe_check(page)`: runs axe-core (var/test-assets/axe.min.js, fetched by the Makefile at install, pinned)
  in the page and fails on any violation of impact serious or critical, listing rule, impact and targets.
  axe's source goes in through `page.evaluate` (DevTools' Runtime.evaluate), which a strict CSP
  (`script-src 'self'`) does not block — `add_script_tag` would add an inline <script> the CSP refuses, and
  `bypass_csp` would switch off the very policy the page is tested under. Nothing of it is logged as a
  violation.
- `no_horizontal_scroll(page)`: at 1280x800 and 768x1024 the document is no wider than the viewport
  (scrollWidth <= clientWidth); a failure names the elements that stick out. The viewport is put back.
- `screenshot(page, name)`: the full page as var/screenshots/NAME.png (`make screenshots` copies them into
  docs/screenshots/).
- `served_gateway(database_url, var_dir, **overrides)`: a gateway built as tests/conftest.py `make_gateway`
  builds them (shipped bundles activated for the social-security and housing-fund simulators, run on loopback;
  `overrides`: other settings), its app served by uvicorn in a thread on an ephemeral port; a `LiveGateway`
  with its URL, the gateway itself (to drain, seed, inspect), the simulators and API keys per role. Dispatch is
  not running: a test drains, or starts it (`gateway.start_dispatcher()`; the gateway's close stops it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.simulators.base import SimulatorBase
from gateway.bootstrap.app import Gateway, build_gateway, create_app
from gateway.bootstrap.serving import serve_in_thread
from gateway.domain.roles import Role
from tests.support.gateways import Keys, activate_shipped, settings_for_tests
from tests.support.services import service_missing
from tests.support.simulators import SIMULATORS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "var" / "test-assets" / "axe.min.js"
SCREENSHOTS = ROOT / "var" / "screenshots"

CHROMIUM = Path(os.environ.get("YIWANG_CHROMIUM", "/usr/bin/chromium"))
HOW_TO_INSTALL = "install it with: make browser (Debian's chromium and fonts-wqy-microhei, as root)"
# Headless on a machine with no way out: every background connection chromium would try is refused, many at a
# time, and slows the start; sandboxing needs user namespaces a container (or root) may not have.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 10_000  # every Playwright wait: a page of ours that takes longer is broken
VIEWPORT = {"width": 1280, "height": 800}
WIDTHS = ((1280, 800), (768, 1024))  # the desk's screen and a tablet upright: no horizontal scroll at either
BLOCKING_IMPACTS = ("serious", "critical")


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        service_missing("Playwright (the `test` extra)", "install it with: make .venv/.installed", exc)
    if not CHROMIUM.exists():
        service_missing(f"chromium at {CHROMIUM}", HOW_TO_INSTALL, FileNotFoundError(str(CHROMIUM)))
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                                 timeout=30_000)
        except Error as exc:
            service_missing(f"chromium at {CHROMIUM} (it did not start)", HOW_TO_INSTALL, exc)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What went wrong in a page while a test drove it; a test asserts on it (`assert not log.problems()`)."""

    console_errors: list[str] = field(default_factory=list)
    uncaught: list[str] = field(default_factory=list)  # exceptions thrown by the page's scripts
    csp_violations: list[str] = field(default_factory=list)  # "DIRECTIVE blocked WHAT at SOURCE:LINE"

    def problems(self) -> list[str]:
        return [*self.csp_violations, *self.uncaught, *self.console_errors]


# Runs in every document before its own scripts: reports each CSP violation to the test through the binding.
REPORT_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (e) => window.__yiwangCspViolation(
  `${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile || e.documentURI}:${e.lineNumber}`));
"""


@contextmanager
def opened_page(browser: Browser, log: PageLog) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
    try:
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        context.expose_binding("__yiwangCspViolation", lambda _source, text: log.csp_violations.append(text))
        context.add_init_script(REPORT_VIOLATIONS)
        page = context.new_page()
        page.on("console", lambda message: log.console_errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: log.uncaught.append(str(error)))
        yield page
    finally:
        context.close()


FIND_VIOLATIONS = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                         targets: v.nodes.map((n) => n.target.join(' '))}));
}"""


def axe_check(page: Page) -> None:
    """Fail on every serious or critical accessibility violation axe-core finds in the page as it is now."""
    if not AXE.exists():
        service_missing(f"axe-core at {AXE.relative_to(ROOT)}", "fetch it with: make .venv/.installed",
                        FileNotFoundError(str(AXE)))
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")  # an expression whose value is nothing
    violations: list[dict[str, Any]] = page.evaluate(FIND_VIOLATIONS)
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    if blocking:
        lines = [f"{v['id']} ({v['impact']}): {v['help']} — {', '.join(v['targets'])}" for v in blocking]
        raise AssertionError(f"axe-core: {len(blocking)} serious or critical violation(s) on {page.url}:\n"
                             + "\n".join(lines))


MEASURE_WIDTH = """() => {
  const root = document.documentElement, limit = root.clientWidth;
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                       + [...el.classList].map((c) => '.' + c).join('');
  const wide = [...document.body.querySelectorAll('*')]
    .filter((el) => el.getBoundingClientRect().right > limit + 0.5)
    .filter((el) => ![...el.children].some((child) => child.getBoundingClientRect().right > limit + 0.5));
  return {scroll: root.scrollWidth, client: limit, wide: wide.slice(0, 5).map(name)};
}"""


def no_horizontal_scroll(page: Page) -> None:
    """The page needs no horizontal scrolling at the desk's width nor a tablet's (WIDTHS)."""
    before = page.viewport_size
    try:
        for width, height in WIDTHS:
            page.set_viewport_size({"width": width, "height": height})
            seen = page.evaluate(MEASURE_WIDTH)
            assert seen["scroll"] <= seen["client"], (
                f"{page.url} scrolls sideways at {width}x{height}: {seen['scroll']} px wide in {seen['client']} px;"
                f" sticking out: {', '.join(seen['wide']) or '(nothing measurable)'}")
    finally:
        if before is not None:
            page.set_viewport_size(before)


def screenshot(page: Page, name: str, folder: Path = SCREENSHOTS) -> Path:
    """The full page as FOLDER/NAME.png (NAME: lower-case words and dashes, as docs/screenshots/ names them)."""
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
        raise ValueError(f"screenshot name {name!r}: lower-case letters, digits and dashes only")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


# The sectors whose simulators a served gateway talks to (and whose shipped bundles are active).
LIVE_SECTORS = ("social_security", "housing_fund")


@dataclass
class LiveGateway:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    gateway: Gateway
    keys: Keys  # request headers per role (Keys.issue)
    simulators: dict[str, SimulatorBase]

    def key(self, *roles: Role, name: str = "browser test", **scope: str) -> str:
        """A new API key of an identity holding `roles` (scope: department= or sector=), as text."""
        _, key = self.gateway.keys.issue(name, list(roles), **scope)
        return key


@contextmanager
def served_gateway(database_url: str, var_dir: Path, **overrides: Any) -> Iterator[LiveGateway]:
    """A gateway on `database_url` (already migrated), served over HTTP with its sectors' simulators up;
    `overrides`: settings other than the tests' (`settings_for_tests`)."""
    with ExitStack() as stack:
        simulators = {sector: stack.enter_context(SIMULATORS[sector](decision_delay_ms=50)) for sector in LIVE_SECTORS}
        endpoints = {sector: simulator.url for sector, simulator in simulators.items()}
        gateway = build_gateway(settings_for_tests(var_dir, database_url, sector_endpoints=endpoints, **overrides))
        stack.callback(gateway.close)
        activate_shipped(gateway.bundles, *LIVE_SECTORS)
        url = stack.enter_context(serve_in_thread(create_app(gateway)))
        yield LiveGateway(url, gateway, Keys.issue(gateway), simulators)

