"""What a sector says no with reaches the case (issue 18), through the social-security simulator over real
SOAP (and the REST kind against a local server): a final refusal takes the way forward its bundle declares, a
busy sector is asked again, and polling survives status answers it cannot read — on both databases. The other
shipped sectors declare their refusals too: the social-assistance simulator's 42001 returns the case, the
civil-affairs simulator's FAIL goes to the back office, neither a dead letter."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters import SectorRefusal, default_bundles_dir, validate_bundle
from adapters.bundle import load_bundle
from adapters.contract import Operation
from adapters.kinds.rest.adapter import RestAdapter
from adapters.registry import build_adapter
from adapters.resilience import RetryPolicy, with_retries
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.social_assistance import SocialAssistanceSimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.audit.ledger import Filters
from gateway.bootstrap.app import Gateway
from gateway.domain.case import Actor, ActorKind, SubmittedMaterial, TaskState, Trigger
from gateway.domain.clock import as_utc
from gateway.persistence import tables as t
from gateway.persistence.repository import OutboxMessage
from gateway.persistence.uow import UnitOfWork
from tests.support.applications import application
from tests.support.cases import outbox_statuses, state, submit
from tests.support.catalogue import SOCIAL_SECURITY_CARD
from tests.support.gateways import activate_shipped, drain
from tests.support.local_server import ENVELOPE_OK, SUBMIT, TICKET, LocalServer, Reply, mappings
from tests.support.local_server import message as canonical_message
from tests.support.sector_cases import mz_case

HALL = Actor(ActorKind.APPLICANT, "hall")
CARD_WITHOUT_PHOTO = application(SOCIAL_SECURITY_CARD, ("居民身份证",))


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> Gateway:
    return make_gateway(sector_endpoints={"social_security": simulator.url})


def _dead_letters(gateway: Gateway) -> list[object]:
    with UnitOfWork(gateway.engine, gateway.service.personal, read_only=True) as uow:
        return list(uow.dead_letters.list())


def _received(gateway: Gateway, case_no: str, operation: str) -> list[str]:
    """The outcome of every answer the message log holds for the case's `operation`, oldest first."""
    records = gateway.ledger.records(Filters("message", case_no=case_no, action="received"), 1000)
    return [r.outcome for r in sorted(records, key=lambda r: r.id) if r.subject == operation]


def test_a_final_refusal_for_a_missing_material_goes_back_to_the_window_and_the_case_then_goes_on(
        gateway: Gateway, simulator: SocialSecuritySimulator) -> None:
    case_no = submit(gateway, CARD_WITHOUT_PHOTO)
    drain(gateway, lambda: state(gateway, case_no) == "supplement_required")
    case = gateway.service.get(case_no)
    assert case.missing_materials == ("近期免冠照片",)
    assert case.deadline is not None and case.deadline.paused_on is not None  # the clock stands
    sent_back = case.events[-1]
    assert (sent_back.trigger, sent_back.actor, sent_back.reason) == (
        Trigger.SEND_BACK, Actor(ActorKind.DEPARTMENT, "sector:social_security"), "申请材料不全，请补充：近期免冠照片")
    assert sent_back.data["missing"] == ["近期免冠照片"]
    assert (sent_back.data["sector_code"], sent_back.data["sector_message"]) == ("3001", sent_back.reason)
    assert outbox_statuses(gateway, case_no) == [("submit_case", "done")] and _dead_letters(gateway) == []
    assert _received(gateway, case_no, "submit_case") == ["sector_fault"]  # the exchange is on record

    gateway.service.supplement(case_no, (SubmittedMaterial("近期免冠照片"),), HALL)
    drain(gateway, lambda: state(gateway, case_no) == "approved")
    case = gateway.service.get(case_no)
    assert [e.trigger for e in case.events if e.trigger in (Trigger.SEND_BACK, Trigger.CONTINUE, Trigger.APPROVE)] \
        == [Trigger.SEND_BACK, Trigger.CONTINUE, Trigger.APPROVE]
    assert case.tasks[0].round == 1 and simulator.counters["cases_created"] == 1


