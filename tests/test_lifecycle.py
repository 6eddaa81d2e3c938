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
# (state before, trigger) -> (state after, the one actor kind allowed to do it)
EXPECTED = {
    (None, T.SUBMIT): (S.SUBMITTED, K.APPLICANT),
    (S.SUBMITTED, T.ACCEPT): (S.ACCEPTED, K.WINDOW),
    (S.SUBMITTED, T.REQUEST_SUPPLEMENT): (S.SUPPLEMENT_REQUIRED, K.WINDOW),
    (S.ACCEPTED, T.START_PROCESSING): (S.IN_PROCESS, K.SECTOR),
    (S.IN_PROCESS, T.APPROVE): (S.APPROVED, K.SECTOR),
    (S.IN_PROCESS, T.DENY): (S.DENIED, K.SECTOR),
    (S.APPROVED, T.CLOSE): (S.CLOSED, K.SYSTEM),
    (S.DENIED, T.CLOSE): (S.CLOSED, K.SYSTEM),
}
ALL_STATES: list[CaseState | None] = [None, *CaseState]


def new_case(state: CaseState | None = None) -> Case:
    case = Case("C1", "M", "social_security", Applicant("王", "111", "150203198503120039"), (), {})
    case.state = state
    return case


@pytest.mark.parametrize(("state", "trigger"), list(EXPECTED))
def test_allowed_transition_moves_and_records_an_event(state: CaseState | None, trigger: Trigger) -> None:
    target, kind = EXPECTED[(state, trigger)]
    case = new_case(state)
    event = case.apply(trigger, Actor(kind, "x"), AT, "why")
    assert case.state is target
    assert (event.from_state, event.to_state, event.actor, event.reason, event.at) == (state, target,
                                                                                      Actor(kind, "x"), "why", AT)
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
def test_only_the_named_actor_may_make_a_transition(state: CaseState | None, trigger: Trigger) -> None:
    _, allowed = EXPECTED[(state, trigger)]
    for kind in set(ActorKind) - {allowed}:
        case = new_case(state)
        with pytest.raises(ForbiddenTransition, match=f"'{trigger}' by {kind}"):
            case.apply(trigger, Actor(kind, "x"), AT, "why")


def test_a_gap_in_the_events_is_detected() -> None:
    case = new_case()
    case.apply(T.SUBMIT, Actor(K.APPLICANT, "online_pc"), AT, "a")
    case.apply(T.ACCEPT, Actor(K.WINDOW, "w"), AT, "b")
    case.apply(T.START_PROCESSING, Actor(K.SECTOR, "s"), AT, "c")
    with pytest.raises(ValueError, match="does not follow"):
        state_from_events([case.events[0], case.events[2]])


@given(st.lists(st.sampled_from(sorted({(t, k) for (_, t), (_, k) in EXPECTED.items()})), max_size=20))
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
