"""The console's causes, export link and cancel form in chromium (tests/support/console_browser.py's checks:
axe-core, no sideways scroll at 1280x800 and 768x1024, no console error or CSP violation, a screenshot): the
dead-letter list with its new fields, the causes of seeded letters, and a run caught mid-way with its 「取消」
form. Kept apart from test_console_browser.py so the pages' helpers add their stops without meeting; SQLite only,
as there (tests/api/test_console_causes.py proves the pages on both databases)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from bench.replay import seed_dead_letters
from gateway.domain.roles import Role
from ops.dead_letters import DeadLetterFilter
from tests.support.browser import LiveGateway, PageLog
from tests.support.console_browser import CONSOLE, Stop, sign_in, tour

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.timeout(30), pytest.mark.parametrize("live_db", ["sqlite"], indirect=True)]


def test_the_causes_the_list_and_a_running_run_pass_the_checks(live_gateway: LiveGateway, page: Page,
                                                                 page_log: PageLog) -> None:
    gateway = live_gateway.gateway
    seed_dead_letters(gateway.engine, gateway.service.personal, 6, datetime.now(UTC))
    gateway.dead_letters.fill_causes()
    run = gateway.dead_letters.start_replay(DeadLetterFilter(ids=frozenset({1})), by="identity:x", reason="mid-run")
    sign_in(page, live_gateway.url, live_gateway.key(Role.OPERATOR, name="值班员 王芳"))
    tour(page, page_log, live_gateway.url, [Stop(f"{CONSOLE}/dead-letters?text=timeout", "dead-letters-text"),
                                            Stop(f"{CONSOLE}/dead-letters/causes", "dead-letter-causes"),
                                            Stop(f"{CONSOLE}/replays/{run.id}", "replay-run-running")])
    assert page.get_by_label("取消原因（必填）").count() in (0, 1)  # gone once the scheduled job ended the run
