"""What a sector's decision says besides itself, in the domain without a database (gateway/domain/results.py):
its time kept in UTC beside ours and never guessed, a certificate issued that must be fetched, the certificate
prefilled for unified issuing (待出证) and issued from there — by the window, or by the gateway for an electronic
certificate where the matter says so."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.domain import lifecycle
from gateway.domain.case import (
    Actor,
    ActorKind,
    CaseRuleViolation,
    CaseState,
    Certificate,
    TaskState,
    Trigger,
    state_from_events,
)
from gateway.domain.results import CertificateDraft, ResultProblem, SectorResult, fetched_certificate
from tests.support.lifecycle import CAL, MONDAY_10AM, matter, new_case

SECTOR = Actor(ActorKind.DEPARTMENT, "sector:social_security")
ISSUING = Actor(ActorKind.ISSUING_WINDOW, "identity:issuer-1")
LATER = MONDAY_10AM + timedelta(hours=3)
DECIDED = "2026-11-23T12:30:00+08:00"  # the sector's time: 04:30 UTC, before we learnt it at LATER (05:00 UTC)
PAPER = Certificate("就业创业证", "ZS-0001", "包头市就业服务局", date(2031, 11, 22))


def started(**flags: bool):  # type: ignore[no-untyped-def]
    m = replace(matter(), **flags)
    case = new_case(m, "居民身份证", "本人银行账户")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    lifecycle.start_task(case, "1", SECTOR, MONDAY_10AM, "SB1")
    return m, case


def draft(certificate: Certificate = PAPER) -> CertificateDraft:
    return CertificateDraft(certificate, "social_security", "1", LATER, "王建国", "file-1")


def test_a_decision_keeps_the_sectors_time_in_utc_beside_ours() -> None:
    _, case = started()
    facts = SectorResult.read({"status": "approved", "decided_at": DECIDED, "certificate_number": "ZS-0001",
                               "certificate_valid_until": "2031-11-22", "document_ref": "JD-7"})
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "", SECTOR, LATER, facts)
    event = next(e for e in case.events if e.trigger is Trigger.TASK_CONCLUDED)
    assert event.at == LATER and event.data["sector_at"] == "2026-11-23T04:30:00+00:00"
    assert event.data["certificate_number"] == "ZS-0001" and event.data["document_ref"] == "JD-7"
    task = case.tasks[0]
    assert task.result == facts and facts.certificate_issued  # a number named is a certificate issued
    assert facts.certificate_valid_until == date(2031, 11, 22)
    assert lifecycle.certificate_to_fetch(task)
    assert SectorResult.from_data(facts.as_data()) == facts  # as stored


def test_a_decision_that_says_nothing_more_keeps_nothing_and_fetches_nothing() -> None:
    _, case = started()
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "", SECTOR, LATER, SectorResult.read({"status": "x"}))
    assert case.tasks[0].result is None and not lifecycle.certificate_to_fetch(case.tasks[0])
    assert "sector_at" not in case.events[-2].data


@pytest.mark.parametrize(("answer", "problem"), [
    ({"decided_at": "2026-11-23T12:30:00"}, "does not say its time zone"),
    ({"decided_at": "yesterday"}, "not an ISO-8601 time"),
    ({"certificate_valid_until": "22/11/2031"}, "not an ISO date"),
    ({"certificate_issued": "yes"}, "expected true or false"),
    ({"certificate_number": {"n": 1}}, "expected text"),
])
def test_facts_that_cannot_be_taken_as_they_are_are_refused_never_guessed(answer: dict[str, object],
                                                                          problem: str) -> None:
    with pytest.raises(ResultProblem, match=problem):
        SectorResult.read(answer)


def test_a_certificate_denied_or_not_issued_is_not_fetched() -> None:
    _, case = started()
    lifecycle.conclude_task(case, "1", TaskState.DENIED, "不符合条件", SECTOR, LATER,
                            SectorResult.read({"certificate_issued": True}))
    assert not lifecycle.certificate_to_fetch(case.tasks[0])


def test_the_fetched_certificate_is_prefilled_and_issued_by_the_window_without_typing_it() -> None:
    _, case = started()
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "", SECTOR, LATER,
                            SectorResult.read({"certificate_number": "ZS-0001"}))
    lifecycle.prefill_certificate(case, draft(), SECTOR, LATER)
    assert case.certificate_draft == draft() and case.state is CaseState.APPROVED
    assert case.events[-1].trigger is Trigger.CERTIFICATE_FETCHED and case.events[-1].data["number"] == "ZS-0001"
    lifecycle.prefill_certificate(case, draft(), SECTOR, LATER)  # fetched again (a replay): nothing new
    assert case.events[-1].trigger is Trigger.CERTIFICATE_FETCHED and len(
        [e for e in case.events if e.trigger is Trigger.CERTIFICATE_FETCHED]) == 1
    lifecycle.issue_certificate(case, None, ISSUING, LATER)
    assert case.certificate == PAPER and case.state is CaseState.CERTIFICATE_ISSUED
    assert case.events[-1].data["source"] == {"sector": "social_security", "task": "1"}
    assert state_from_events(case.events) is case.state


def test_a_number_the_window_types_must_be_the_sectors() -> None:
    _, case = started()
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "", SECTOR, LATER, None)
    lifecycle.prefill_certificate(case, draft(), SECTOR, LATER)
    with pytest.raises(CaseRuleViolation, match="与social_security签发的证照编号 ZS-0001 不一致"):
        lifecycle.issue_certificate(case, replace(PAPER, number="ZS-9999"), ISSUING, LATER)
    assert case.state is CaseState.APPROVED and case.certificate is None
    lifecycle.issue_certificate(case, replace(PAPER, issuer="包头市人社局"), ISSUING, LATER)  # same number: taken
    assert case.certificate is not None and case.certificate.issuer == "包头市人社局"


def test_without_a_prefilled_certificate_the_window_must_fill_one_in() -> None:
    _, case = started()
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "", SECTOR, LATER, None)
    with pytest.raises(CaseRuleViolation, match="没有待出证的证照"):
        lifecycle.issue_certificate(case, None, ISSUING, LATER)
    lifecycle.issue_certificate(case, PAPER, ISSUING, LATER)  # the explicit body, as ever
    assert case.certificate == PAPER and "source" not in case.events[-1].data


def test_a_fetched_number_other_than_the_decisions_is_refused() -> None:
    _, case = started()
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "", SECTOR, LATER,
                            SectorResult.read({"certificate_number": "ZS-0002"}))
    with pytest.raises(ResultProblem, match="the decision named 'ZS-0002'"):
        lifecycle.prefill_certificate(case, draft(), SECTOR, LATER)
    assert case.certificate_draft is None and case.events[-1].trigger is not Trigger.CERTIFICATE_FETCHED


def test_an_electronic_certificate_is_issued_by_the_gateway_where_the_matter_says_so() -> None:
    m, case = started(auto_issue_electronic=True)
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "", SECTOR, LATER, None)
    assert not lifecycle.issue_automatically(case, m, LATER)  # nothing fetched yet
    lifecycle.prefill_certificate(case, draft(), SECTOR, LATER)
    assert lifecycle.issue_automatically(case, m, LATER)
    assert case.state is CaseState.CERTIFICATE_ISSUED and str(case.events[-1].actor) == "system:gateway"
    plain, other = started()
    lifecycle.conclude_task(other, "1", TaskState.APPROVED, "", SECTOR, LATER, None)
    lifecycle.prefill_certificate(other, draft(), SECTOR, LATER)
    assert not lifecycle.issue_automatically(other, plain, LATER) and other.state is CaseState.APPROVED


def test_a_certificate_answer_needs_a_name_and_a_number_and_the_issuer_defaults_to_the_department() -> None:
    certificate, holder, file_ref = fetched_certificate(
        {"name": "就业创业证", "number": "ZS-1", "valid_until": "2031-01-01", "holder": {"name": "王建国"}}, "人社局")
    assert certificate == Certificate("就业创业证", "ZS-1", "人社局", date(2031, 1, 1)) and holder == "王建国"
    assert file_ref is None
    with pytest.raises(ResultProblem, match="names no number"):
        fetched_certificate({"name": "就业创业证"}, "人社局")
    assert CertificateDraft.from_data(draft().as_data()) == draft()
    assert draft().fetched_at.tzinfo is UTC or draft().fetched_at.utcoffset() == timedelta(0)
    assert datetime.fromisoformat(draft().as_data()["fetched_at"]) == LATER
