"""A case's journey (ops/journey.py), read from a real story on both databases: a case submitted through the
gateway, its submission killed by a sector outage (a dead letter), replayed, delivered, the hall told.

The journey tells it oldest first: the submission's event, the outbox message, the failed exchange and its
attempt, the dead letter, its replay, the delivery that went through, the sector's answer, the notification.
Personal data is masked unless asked for, and an unmasked read is on the audit record before it is returned;
a sector's scope sees a case only through its own messages; a correlation id finds its case.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

import pytest

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway
from ops.journey import KINDS, CaseJourney, CaseNotFound, Journey
from tests.support.journeys import ID_NUMBER, Story, storied_gateway, tell_story
from tests.support.receiver import Receiver, receiver  # noqa: F401 - `receiver` is a fixture


@pytest.fixture
def told(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator,
         receiver: Receiver) -> tuple[Gateway, Story]:  # noqa: F811 - the fixture
    gateway = storied_gateway(make_gateway, simulator)
    return gateway, tell_story(gateway, simulator, receiver)


def journeys(gateway: Gateway, max_entries: int = 2000) -> CaseJourney:
    return CaseJourney(gateway.dead_letters.units, gateway.ledger, max_entries=max_entries)


def titles(journey: Journey, kind: str) -> list[str]:
    return [e.title for e in journey.entries if e.kind == kind]


def first(journey: Journey, kind: str, title_part: str = "") -> int:
    """The position of the first entry of `kind` whose title holds `title_part`."""
    return next(i for i, e in enumerate(journey.entries) if e.kind == kind and title_part in e.title)


def test_the_journey_tells_the_whole_story_in_order(told: tuple[Gateway, Story]) -> None:
    gateway, story = told
    journey = journeys(gateway).journey(story.case_no)

    assert journey.case.case_no == story.case_no and journey.masked and not journey.truncated
    assert journey.case.matter_code and journey.case.state == str(gateway.service.get(story.case_no).state)
    assert [task["sector"] for task in journey.case.tasks] == ["social_security"]
    assert {e.kind for e in journey.entries} == set(KINDS) - {"callback"}  # social security is polled
    instants = [e.at for e in journey.entries]
    assert instants == sorted(instants) and all(at.utcoffset() is not None for at in instants)

    submitted, message = first(journey, "event", "申请已提交"), first(journey, "message")
    sent = first(journey, "delivery", "已发送")
    failed_answer, attempt = first(journey, "delivery", "sector_fault"), first(journey, "attempt")
    dead, replayed = first(journey, "dead_letter", "成为死信"), first(journey, "dead_letter", "已重放")
    answered = first(journey, "delivery", "（ok）")
    assert submitted < message < sent < failed_answer < dead < replayed < answered
    assert attempt < dead  # the call it died of, before it was kept
    assert first(journey, "event", "部门开始办理") > replayed

    letter = journey.entries[dead]
    assert letter.links == {"dead_letter_id": story.dead_letter_id, "outbox_id": journey.entries[message].links[
        "outbox_id"]}
    assert (letter.sector, letter.detail["error_class"], letter.detail["status"]) == \
        ("social_security", "sector_fault", "replayed")
    assert journey.entries[replayed].detail["reason"] == "social security is back (INC-9)"
    shown = journey.entries[message].detail
    assert (shown["operation"], shown["idempotency_key"], shown["status"], shown["round"], shown["replays"]) == \
        ("submit_case", f"{story.case_no}:1:submit_case", "done", 0, 1)
    assert shown["correlation_id"] == story.correlation_id
    assert isinstance(journey.entries[sent].links["message_record_id"], int)
    hall = [e for e in journey.entries if e.kind == "notification" and "推送大厅" in e.title]
    assert [(e.detail["trigger"], e.detail["status"]) for e in hall] == [("submit", "delivered")]

    # Masked throughout; unmasked on request, with the read on the audit record.
    assert ID_NUMBER not in json.dumps([asdict(e) for e in journey.entries], default=str)
    assert not gateway.ledger.records(Filters(AUDIT, action="read unmasked journey"))
    plain = journeys(gateway).journey(story.case_no, masked=False, reader="identity:op1", reader_name="值班员")
    assert not plain.masked
    assert ID_NUMBER in json.dumps([asdict(e) for e in plain.entries], default=str)
    [record] = gateway.ledger.records(Filters(AUDIT, action="read unmasked journey"))
    assert (record.actor, record.subject, record.case_no, record.outcome) == \
        ("identity:op1", f"case:{story.case_no}", story.case_no, "shown")
    with pytest.raises(ValueError):
        journeys(gateway).journey(story.case_no, masked=False)  # nobody to audit: nothing shown


def test_a_scope_sees_the_case_only_through_its_own_sectors_messages(told: tuple[Gateway, Story]) -> None:
    gateway, story = told
    own = journeys(gateway).journey(story.case_no, scope=frozenset({"social_security"}))
    assert own.entries == journeys(gateway).journey(story.case_no).entries  # every message is its own
    with pytest.raises(CaseNotFound):
        journeys(gateway).journey(story.case_no, scope=frozenset({"housing_fund"}))
    with pytest.raises(CaseNotFound):
        journeys(gateway).journey("NO-SUCH-CASE")


def test_a_correlation_id_finds_its_case_and_a_long_story_is_cut(told: tuple[Gateway, Story]) -> None:
    gateway, story = told
    assert journeys(gateway).case_of_correlation(story.correlation_id) == story.case_no
    with pytest.raises(CaseNotFound):
        journeys(gateway).case_of_correlation("nobody-sent-this")
    whole = journeys(gateway).journey(story.case_no).entries
    cut = journeys(gateway, max_entries=3).journey(story.case_no)
    assert cut.truncated and cut.entries == whole[:3]

