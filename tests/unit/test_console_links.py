"""The console's one mapping from an overview figure's link (page + filter) to a console address
(ops/console/overview.py `href`): the filter as the page's query, an adapter's sector and a ferry link's name in
the path, and no address for a page the identity may not enter (web.PAGES): the figure is shown unlinked."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.domain.roles import Identity, Role
from ops.console.overview import href
from ops.overview import Link


def who(role: Role, sector: str | None = None) -> Identity:
    return Identity(f"id_{role}", "值班员", frozenset({role}), sector=sector)


OPERATOR = who(Role.OPERATOR)


@pytest.mark.parametrize(("page", "filter", "expected"), [
    ("dead-letters", {}, "/console/dead-letters"),
    ("dead-letters", {"sector": "housing_fund", "error_class": "timeout"},
     "/console/dead-letters?sector=housing_fund&error_class=timeout"),
    ("dead-letters", {"status": "any", "since": "2026-12-02T00:00:00", "until": "2026-12-03T00:00:00"},
     "/console/dead-letters?status=any&since=2026-12-02T00%3A00%3A00&until=2026-12-03T00%3A00%3A00"),
    ("cases", {"state": "accepted"}, "/console/cases?state=accepted"),
    ("cases", {"overdue": True}, "/console/cases?overdue=true"),
    ("cases", {"outbox": "due"}, "/console/cases?outbox=due"),
    ("replays", {}, "/console/replays"),
    ("adapters", {}, "/console/adapters"),
    ("adapters", {"sector": "social_security"}, "/console/adapters/social_security"),
    ("adapters", {"sector": "social_security", "version": "v 2&x"}, "/console/adapters/social_security?version=v+2%26x"),
    ("adapters", {"sector": "a/../b"}, "/console/adapters/a%2F..%2Fb"),  # a name never leaves its path segment
    ("ferry", {"channel": "public_security"}, "/console/ferry/public_security"),
])
def test_an_operator_is_led_to_the_list_a_figure_counts(page: Any, filter: dict[str, Any], expected: str) -> None:
    assert href(OPERATOR, Link(page, filter)) == expected


def test_a_page_the_identity_may_not_enter_leaves_the_figure_unlinked() -> None:
    certificates, audit, letters = Link("certificates", {"name": "gw-server"}), Link("audit"), Link("dead-letters")
    assert href(OPERATOR, certificates) is None and href(OPERATOR, audit) is None
    assert href(who(Role.SECURITY_ADMIN), certificates) == "/console/certificates?name=gw-server"
    assert href(who(Role.AUDITOR), audit) == "/console/audit"
    assert href(who(Role.AUDITOR), letters) is None and href(who(Role.AUDITOR), Link("cases")) is None
    assert href(who(Role.SECTOR_ADMIN, "housing_fund"), letters) == "/console/dead-letters"
    assert href(who(Role.SYSTEM_ADMIN), certificates) is None and href(who(Role.SYSTEM_ADMIN), Link("adapters"))
    assert href(who(Role.SYSTEM_ADMIN), Link("ferry", {"channel": "x"})) is None
