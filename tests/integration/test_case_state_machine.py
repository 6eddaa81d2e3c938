"""Random sequences of everything anyone may do to cases, through the case service, on both databases.

After every step, for every case: the state rebuilt from its stored events equals its stored state, the
events are numbered without gaps, and a refused action changed nothing (same version, same events).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from gateway.bootstrap.app import Gateway
from gateway.cases.service import NotYourCase, SubmitCase
from gateway.domain.case import (
    Actor,
    ActorKind,
    Applicant,
    CaseRuleViolation,
    Certificate,
    Delivery,
    Evaluation,
    ForbiddenTransition,
    SubmittedMaterial,
    TaskState,
    state_from_events,
)
from gateway.domain.clock import FixedClock
from gateway.persistence.repository import StaleCase
from tests.support.gateways import PINNED

WITHDRAWAL = "12150200MB1A00020M3000720001000"  # 住房公积金提取: one department, back office
FUND = "12150200MB1A00020M"
ALL_MATERIALS = ("居民身份证", "购房合同", "购房发票", "本人银行卡")
PERSON = Actor(ActorKind.APPLICANT, "hall")
WINDOW = Actor(ActorKind.WINDOW, "clerk-w")
CLERK = Actor(ActorKind.DEPARTMENT, "clerk-f")
ISSUER = Actor(ActorKind.ISSUING_WINDOW, "issuer")
REFUSALS = (ForbiddenTransition, CaseRuleViolation, NotYourCase, StaleCase)


class CaseMachine(RuleBasedStateMachine):
    cases = Bundle("cases")

    def __init__(self, gateway: Gateway, clock: FixedClock) -> None:
        super().__init__()
        self.gateway, self.clock, self.service = gateway, clock, gateway.service
        self.refused = 0
        self.known: list[str] = []

    # Complete applications most of the time, so that runs get deep into the lifecycle.
    @rule(target=cases, materials=st.one_of(st.just(set(ALL_MATERIALS)), st.sets(st.sampled_from(ALL_MATERIALS))))
    def submit(self, materials: set[str]) -> str:
        command = SubmitCase(WITHDRAWAL, Applicant("王建国", "111", "150203198503120039"),
                             tuple(SubmittedMaterial(m) for m in sorted(materials)))
        case_no = str(self.service.submit(command, PERSON).case["case_no"])
        self.known.append(case_no)
        return case_no

    @rule(case_no=cases, materials=st.sets(st.sampled_from(ALL_MATERIALS), min_size=1))
    def supplement(self, case_no: str, materials: set[str]) -> None:
        self.attempt(case_no, lambda: self.service.supplement(
            case_no, tuple(SubmittedMaterial(m) for m in sorted(materials)), PERSON))

    @rule(case_no=cases)
    def withdraw(self, case_no: str) -> None:
        self.attempt(case_no, lambda: self.service.withdraw(case_no, PERSON, "不再需要"))

    @rule(case_no=cases, reason=st.sampled_from(["", "不属于本机关职权范围"]))
    def not_accept(self, case_no: str, reason: str) -> None:
        self.attempt(case_no, lambda: self.service.not_accept(case_no, WINDOW, reason))

    @rule(case_no=cases, decision=st.sampled_from([TaskState.APPROVED, TaskState.APPROVED, TaskState.DENIED,
                                                   TaskState.RETURNED, TaskState.PENDING]),
          opinion=st.sampled_from(["理由充分", "理由充分", ""]))
    def decide(self, case_no: str, decision: TaskState, opinion: str) -> None:
        self.attempt(case_no, lambda: self.service.decide_task(case_no, "1", decision, opinion, CLERK, FUND))

    @rule(case_no=cases)
    def suspend(self, case_no: str) -> None:
        self.attempt(case_no, lambda: self.service.suspend(case_no, "hearing", "举行听证", CLERK, FUND))

    @rule(case_no=cases)
    def resume(self, case_no: str) -> None:
        self.attempt(case_no, lambda: self.service.resume(case_no, "听证结束", CLERK, FUND))

    @rule(case_no=cases)
    def issue(self, case_no: str) -> None:
        self.attempt(case_no, lambda: self.service.issue_certificate(
            case_no, Certificate("提取到账通知", "GJJ-1", "包头市住房公积金管理中心"), ISSUER))

    @rule(case_no=cases, method=st.sampled_from(["pickup", "express"]))
    def deliver(self, case_no: str, method: str) -> None:
        tracking = "SF1" if method == "express" else None
        self.attempt(case_no, lambda: self.service.deliver(case_no, Delivery(method, tracking), ISSUER))

    @rule(case_no=cases)
    def evaluate(self, case_no: str) -> None:
        self.attempt(case_no, lambda: self.service.evaluate(case_no, Evaluation("satisfied", "pc"), PERSON))

    @rule(case_no=cases, stale=st.booleans())
    def withdraw_with_version(self, case_no: str, stale: bool) -> None:
        version = self.service.get(case_no).version - (1 if stale else 0)
        self.attempt(case_no, lambda: self.service.withdraw(case_no, PERSON, "撤回", version))

    @rule(days=st.integers(min_value=1, max_value=12))
    def time_passes(self, days: int) -> None:
        self.clock.advance(timedelta(days=days))
        self.service.tick()

    def attempt(self, case_no: str, action: Callable[[], Any]) -> None:
        before = self.service.get(case_no)
        try:
            action()
        except REFUSALS:
            after = self.service.get(case_no)
            assert (after.version, len(after.events)) == (before.version, len(before.events))
            self.refused += 1

    @invariant()
    def every_stored_state_follows_from_its_events(self) -> None:
        for case_no in self.known:
            case = self.service.get(case_no)
            assert state_from_events(case.events) is case.state
            assert [e.seq for e in case.events] == list(range(1, len(case.events) + 1))


@pytest.mark.timeout(180)  # 25 sequences of 25 steps: ~10 s on PostgreSQL alone, several times that beside other tests
def test_random_action_sequences_keep_state_and_events_consistent(make_gateway: Callable[..., Gateway]) -> None:
    clock = FixedClock(PINNED)
    gateway = make_gateway(clock=clock)
    run_state_machine_as_test(
        lambda: CaseMachine(gateway, clock),
        settings=settings(max_examples=25, stateful_step_count=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
