"""The ways forward after acceptance, in the domain without a database (case.WAYS_FORWARD): sent back to the window
with the clock stopped and continued under the same receipt; returned; handed to the back office; voided (the
whole case, or one co-department's task); corrected (更正) with a new round for every open sector task; withdrawn
with its open tasks cancelled. Each keeps the state derivable from the events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain import lifecycle
from gateway.domain.case import (
    DISCARD_OUTCOMES,
    TRANSITIONS,
    WAYS_FORWARD,
    Actor,
    ActorKind,
    Applicant,
    CaseRuleViolation,
    CaseState,
    Completion,
    ForbiddenTransition,
    SubmittedMaterial,
    TaskState,
    Trigger,
    WayForward,
    state_from_events,
)
from tests.support.lifecycle import CAL, FUND, MONDAY_10AM, PERSON, WINDOW, matter, new_case, triggers

SECTOR = Actor(ActorKind.DEPARTMENT, "sector:social_security")
OPERATOR = Actor(ActorKind.OPERATOR, "identity:ops-1")
LATER = MONDAY_10AM + timedelta(days=1)


def accepted(*co: object, started: bool = False):  # type: ignore[no-untyped-def]
    m = matter(*co)  # type: ignore[arg-type]
    case = new_case(m, "居民身份证", "本人银行账户")
    lifecycle.check_completeness(case, m, MONDAY_10AM, CAL)
    if started:
        lifecycle.start_task(case, "1", SECTOR, MONDAY_10AM, "SB1")
    return m, case


def test_every_way_forward_is_a_transition_of_the_one_table() -> None:
    assert set(WAYS_FORWARD) == set(WayForward)
    assert all(way.trigger in TRANSITIONS for way in WAYS_FORWARD.values())
    assert set(DISCARD_OUTCOMES) == {WayForward.BACK_OFFICE, WayForward.RETURN, WayForward.VOID}
    # operators may take each way a discard offers
    assert all(ActorKind.OPERATOR in TRANSITIONS[WAYS_FORWARD[w].trigger].actors for w in DISCARD_OUTCOMES)


def test_sent_back_the_clock_stops_and_after_the_supplement_the_case_continues_under_the_same_receipt() -> None:
    m, case = accepted(started=True)
    receipt, due = case.receipt_no, case.deadline.due if case.deadline else None
    lifecycle.settle(case, "1", WayForward.SUPPLEMENT, SECTOR, MONDAY_10AM, "照片不清晰", ["近期免冠照片"])
    assert case.state is CaseState.SUPPLEMENT_REQUIRED and case.missing_materials == ("近期免冠照片",)
    assert case.deadline and case.deadline.paused_on is not None  # the clock stands
    task = case.tasks[0]
    assert (task.state, task.round) == (TaskState.PENDING, 1)  # answers to round 0 change nothing now
    # Two working days later the applicant hands it in: the case goes on, the task is sent again.
    to_send = lifecycle.supplement(case, m, [SubmittedMaterial("近期免冠照片")], PERSON,
                                   MONDAY_10AM + timedelta(days=2), CAL)
    assert [t.task_id for t in to_send] == ["1"] and to_send[0].round == 1
    assert case.state is CaseState.IN_PROCESS and case.receipt_no == receipt
    assert triggers(case)[-3:] == ["send_back", "supplement", "continue"]
    assert case.deadline and due and case.deadline.due == due + timedelta(days=2)  # moved by the time it stood
    assert state_from_events(case.events) is case.state


def test_a_send_back_lists_what_is_missing() -> None:
    _, case = accepted()
    with pytest.raises(CaseRuleViolation):
        lifecycle.settle(case, "1", WayForward.SUPPLEMENT, OPERATOR, MONDAY_10AM, "材料有误", [])


def test_returned_by_an_operator_before_any_department_started_the_case_is_returned_and_closed() -> None:
    _, case = accepted()
    lifecycle.settle(case, "1", WayForward.RETURN, OPERATOR, LATER, "社保系统不再受理此类申请")
    assert triggers(case)[-3:] == ["task_concluded", "return", "close"]
    assert case.completion is Completion.RETURNED
    assert case.events[-2].actor == OPERATOR  # the decision is the operator's, not a department's
    assert state_from_events(case.events) is case.state


def test_handed_to_the_back_office_the_clerk_decides_and_the_sector_that_had_it_is_to_be_told() -> None:
    _, case = accepted(started=True)
    lifecycle.settle(case, "1", WayForward.BACK_OFFICE, OPERATOR, LATER, "系统长期停机")
    task = case.tasks[0]
    assert (task.sector, task.state, task.sector_told, task.round) == (None, TaskState.PENDING, False, 1)
    assert case.events[-1].data["from_sector"] == "social_security"
    assert case.events[-1].data["sector_notice"] == "sending"
    clerk = Actor(ActorKind.DEPARTMENT, "clerk-s")
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "准予", clerk, LATER)
    assert case.state is CaseState.APPROVED


def test_voiding_the_lead_task_voids_the_case_and_cancels_every_open_task() -> None:
    _, case = accepted(FUND, started=True)
    lifecycle.settle(case, "1", WayForward.VOID, OPERATOR, LATER, "重复申请")
    assert triggers(case)[-4:] == ["void", "task_cancelled", "task_cancelled", "close"]
    assert [(t.state, t.sector_told) for t in case.tasks] == [(TaskState.CANCELLED, False),  # the sector had it
                                                               (TaskState.CANCELLED, None)]  # back office
    assert case.completion is Completion.VOIDED
    assert state_from_events(case.events) is case.state


def test_voiding_a_co_departments_task_cancels_it_alone_and_the_lead_decides() -> None:
    co = type(FUND)("包头市医疗保障局", "11150200MB1A00030K", "medical")
    _, case = accepted(co, started=True)
    lifecycle.settle(case, "2", WayForward.VOID, OPERATOR, LATER, "该部门不再参与")
    assert case.state is CaseState.IN_PROCESS and case.tasks[1].state is TaskState.CANCELLED
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "准予", SECTOR, LATER)
    assert case.state is CaseState.APPROVED


def test_an_ended_task_has_no_way_forward_and_a_reason_is_always_required() -> None:
    _, case = accepted(started=True)
    with pytest.raises(CaseRuleViolation):
        lifecycle.settle(case, "1", WayForward.BACK_OFFICE, OPERATOR, LATER, "  ")
    lifecycle.conclude_task(case, "1", TaskState.APPROVED, "准予", SECTOR, LATER)
    with pytest.raises(CaseRuleViolation):
        lifecycle.settle(case, "1", WayForward.VOID, OPERATOR, LATER, "迟到的处理")


def test_a_suspended_case_cannot_be_returned_by_an_operator_but_may_go_to_the_back_office() -> None:
    _, case = accepted(started=True)
    lifecycle.suspend(case, SECTOR, LATER, "hearing", "听证")
    with pytest.raises(ForbiddenTransition):
        lifecycle.settle(case, "1", WayForward.RETURN, OPERATOR, LATER, "退回")
    lifecycle.settle(case, "1", WayForward.BACK_OFFICE, OPERATOR, LATER, "转人工")
    assert case.state is CaseState.SUSPENDED and case.tasks[0].sector is None


def test_a_correction_records_old_and_new_and_sends_every_open_sector_task_again_in_a_new_round() -> None:
    m, case = accepted(FUND, started=True)
    case.applicant = Applicant("王建国", "111", "150203195003120012")  # the window typed the number wrong
    resend = lifecycle.correct(case, m, {"applicant.id_number": ("150203198503120039", "150203195003120012")},
                               WINDOW, LATER, "身份证号录入错误")
    assert [(t.task_id, t.round) for t in resend] == [("1", 1)]  # the back-office task has nothing to send
    event = case.events[-1]
    assert event.trigger is Trigger.CORRECT and event.reason == "身份证号录入错误"
    assert event.data["fields"] == {"applicant.id_number": {"old": "150203198503120039", "new": "150203195003120012"}}
    assert event.data["resent"] == {"1": 1}
    assert "aged_60_plus" in case.green_channel  # born 1950: the green channel follows the corrected number
    assert case.state is CaseState.IN_PROCESS and case.tasks[0].state is TaskState.IN_PROCESS


def test_a_correction_must_change_something_keep_the_materials_complete_and_come_from_the_window() -> None:
    m, case = accepted()
    with pytest.raises(CaseRuleViolation):
        lifecycle.correct(case, m, {}, WINDOW, LATER, "无变化")
    complete = case.materials
    case.materials = (SubmittedMaterial("居民身份证"),)
    with pytest.raises(CaseRuleViolation, match="本人银行账户"):
        lifecycle.correct(case, m, {"materials": (["居民身份证", "本人银行账户"], ["居民身份证"])}, WINDOW, LATER, "换材料")
    case.materials = complete
    with pytest.raises(ForbiddenTransition):
        lifecycle.correct(case, m, {"applicant.name": ("王", "王建国")}, PERSON, LATER, "本人更正")


def test_withdrawing_cancels_open_tasks_saying_which_sectors_must_be_told() -> None:
    _, case = accepted(FUND, started=True)
    lifecycle.withdraw(case, PERSON, LATER, "不再需要")
    cancelled = [e.data for e in case.events if e.trigger is Trigger.TASK_CANCELLED]
    assert [(d["task"], d["sector_notice"]) for d in cancelled] == [("1", "sending"), ("2", "not_needed")]
    lifecycle.sector_told(case, "1", SECTOR, LATER + timedelta(minutes=1))
    lifecycle.sector_told(case, "1", SECTOR, LATER + timedelta(minutes=2))  # a repeat changes nothing
    assert case.tasks[0].sector_told is True and triggers(case).count("sector_told") == 1
    assert state_from_events(case.events) is CaseState.CLOSED


def test_an_unanswered_send_back_expires_and_ends_its_open_tasks() -> None:
    m, case = accepted(FUND, started=True)
    lifecycle.settle(case, "1", WayForward.SUPPLEMENT, SECTOR, MONDAY_10AM, "照片不清晰", ["近期免冠照片"])
    lifecycle.tick(case, m, MONDAY_10AM + timedelta(days=40), CAL, warn_days=2, supplement_days=30)
    assert case.completion is Completion.SUPPLEMENT_TIMEOUT
    assert all(t.state is TaskState.CANCELLED for t in case.tasks)
    assert datetime(2026, 1, 1, tzinfo=UTC) < case.events[-1].at


@pytest.mark.parametrize("way", list(WayForward))
def test_each_way_does_what_its_row_of_the_table_says(way: WayForward) -> None:
    """WAYS_FORWARD is not only documentation: applied to the lead task of a two-department case, each way
    makes its trigger's event, reaches the case or only the task, and stops, keeps or ends the clock as its
    row says."""
    _, case = accepted(FUND, started=True)
    before = len(case.events)
    lifecycle.settle(case, "1", way, OPERATOR, LATER, "部门系统不受理", ["近期免冠照片"])
    row = WAYS_FORWARD[way]
    assert row.trigger in [e.trigger for e in case.events[before:]]
    assert (case.state is not CaseState.IN_PROCESS) == (row.reach == "case")
    paused = case.deadline is not None and case.deadline.paused_on is not None
    assert {"stops": paused, "runs": not paused and case.state is CaseState.IN_PROCESS,
            "ends": case.state is CaseState.CLOSED}[row.clock]
    assert state_from_events(case.events) is case.state