@pytest.mark.parametrize(("busy", "outcome"), [(2, "approved"), (None, "accepted")])
def test_a_busy_sector_is_asked_again_under_the_retry_policy_then_a_dead_letter(
        gateway: Gateway, simulator: SocialSecuritySimulator, busy: int | None, outcome: str) -> None:
    simulator.set_fault("busy", count=busy)  # fhdm 9001, declared retryable; the policy makes 3 attempts
    case_no = submit(gateway)
    if busy is not None:
        drain(gateway, lambda: state(gateway, case_no) == "approved")
        assert _dead_letters(gateway) == []
        return
    drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")])
    [letter] = _dead_letters(gateway)
    assert (letter.error_class, letter.attempts) == ("sector_fault", 3)  # type: ignore[attr-defined]
    assert "9001" in letter.error_message  # type: ignore[attr-defined]
    assert state(gateway, case_no) == outcome


def _leased_submit(gateway: Gateway, case_no: str) -> OutboxMessage:
    """The case's submit message, leased as a dispatcher leases it (no sector is called)."""
    now = gateway.service.clock.now()
    with UnitOfWork(gateway.engine, gateway.service.personal) as uow:
        [message] = uow.outbox.claim_due("test", now, now + timedelta(minutes=1), 10)
        uow.commit()
    assert (message.case_no, message.operation) == (case_no, "submit_case")
    return message


def test_a_supplement_the_sector_names_nothing_for_goes_to_the_back_office(gateway: Gateway) -> None:
    case_no = submit(gateway)
    gateway.service.record_refusal(_leased_submit(gateway, case_no), "test",
                                   SectorRefusal("3001", "申请材料不全", "supplement", ()))
    case = gateway.service.get(case_no)
    handed = case.events[-1]
    assert (handed.trigger, handed.reason) == (Trigger.HAND_TO_BACK_OFFICE, "申请材料不全")
    assert case.state.value == "accepted"  # with the back office now, its clock running
    assert handed.data["fallback"] == "业务系统要求补正但未列明需补正的材料，转部门后台办理"
    assert handed.data["sector_code"] == "3001"
    assert case.tasks[0].sector is None and case.tasks[0].state is TaskState.PENDING
    assert outbox_statuses(gateway, case_no) == [("submit_case", "done")] and _dead_letters(gateway) == []


def test_a_return_concludes_the_case_with_the_sectors_reason(gateway: Gateway) -> None:
    case_no = submit(gateway)
    gateway.service.record_refusal(_leased_submit(gateway, case_no), "test",
                                   SectorRefusal("4001", "申请人不符合申领条件", "return"))
    case = gateway.service.get(case_no)
    assert case.state.value == "closed" and case.opinion == "申请人不符合申领条件"
    concluded = next(e for e in case.events if e.trigger is Trigger.TASK_CONCLUDED)
    assert concluded.data["decision"] == "returned" and concluded.data["sector_message"] == "申请人不符合申领条件"


# ------------------------------------------------------------------------------------------- polling


def _in_process(gateway: Gateway, case_no: str) -> None:
    drain(gateway, lambda: state(gateway, case_no) == "in_process")


def test_unreadable_status_answers_are_recorded_and_polling_goes_on(
        gateway: Gateway, simulator: SocialSecuritySimulator) -> None:
    case_no = submit(gateway)
    _in_process(gateway, case_no)
    simulator.set_fault("malformed", count=2)  # the next two status answers are cut short
    drain(gateway, lambda: state(gateway, case_no) == "approved")
    assert _received(gateway, case_no, "query_status")[:2] == ["validation", "validation"]
    assert _dead_letters(gateway) == []


