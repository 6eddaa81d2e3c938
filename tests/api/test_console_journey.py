"""A case's journey in the console (ops/console/journey.py on ops/journey.py), through the app as served, on both
databases: found by case number or correlation id (an unknown one: the search page again, 404), the cases of a
state or flagged overdue listed newest first and paged (where the overview's figures lead), one case's journey
on one page — masked, plain only with the audit record written first, a sector administrator's scope as the API's
(another sector's case is 404), the auditor refused as the API refuses — and a sector's hostile text escaped."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import FixedClock
from gateway.domain.roles import Identity, NotAllowed, Role
from gateway.persistence.repository import Failure
from ops.console import journey as journey_pages
from ops.journey import CaseJourney
from tests.support.cases import submit
from tests.support.console import assert_accessible_and_csp_clean, key_of, sign_in
from tests.support.gateways import PINNED
from tests.support.journeys import ID_NUMBER, Story, storied_gateway, tell_story
from tests.support.receiver import Receiver, receiver  # noqa: F401 - `receiver` is a fixture

SS, HF = "social_security", "housing_fund"
UNMASKED = "read unmasked journey"
HOSTILE = '<script>alert("journey")</script><img src=x onerror=alert(1)>'


@dataclass
class Desk:
    gateway: Gateway
    story: Story
    app: object

    def browser(self, role: Role, **scope: str) -> TestClient:
        client = TestClient(self.app)  # type: ignore[arg-type]
        sign_in(client, key_of(self.gateway, role, **scope))
        return client

    def unmasked_reads(self) -> list[tuple[str, str | None]]:
        return [(r.subject or "", r.case_no) for r in self.gateway.ledger.records(Filters(AUDIT, action=UNMASKED))]


@pytest.fixture
def desk(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator,
         receiver: Receiver) -> Desk:  # noqa: F811 - the fixture
    gateway = storied_gateway(make_gateway, simulator)
    return Desk(gateway, tell_story(gateway, simulator, receiver), create_app(gateway))


def test_the_search_finds_a_case_by_its_number_or_a_correlation_id(desk: Desk) -> None:
    operator = desk.browser(Role.OPERATOR)
    page = operator.get("/console/cases")
    assert page.status_code == 200 and 'for="f-wanted"' in page.text
    assert_accessible_and_csp_clean(page.text)
    for wanted in (desk.story.case_no, desk.story.correlation_id, f"  {desk.story.case_no} "):
        found = operator.get("/console/cases", params={"wanted": wanted}, follow_redirects=False)
        assert (found.status_code, found.headers["location"]) == (303, f"/console/cases/{desk.story.case_no}")
    unknown = operator.get("/console/cases", params={"wanted": "<b>NO-SUCH</b>"})
    assert unknown.status_code == 404 and "没有办件编号或关联编号为“&lt;b&gt;NO-SUCH&lt;/b&gt;”的办件" in unknown.text
    assert_accessible_and_csp_clean(unknown.text)
    assert operator.get("/console/cases", params={"wanted": "x" * 65}).status_code == 422
    # A sector administrator finds only a case with a message to their sector, by either.
    own, other = desk.browser(Role.SECTOR_ADMIN, sector=SS), desk.browser(Role.SECTOR_ADMIN, sector=HF)
    for wanted in (desk.story.case_no, desk.story.correlation_id):
        assert own.get("/console/cases", params={"wanted": wanted}, follow_redirects=False).status_code == 303
        assert other.get("/console/cases", params={"wanted": wanted}, follow_redirects=False).status_code == 404


def test_the_journey_page_is_masked_and_plain_only_after_its_audit_record(desk: Desk) -> None:
    operator = desk.browser(Role.OPERATOR)
    page = operator.get(f"/console/cases/{desk.story.case_no}")
    assert page.status_code == 200, page.text
    assert_accessible_and_csp_clean(page.text)
    assert f"办件 {desk.story.case_no} 的轨迹" in page.text and "成为死信" in page.text and "死信已重放" in page.text
    assert f'href="/console/dead-letters/{desk.story.dead_letter_id}"' in page.text
    times = re.findall(r'<td data-label="时间">([^<]+)</td>', page.text)
    assert times == sorted(times) and len(times) > 5  # oldest first, in Beijing time
    assert ID_NUMBER not in page.text and "1502**********0039" in page.text  # masked, not dropped
    assert f'href="/console/cases/{desk.story.case_no}?unmasked=1">显示明文' in page.text
    assert desk.unmasked_reads() == []

    plain = operator.get(f"/console/cases/{desk.story.case_no}", params={"unmasked": "1"})
    assert plain.status_code == 200 and ID_NUMBER in plain.text and "本次查看已记入审计日志" in plain.text
    assert desk.unmasked_reads() == [(f"case:{desk.story.case_no}", desk.story.case_no)]
    assert_accessible_and_csp_clean(plain.text)


def test_a_sector_administrator_sees_their_sectors_cases_only_and_the_auditor_none(desk: Desk) -> None:
    own = desk.browser(Role.SECTOR_ADMIN, sector=SS)
    mine = own.get(f"/console/cases/{desk.story.case_no}", params={"unmasked": "1"})
    assert mine.status_code == 200 and ID_NUMBER in mine.text and len(desk.unmasked_reads()) == 1
    other = desk.browser(Role.SECTOR_ADMIN, sector=HF)
    for params in ({}, {"unmasked": "1"}):
        refused = other.get(f"/console/cases/{desk.story.case_no}", params=params)
        assert refused.status_code == 404 and "case-not-found" in refused.text and ID_NUMBER not in refused.text
    assert len(desk.unmasked_reads()) == 1  # absent to them: nothing read
    auditor = desk.browser(Role.AUDITOR)
    for path in ("/console/cases", f"/console/cases/{desk.story.case_no}"):
        answer = auditor.get(path)
        assert answer.status_code == 403 and "不对该角色开放" in answer.text and desk.story.case_no not in answer.text
    assert the_service_refuses_plain_to_who_may_not_unmask(desk)


def the_service_refuses_plain_to_who_may_not_unmask(desk: Desk) -> bool:
    """The service refuses a plain journey to whoever may not unmask (a sector administrator of no sector), as
    the API and the console both call it: nothing read, nothing recorded."""
    journeys: CaseJourney = desk.app.state.case_journeys  # type: ignore[attr-defined]
    nobody = Identity("no-sector", "无部门", frozenset({Role.SECTOR_ADMIN}))
    with pytest.raises(NotAllowed):
        journeys.read(nobody, desk.story.case_no, unmasked=True)
    return len(desk.unmasked_reads()) == 1


def test_a_sectors_hostile_text_is_shown_escaped_and_case_numbers_lead_to_the_journey(desk: Desk) -> None:
    with desk.gateway.service.uow() as uow:
        uow.dead_letters.add(None, Failure("rejected", HOSTILE), desk.gateway.service.clock.now(),
                             about={"case_no": desk.story.case_no, "sector": SS, "operation": "submit_case",
                                    "idempotency_key": f"{desk.story.case_no}:hostile"})
        uow.commit()
    operator = desk.browser(Role.OPERATOR)
    page = operator.get(f"/console/cases/{desk.story.case_no}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#34;journey&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text
    # The dead letters' list and one letter's story lead to the case's journey.
    journey_link = f'href="/console/cases/{desk.story.case_no}"'
    assert journey_link in operator.get("/console/dead-letters", params={"status": "any"}).text
    assert journey_link in operator.get(f"/console/dead-letters/{desk.story.dead_letter_id}").text


# --- the cases of a state, or overdue ------------------------------------------------------------------------


@pytest.fixture
def overdue(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator
            ) -> tuple[Gateway, list[str]]:
    """Three cases to social security on a pinned clock; eight days on, e-supervision flags them overdue."""
    clock = FixedClock(PINNED)
    gateway = make_gateway(clock=clock, sector_endpoints={SS: simulator.url})
    made = []
    for _ in range(3):
        made.append(submit(gateway))
        clock.advance(timedelta(minutes=1))
    clock.advance(timedelta(days=8))
    assert gateway.service.tick() == 3
    return gateway, made


def listed(client: TestClient, **params: str) -> tuple[list[str], str | None]:
    page = client.get("/console/cases", params=params)
    assert page.status_code == 200, page.text
    assert_accessible_and_csp_clean(page.text)
    following = re.search(r'href="/console/cases\?([^"]+)" rel="next"', page.text)
    return (re.findall(r'<th scope="row" data-label="办件编号"><a href="[^"]+">([^<]+)</a>', page.text),
            following[1].replace("&amp;", "&") if following else None)


def test_the_overviews_figures_list_their_cases_newest_first_paged_in_scope(
        overdue: tuple[Gateway, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    gateway, made = overdue
    app = create_app(gateway)
    operator = TestClient(app)
    sign_in(operator, key_of(gateway, Role.OPERATOR))
    newest_first = made[::-1]
    assert listed(operator, overdue="true")[0] == newest_first
    assert listed(operator, state="accepted")[0] == newest_first
    page = operator.get("/console/cases", params={"overdue": "true"}).text
    assert "2026-11-24 10:02:00" in page and "已超期" in page  # submitted, in Beijing time; flagged
    assert listed(operator, state="closed")[0] == []
    # The outbox figures' cases: nothing delivers here, so each case's message is pending, due, never leased.
    assert listed(operator, outbox="pending")[0] == listed(operator, outbox="due")[0] == newest_first
    assert listed(operator, outbox="leased")[0] == listed(operator, outbox="queued")[0] == []
    assert "有已到期待发的消息" in operator.get("/console/cases", params={"outbox": "due"}).text
    assert operator.get("/console/cases", params={"outbox": "sent"}).status_code == 422
    assert operator.get("/console/cases", params={"state": "no-such-state"}).status_code == 422
    own, other = TestClient(app), TestClient(app)  # a sector administrator: the cases with a message to theirs
    sign_in(own, key_of(gateway, Role.SECTOR_ADMIN, sector=SS))
    sign_in(other, key_of(gateway, Role.SECTOR_ADMIN, sector=HF))
    assert listed(own, overdue="true")[0] == newest_first
    assert listed(other, overdue="true")[0] == []

    monkeypatch.setattr(journey_pages, "PAGE_SIZE", 2)
    first, following = listed(operator, overdue="true")
    assert first == newest_first[:2] and following is not None
    rest = operator.get(f"/console/cases?{following}")
    assert re.findall(r'data-label="办件编号"><a href="[^"]+">([^<]+)</a>', rest.text) == newest_first[2:]
    assert 'rel="next"' not in rest.text and "第一页" in rest.text
    assert operator.get("/console/cases", params={"overdue": "true", "cursor": "garbled"}).status_code == 422


def test_a_truncated_journey_says_so(desk: Desk) -> None:
    desk.app.state.case_journeys = CaseJourney(desk.gateway.dead_letters.units, desk.gateway.ledger,  # type: ignore[attr-defined]
                                               max_entries=3)
    page = desk.browser(Role.OPERATOR).get(f"/console/cases/{desk.story.case_no}")
    assert page.status_code == 200
    assert len(re.findall(r'<td data-label="时间">', page.text)) == 3 and "经过太长，只显示最早的 3 条" in page.text
