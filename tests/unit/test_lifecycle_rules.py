"""The case rules in the domain, without a database: intake, supplement, parallel tasks, the clock, issuing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.domain import lifecycle
from gateway.domain.case import (
    Actor,
    ActorKind,
    CaseRuleViolation,
    CaseState,
    Certificate,
    Completion,
    Delivery,
    Evaluation,
    SubmittedMaterial,
    TaskState,
    Trigger,
    state_from_events,
)
from gateway.domain.deadline import DeadlineKind
from gateway.domain.matter import TimeUnit
from tests.support.lifecycle import CAL, FUND, MONDAY_10AM, PERSON, SOCIAL, WINDOW, matter, new_case, triggers


def test_a_complete_application_is_accepted_with_one_task_per_department() -> None:
    m = matter(FUND)
    case = new_case(m, "居民身份证", "本人银行账户")
    to_deliver = lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    assert case.state is CaseState.ACCEPTED
    assert [(t.task_id, t.department, t.lead) for t in case.tasks] == [
        ("1", SOCIAL.name, True), ("2", FUND.name, False)]
    assert [t.task_id for t in to_deliver] == ["1"]  # only the department with a system gets a message
    assert case.deadline and case.deadline.kind is DeadlineKind.COMPLETION
    assert case.deadline.due == date(2026, 11, 30)  # Monday + 5 working days


def test_calendar_day_limits_count_weekends() -> None:
    m = matter(days=5, unit=TimeUnit.CALENDAR_DAYS)
    case = new_case(m, "居民身份证", "本人银行账户")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    assert case.deadline and case.deadline.due == date(2026, 11, 28)


def test_a_matter_reviewed_by_a_clerk_waits_in_submitted() -> None:
    m = matter(auto=False)
    case = new_case(m, "居民身份证", "本人银行账户")
    assert lifecycle.check_completeness(case, m, MONDAY_10AM, CAL) == []
    assert case.state is CaseState.SUBMITTED


def test_supplement_rounds_list_everything_at_once_and_recheck_on_resubmission() -> None:
    m = matter()
    case = new_case(m)
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    assert case.state is CaseState.SUPPLEMENT_REQUIRED
    assert case.missing_materials == ("居民身份证", "本人银行账户")
    assert case.supplement_rounds == 1
    assert case.deadline and case.deadline.paused_on == date(2026, 11, 23)  # the acceptance clock stops

    later = MONDAY_10AM + timedelta(days=2)
    lifecycle.supplement(case, m, [SubmittedMaterial("居民身份证")], PERSON, later, CAL)
    assert case.state is CaseState.SUPPLEMENT_REQUIRED and case.supplement_rounds == 2
    assert case.missing_materials == ("本人银行账户",)

    lifecycle.supplement(case, m, [SubmittedMaterial("本人银行账户")], PERSON, later, CAL)
    assert case.state is CaseState.ACCEPTED
    assert triggers(case) == ["submit", "request_supplement", "supplement", "request_supplement", "supplement",
                              "accept"]


def test_the_acceptance_clock_deems_a_case_accepted_after_five_working_days() -> None:
    m = matter(auto=False)
    case = new_case(m, "居民身份证", "本人银行账户")
    assert case.deadline and case.deadline.due == date(2026, 11, 30)
    assert lifecycle.tick(case, m, datetime(2026, 11, 30, 2, tzinfo=UTC), CAL, 0, 30) == []
    assert case.state is CaseState.SUBMITTED
    to_deliver = lifecycle.tick(case, m, datetime(2026, 12, 1, 2, tzinfo=UTC), CAL, 0, 30)
    assert case.state is CaseState.ACCEPTED and triggers(case)[-1] == "deem_accepted"
    assert [t.task_id for t in to_deliver] == ["1"]


def test_warnings_before_and_overdue_after_the_deadline_each_once() -> None:
    m = matter()
    case = new_case(m, "居民身份证", "本人银行账户")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)  # due Monday 30 November
    lifecycle.tick(case, m, datetime(2026, 11, 25, 2, tzinfo=UTC), CAL, 2, 30)  # Wed: 3 working days left
    assert "deadline_warning" not in triggers(case)
    for day in (26, 27):  # Thu, Fri: 2 and 1 left
        lifecycle.tick(case, m, datetime(2026, 11, day, 2, tzinfo=UTC), CAL, 2, 30)
    assert triggers(case).count("deadline_warning") == 1
    lifecycle.tick(case, m, datetime(2026, 11, 30, 2, tzinfo=UTC), CAL, 2, 30)
    assert "overdue" not in triggers(case)  # the due day itself is still in time
    for day in (1, 2):
        lifecycle.tick(case, m, datetime(2026, 12, day, 2, tzinfo=UTC), CAL, 2, 30)
    assert triggers(case).count("overdue") == 1
    assert case.state is CaseState.ACCEPTED


def test_a_special_procedure_stops_the_clock_and_extends_the_promise() -> None:
    m = matter()
    case = new_case(m, "居民身份证", "本人银行账户")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    dept = Actor(ActorKind.DEPARTMENT, "clerk")
    lifecycle.start_task(case, "1", dept, MONDAY_10AM)
    lifecycle.suspend(case, dept, MONDAY_10AM + timedelta(days=1), "hearing", "举行听证")  # Tuesday
    assert case.state is CaseState.SUSPENDED
    lifecycle.tick(case, m, datetime(2026, 12, 3, 2, tzinfo=UTC), CAL, 2, 30)  # past the old due date
    assert "overdue" not in triggers(case)  # a stopped clock is never overdue
    lifecycle.resume(case, dept, datetime(2026, 11, 27, 2, tzinfo=UTC), CAL, "听证结束")  # Friday: 3 days lost
    assert case.deadline and case.deadline.due == date(2026, 12, 3)
    assert case.events[-1].data == {"promised_by": "2026-12-03"}


def test_parallel_tasks_follow_the_lead_once_all_have_concluded_and_record_every_denial() -> None:
    m = matter(FUND)
    case = new_case(m, "居民身份证", "本人银行账户")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    lifecycle.start_task(case, "1", Actor(ActorKind.DEPARTMENT, "sector:social_security"), MONDAY_10AM, "SB1")
    assert case.state is CaseState.IN_PROCESS
    lifecycle.conclude_task(case, "2", TaskState.DENIED, "公积金账户冻结", Actor(ActorKind.DEPARTMENT, "c"),
                            MONDAY_10AM)
    assert case.state is CaseState.IN_PROCESS  # the lead has not concluded yet
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "准予退休", Actor(ActorKind.DEPARTMENT, "s"), MONDAY_10AM)
    assert case.state is CaseState.APPROVED  # follows the lead department
    decision = case.events[-1]
    assert decision.trigger is Trigger.APPROVE
    assert decision.data["not_approved_by"] == {FUND.name: "公积金账户冻结"}
    assert state_from_events(case.events) is case.state


def test_a_lead_denial_closes_the_case_as_concluded() -> None:
    m = matter()
    case = new_case(m, "居民身份证", "本人银行账户")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    lifecycle.conclude_task(case, "1", TaskState.DENIED, "不符合条件", Actor(ActorKind.DEPARTMENT, "s"), MONDAY_10AM)
    assert triggers(case)[-3:] == ["task_concluded", "deny", "close"]
    assert case.completion is Completion.CONCLUDED


@pytest.mark.parametrize("decision", [TaskState.DENIED, TaskState.RETURNED])
def test_a_denial_or_return_needs_a_written_reason(decision: TaskState) -> None:
    m = matter()
    case = new_case(m, "居民身份证", "本人银行账户")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    with pytest.raises(CaseRuleViolation, match="书面说明理由"):
        lifecycle.conclude_task(case, "1", decision, " ", Actor(ActorKind.DEPARTMENT, "s"), MONDAY_10AM)


def test_issuing_delivery_and_one_evaluation() -> None:
    m = matter()
    case = new_case(m, "居民身份证", "本人银行账户")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "准予", Actor(ActorKind.DEPARTMENT, "s"), MONDAY_10AM)
    issuer = Actor(ActorKind.ISSUING_WINDOW, "w9")
    lifecycle.issue_certificate(case, Certificate("核定通知", "BT2026-0001", "包头市社会保险事业服务中心"), issuer,
                                MONDAY_10AM)
    with pytest.raises(CaseRuleViolation, match="快递单号"):
        lifecycle.deliver(case, Delivery("express"), issuer, MONDAY_10AM)
    lifecycle.deliver(case, Delivery("express", "SF1234567890"), issuer, MONDAY_10AM)
    assert case.state is CaseState.CLOSED and case.completion is Completion.CERTIFICATE_ISSUED
    lifecycle.evaluate(case, Evaluation("very_satisfied", "mobile", "很方便"), PERSON, MONDAY_10AM)
    with pytest.raises(CaseRuleViolation, match="已评价"):
        lifecycle.evaluate(case, Evaluation("dissatisfied", "mobile"), PERSON, MONDAY_10AM)
    assert case.evaluation and case.evaluation.level == "very_satisfied"


def test_withdrawal_and_not_accepting_end_with_their_completion_codes() -> None:
    m = matter(auto=False)
    withdrawn = new_case(m, "居民身份证")
    lifecycle.withdraw(withdrawn, PERSON, MONDAY_10AM, "")
    assert withdrawn.completion is Completion.VOIDED
    refused = new_case(m, "居民身份证", "本人银行账户")
    with pytest.raises(CaseRuleViolation):
        lifecycle.not_accept(refused, WINDOW, MONDAY_10AM, "")
    lifecycle.not_accept(refused, WINDOW, MONDAY_10AM, "不属于本机关职权范围")
    assert triggers(refused)[-2:] == ["not_accept", "close"] and refused.state is CaseState.CLOSED


def test_an_unanswered_supplement_notice_expires() -> None:
    m = matter()
    case = new_case(m, "居民身份证")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    lifecycle.tick(case, m, MONDAY_10AM + timedelta(days=30), CAL, 2, 30)
    assert case.state is CaseState.SUPPLEMENT_REQUIRED
    lifecycle.tick(case, m, MONDAY_10AM + timedelta(days=31), CAL, 2, 30)
    assert case.state is CaseState.CLOSED and case.completion is Completion.SUPPLEMENT_TIMEOUT


@pytest.mark.parametrize(
    ("id_number", "claims", "grounds"),
    [
        ("15020719620101101X", [], ("aged_60_plus",)),  # born 1962-01-01: 64
        ("150203198503120039", ["pregnant"], ("pregnant",)),
        ("150203198503120039", [], ()),
    ],
)
def test_green_channel_grounds(id_number: str, claims: list[str], grounds: tuple[str, ...]) -> None:
    assert lifecycle.green_channel(claims, "111", id_number, date(2026, 11, 23)) == grounds


def test_unknown_green_channel_grounds_are_refused() -> None:
    with pytest.raises(CaseRuleViolation, match="绿色通道理由"):
        lifecycle.green_channel(["vip"], "111", "150203198503120039", date(2026, 11, 23))