def test_a_run_of_unreadable_status_answers_backs_off_then_becomes_a_dead_letter(
        gateway: Gateway, simulator: SocialSecuritySimulator) -> None:
    case_no = submit(gateway)
    _in_process(gateway, case_no)
    version = gateway.service.get(case_no).version
    simulator.set_fault("malformed")
    before, after = _poll_until_bad_answers(gateway, case_no, 2)
    due = _status_row(gateway, case_no)["available_at"]
    backoff = timedelta(milliseconds=20 * 2 ** 2)  # the interval (20 ms here) doubled per bad answer in a row
    assert before + backoff <= as_utc(due) <= after + backoff
    drain(gateway, lambda: ("query_status", "dead") in outbox_statuses(gateway, case_no))
    [letter] = _dead_letters(gateway)
    assert letter.error_class == "validation"  # type: ignore[attr-defined]
    assert letter.error_message.startswith("5 status answers in a row could not be read")  # type: ignore[attr-defined]
    assert _received(gateway, case_no, "query_status") == ["validation"] * 5
    assert gateway.service.get(case_no).version == version  # the case never changed


def _status_row(gateway: Gateway, case_no: str) -> Any:
    with gateway.engine.connect() as conn:
        return conn.execute(select(t.outbox).where(t.outbox.c.case_no == case_no,
                                                   t.outbox.c.operation == "query_status")).mappings().one()


def _poll_until_bad_answers(gateway: Gateway, case_no: str, count: int) -> tuple[datetime, datetime]:
    """Dispatch until the status message has `count` bad answers in a row; the clock around the last round."""
    deadline = time.monotonic() + 15
    while True:
        before = gateway.service.clock.now()
        gateway.dispatcher.run_once()
        after = gateway.service.clock.now()
        if _status_row(gateway, case_no)["bad_answers"] == count:
            return before, after
        assert time.monotonic() < deadline, "no bad answers in time"
        time.sleep(0.005)


@pytest.fixture
def slow_sector() -> Iterator[SocialSecuritySimulator]:
    with SocialSecuritySimulator(decision_delay_ms=60_000) as sim:  # undecided for the whole test
        yield sim


def test_an_unchanged_status_writes_nothing_to_the_case(make_gateway: Callable[..., Gateway],
                                                        slow_sector: SocialSecuritySimulator) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": slow_sector.url})
    case_no = submit(gateway)
    _in_process(gateway, case_no)
    before = gateway.service.get(case_no)
    drain(gateway, lambda: len(_received(gateway, case_no, "query_status")) >= 3)
    after = gateway.service.get(case_no)
    assert (after.version, len(after.events)) == (before.version, len(before.events))
    assert set(_received(gateway, case_no, "query_status")) == {"ok"}


@pytest.mark.parametrize(("file", "change", "expected"), [
    ("submit_case.mapping.yaml", ("missing: qscl}", "missing: qsclx}"),
     "submit_case.mapping.yaml:29: response.business_error.final.3001.missing: 'qsclx' is not in SubmitCaseResponse"),
    ("bundle.yaml", ("max_bad_answers: 5 ", "max_bad_answers: 0 "),
     "bundle.yaml:32: results.max_bad_answers: 0 is less than the minimum of 1"),
])
def test_a_bundle_declaring_refusals_or_polling_wrongly_is_refused_naming_the_line(
        tmp_path: Path, file: str, change: tuple[str, str], expected: str) -> None:
    bundle = tmp_path / "social_security"
    shutil.copytree(default_bundles_dir() / "social_security", bundle)
    text = (bundle / file).read_text(encoding="utf-8")
    assert change[0] in text
    (bundle / file).write_text(text.replace(*change), encoding="utf-8")
    assert [str(problem) for problem in validate_bundle(bundle)][0].startswith(expected)


# ------------------------------------------------------------------------------------------- the REST kind


