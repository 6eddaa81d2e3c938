"""The case state machine: every allowed transition, every forbidden one, and events that rebuild the state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.case import (
    Actor,
    ActorKind,
    Applicant,
    Case,
    CaseState,
    ForbiddenTransition,
    Trigger,
    state_from_events,
)

S, T, K = CaseState, Trigger, ActorKind
AT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)

# Written by hand from the issue, not derived from the code's table:
# (state before, trigger) -> (state after, the actor kinds allowed to do it). STAY: the state does not move.
STAY = "stay"
PERSON = {K.APPLICANT, K.AGENT}
OPEN = [S.SUBMITTED, S.SUPPLEMENT_REQUIRED, S.ACCEPTED, S.IN_PROCESS, S.SUSPENDED]
AT_DEPARTMENTS = (S.ACCEPTED, S.IN_PROCESS, S.SUSPENDED)
SETTLERS = {K.DEPARTMENT, K.OPERATOR}
EXPECTED: dict[tuple[CaseState | None, Trigger], tuple[CaseState | str, set[ActorKind]]] = {
    (None, T.SUBMIT): (S.SUBMITTED, PERSON),
    (S.SUPPLEMENT_REQUIRED, T.SUPPLEMENT): (S.SUBMITTED, PERSON),
    **{(s, T.WITHDRAW): (S.WITHDRAWN, PERSON) for s in OPEN},
    (S.SUBMITTED, T.ACCEPT): (S.ACCEPTED, {K.WINDOW}),
    (S.SUBMITTED, T.NOT_ACCEPT): (S.NOT_ACCEPTED, {K.WINDOW}),
    (S.SUBMITTED, T.REQUEST_SUPPLEMENT): (S.SUPPLEMENT_REQUIRED, {K.WINDOW}),
    (S.SUBMITTED, T.DEEM_ACCEPTED): (S.ACCEPTED, {K.CLOCK}),
    (S.ACCEPTED, T.START_PROCESSING): (S.IN_PROCESS, {K.DEPARTMENT}),
    (S.IN_PROCESS, T.SUSPEND): (S.SUSPENDED, {K.DEPARTMENT}),
    (S.SUSPENDED, T.RESUME): (S.IN_PROCESS, {K.DEPARTMENT}),
    (S.IN_PROCESS, T.APPROVE): (S.APPROVED, {K.DEPARTMENT}),
    (S.IN_PROCESS, T.DENY): (S.DENIED, {K.DEPARTMENT}),
    # Returned by its department, or by an operator settling a task no sector will take — from accepted too,
    # when the task is returned before any department started.
    **{(s, T.RETURN): (S.RETURNED, SETTLERS) for s in (S.ACCEPTED, S.IN_PROCESS)},
    # Issue 18: the gateway issues an electronic certificate its sector issued, where the matter says so.
    (S.APPROVED, T.ISSUE_CERTIFICATE): (S.CERTIFICATE_ISSUED, {K.ISSUING_WINDOW, K.SYSTEM}),
    (S.CERTIFICATE_ISSUED, T.DELIVER): (S.DELIVERED, {K.ISSUING_WINDOW}),
    **{(s, T.CLOSE): (S.CLOSED, {K.SYSTEM}) for s in (S.DELIVERED, S.DENIED, S.RETURNED, S.NOT_ACCEPTED,
                                                       S.WITHDRAWN, S.VOIDED)},
    (S.SUPPLEMENT_REQUIRED, T.SUPPLEMENT_EXPIRED): (S.CLOSED, {K.CLOCK}),
    # Issue 14, the ways forward after acceptance: sent back to the window (the clock stops), continued once
    # complete, handed to the back office, voided; corrected at the window; open tasks cancelled and sectors told.
    **{(s, T.SEND_BACK): (S.SUPPLEMENT_REQUIRED, SETTLERS) for s in (S.ACCEPTED, S.IN_PROCESS)},
    (S.SUBMITTED, T.CONTINUE): (S.IN_PROCESS, {K.WINDOW}),
    **{(s, T.HAND_TO_BACK_OFFICE): (STAY, SETTLERS) for s in AT_DEPARTMENTS},
    **{(s, T.VOID): (S.VOIDED, {K.OPERATOR}) for s in (*AT_DEPARTMENTS, S.SUPPLEMENT_REQUIRED)},
    **{(s, T.CORRECT): (STAY, {K.WINDOW}) for s in AT_DEPARTMENTS},
    **{(s, T.TASK_STARTED): (STAY, {K.DEPARTMENT}) for s in (S.IN_PROCESS, S.SUSPENDED, S.SUPPLEMENT_REQUIRED)},
    **{(s, T.TASK_CONCLUDED): (STAY, SETTLERS) for s in (S.ACCEPTED, S.IN_PROCESS, S.SUPPLEMENT_REQUIRED)},
    **{(s, T.TASK_CANCELLED): (STAY, {K.OPERATOR, K.CLOCK, *PERSON})
       for s in (*AT_DEPARTMENTS, S.SUPPLEMENT_REQUIRED, S.WITHDRAWN, S.VOIDED, S.CLOSED)},
    **{(s, T.SECTOR_TOLD): (STAY, {K.DEPARTMENT})
       for s in (*AT_DEPARTMENTS, S.SUPPLEMENT_REQUIRED, S.CLOSED, S.WITHDRAWN, S.VOIDED, S.DENIED, S.RETURNED,
                 S.NOT_ACCEPTED)},
    **{(s, T.DEADLINE_WARNING): (STAY, {K.CLOCK}) for s in (S.SUBMITTED, S.ACCEPTED, S.IN_PROCESS)},
    **{(s, T.OVERDUE): (STAY, {K.CLOCK}) for s in (S.SUBMITTED, S.ACCEPTED, S.IN_PROCESS)},
    (S.CLOSED, T.EVALUATE): (STAY, PERSON),
    # Issue 18: a sector's certificate, fetched, is prefilled while the case is at the departments or decided.
    **{(s, T.CERTIFICATE_FETCHED): (STAY, {K.DEPARTMENT}) for s in (*AT_DEPARTMENTS, S.SUPPLEMENT_REQUIRED,
                                                                   S.APPROVED)},
}
ALL_STATES: list[CaseState | None] = [None, *CaseState]


def new_case(state: CaseState | None = None) -> Case:
    case = Case("C1", "M", 1, Applicant("王", "111", "150203198503120039"), (), {})
    case.state = state
    return case


@pytest.mark.parametrize(("state", "trigger"), list(EXPECTED))
def test_allowed_transition_moves_and_records_an_event(state: CaseState | None, trigger: Trigger) -> None:
    expected, kinds = EXPECTED[(state, trigger)]
    target = state if expected == STAY else expected
    for kind in kinds:
        case = new_case(state)
        event = case.apply(trigger, Actor(kind, "x"), AT, "why")
        assert case.state is target
        assert (event.from_state, event.to_state, event.actor, event.reason, event.at) == (
            state, target, Actor(kind, "x"), "why", AT)
        assert case.new_events == [event]


FORBIDDEN = [(s, t) for s in ALL_STATES for t in Trigger if (s, t) not in EXPECTED]


@pytest.mark.parametrize(("state", "trigger"), FORBIDDEN)
def test_every_other_transition_is_forbidden(state: CaseState | None, trigger: Trigger) -> None:
    case = new_case(state)
    for kind in ActorKind:
        with pytest.raises(ForbiddenTransition):
            case.apply(trigger, Actor(kind, "x"), AT, "why")
    assert case.state is state and case.events == []


@pytest.mark.parametrize(("state", "trigger"), list(EXPECTED))
def test_only_the_named_actors_may_make_a_transition(state: CaseState | None, trigger: Trigger) -> None:
    _, allowed = EXPECTED[(state, trigger)]
    for kind in set(ActorKind) - allowed:
        case = new_case(state)
        with pytest.raises(ForbiddenTransition, match=f"{kind}:x 不能执行 {trigger}$"):
            case.apply(trigger, Actor(kind, "x"), AT, "why")


def test_a_gap_in_the_events_is_detected() -> None:
    case = new_case()
    case.apply(T.SUBMIT, Actor(K.APPLICANT, "online_pc"), AT, "a")
    case.apply(T.ACCEPT, Actor(K.WINDOW, "w"), AT, "b")
    case.apply(T.START_PROCESSING, Actor(K.DEPARTMENT, "s"), AT, "c")
    with pytest.raises(ValueError, match="does not follow"):
        state_from_events([case.events[0], case.events[2]])


@given(st.lists(st.sampled_from(sorted({(t, k) for (_, t), (_, ks) in EXPECTED.items() for k in ks})),
                max_size=30))
def test_random_sequences_keep_stored_state_equal_to_replayed_events(steps: list[tuple[Trigger, ActorKind]]) -> None:
    case = new_case()
    at = AT
    for trigger, kind in steps:
        at += timedelta(minutes=1)
        try:
            case.apply(trigger, Actor(kind, "x"), at, "step")
        except ForbiddenTransition:
            pass  # a refused step changes nothing
        assert state_from_events(case.events) == case.state
        assert [e.seq for e in case.events] == list(range(1, len(case.events) + 1))