def test_the_rest_kind_retries_a_busy_code_and_carries_a_final_refusal_with_its_way(
        local_server: LocalServer) -> None:
    declared = {**ENVELOPE_OK["business_error"], "retryable": [9001],
                "final": {"4201": {"way": "supplement", "missing": "data.lacking"}, "4301": {"way": "return"}}}
    submit_mapping = {**SUBMIT, "response": {**SUBMIT["response"], "business_error": declared}}
    adapter = RestAdapter("housing_fund", "1", local_server.url, mappings(submit_case=submit_mapping), 2.0)
    retried = with_retries(adapter, RetryPolicy(attempts=3, initial_ms=1, max_ms=5))
    try:
        local_server.script(Reply(200, {"code": 9001, "msg": "系统繁忙"}), TICKET)
        assert retried.call(Operation.SUBMIT_CASE, canonical_message()) == {"sector_ref": "GJJ0000000001"}
        assert len(local_server.seen) == 2
        lacking = {"lacking": "购房发票、购房合同"}
        local_server.script(Reply(200, {"code": 4201, "msg": "缺少购房发票", "data": lacking}))
        with pytest.raises(SectorRefusal) as refused:
            retried.call(Operation.SUBMIT_CASE, canonical_message())
        assert len(local_server.seen) == 1  # a final answer is not asked again
    finally:
        adapter.close()
    assert (refused.value.code, refused.value.sector_message, refused.value.way, refused.value.missing) == (
        "4201", "缺少购房发票", "supplement", ("购房发票", "购房合同"))


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    with LocalServer() as local:
        yield local


# ------------------------------------------------------------------------------- the other shipped sectors

TEMPORARY_ASSISTANCE = "11150200MB0C00140F3000113005000"  # 临时救助, 包头市民政局: the social-assistance sector
ASSISTANCE_MATERIALS = ("临时救助申请书", "居民身份证", "家庭收入和财产状况声明", "家庭经济状况核对授权书")


def test_a_shipped_rest_sectors_final_refusal_returns_the_case_with_its_words(
        make_gateway: Callable[..., Gateway]) -> None:
    above_the_standard = {"family_size": 1, "monthly_income": "5000.00", "savings": "0", "hardship": "火灾"}
    with SocialAssistanceSimulator(0, 50) as sector:
        gateway = make_gateway(bundles=(), sector_endpoints={"social_assistance": sector.url})
        activate_shipped(gateway.bundles, "social_assistance")
        case_no = submit(gateway, application(TEMPORARY_ASSISTANCE, ASSISTANCE_MATERIALS, form=above_the_standard))
        drain(gateway, lambda: state(gateway, case_no) == "closed")
        assert sector.counters["submits_received"] == 1  # a final answer is not asked again
    case = gateway.service.get(case_no)
    concluded = next(e for e in case.events if e.trigger is Trigger.TASK_CONCLUDED)
    assert (concluded.data["decision"], concluded.data["sector_code"]) == ("returned", "42001")
    assert case.opinion == concluded.data["sector_message"] and case.opinion.startswith("不符合救助条件")
    assert outbox_statuses(gateway, case_no) == [("submit_case", "done")] and _dead_letters(gateway) == []


def test_a_shipped_soap_sectors_refusal_goes_to_the_back_office_unasked_again() -> None:
    message = mz_case("MZ-REFUSED-1", "MZ-CASE-1", certificate_provided=True)
    message["case"]["applicant"]["name"] = ""  # the sector insists on a name: ResultCode FAIL, 缺少必填项
    with CivilAffairsSimulator(decision_delay_ms=50) as sector:
        registered = build_adapter(load_bundle(default_bundles_dir() / "civil_affairs"), endpoint=sector.url,
                                   retry_override=RetryPolicy(attempts=3, initial_ms=1, max_ms=5))
        with pytest.raises(SectorRefusal) as refused:
            registered.adapter.call(Operation.SUBMIT_CASE, message)
        assert sector.counters["submits_received"] == 1
    assert (refused.value.code, refused.value.way) == ("FAIL", "back_office")
    assert refused.value.sector_message == "缺少必填项：Applicant.Name"
