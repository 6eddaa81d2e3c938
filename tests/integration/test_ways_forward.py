"""After acceptance, every case has a way forward (issue 14): withdrawal ends open tasks and tells the sectors
that had them; a dead letter is discarded only together with its case's outcome; the window corrects (更正) an
accepted case and its sectors are sent it again under a new round's key. Real simulators over HTTP, both
databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.case import Actor, ActorKind, WayForward
from gateway.persistence.uow import UnitOfWork
from tests.support.cases import outbox_statuses
from tests.support.gateways import COMPLETE_APPLICATION, SOCIAL_SECURITY_AGENCY, Keys, drain

HOUSING = "12150200MB1A00020M3000720001000"  # 住房公积金提取（购买自住住房）: the housing fund's system when active
HOUSING_APPLICATION: dict[str, Any] = {
    "matter_code": HOUSING,
    "applicant": {"name": "王建国", "id_number": "150203198503120039", "phone": "13847100001"},
    "materials": [{"name": "居民身份证"}, {"name": "购房合同"}, {"name": "购房发票"}, {"name": "本人银行卡"}],
    "form": {"amount": "80000.00", "house_price": "650000.00", "contract_no": "BT2026-0815"},
}


def client(gateway: Gateway, headers: dict[str, str]) -> TestClient:
    return TestClient(create_app(gateway), headers=headers)


def task_of(gateway: Gateway, case_no: str) -> Any:
    return gateway.service.get(case_no).tasks[0]


def dead_letter_ids(gateway: Gateway) -> list[int]:
    return [letter.id for letter in dead_letters(gateway)]


def dead_on_arrival(gateway: Gateway, sector: SocialSecuritySimulator, keys: Keys) -> str:
    """A case submitted while the sector fails for longer than the retry policy: its message is a dead letter,
    and the sector is back."""
    sector.set_fault("fail")
    with client(gateway, keys.hall) as hall:
        case_no = str(hall.post("/v1/cases", json=COMPLETE_APPLICATION).json()["case_no"])
    drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")])
    sector.set_fault(None)
    return case_no


@pytest.fixture
def housing_fund() -> Iterator[HousingFundSimulator]:
    with HousingFundSimulator(decision_delay_ms=60_000) as sim:  # undecided while the test runs
        yield sim


def test_withdrawing_ends_every_open_task_and_the_sector_that_had_one_is_told(
        make_gateway: Callable[..., Gateway], housing_fund: HousingFundSimulator) -> None:
    gateway = make_gateway(bundles=("housing_fund",), sector_endpoints={"housing_fund": housing_fund.url})
    keys = Keys.issue(gateway)
    with client(gateway, keys.hall) as hall:
        submitted = hall.post("/v1/cases", json=HOUSING_APPLICATION)
        assert submitted.status_code == 201, submitted.text
        case_no = submitted.json()["case_no"]
        drain(gateway, lambda: task_of(gateway, case_no).sector_ref is not None)
        withdrawn = hall.post(f"/v1/cases/{case_no}/withdraw", json={"reason": "不再需要"})
        assert withdrawn.status_code == 200, withdrawn.text
        drain(gateway, lambda: all(status != "pending" for _, status in outbox_statuses(gateway)))
        view = hall.get(f"/v1/cases/{case_no}").json()
        events = hall.get(f"/v1/cases/{case_no}/events").json()["items"]
    [task] = view["tasks"]
    assert (view["state"], task["state"], task["sector_told"]) == ("closed", "cancelled", True)
    assert housing_fund.counters["cancels_received"] == 1
    cancelled = [e for e in events if e["trigger"] == "task_cancelled"]
    assert [e["data"]["sector_notice"] for e in cancelled] == ["sending"]
    assert [e["trigger"] for e in events][-1] == "sector_told"


def test_discarding_a_dead_letter_hands_its_task_to_the_back_office_in_the_same_step(
        make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": simulator.url})
    keys = Keys.issue(gateway)
    case_no = dead_on_arrival(gateway, simulator, keys)
    [letter] = dead_letter_ids(gateway)
    with client(gateway, keys.operator) as operator:
        discarded = operator.post(f"/v1/ops/dead-letters/{letter}/discard",
                                  json={"reason": "社保系统停机维护，转人工办理", "case_outcome": "back_office"})
    assert discarded.status_code == 200, discarded.text
    assert (discarded.json()["status"], discarded.json()["case_outcome"]) == ("discarded", "back_office")
    case = gateway.service.get(case_no)
    assert (case.state.value, case.tasks[0].sector) == ("accepted", None)  # the back office has it now
    # The department's clerk decides through the back-office API, and the case goes on.
    with client(gateway, keys.clerk) as clerk:
        decided = clerk.post(f"/v1/cases/{case_no}/tasks/1/decision", json={"decision": "approved"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["state"] == "approved"
    assert decided.json()["tasks"][0]["credit_code"] == SOCIAL_SECURITY_AGENCY


# --- 更正: the window corrects an accepted case; its sectors see a new request --------------------------------


@pytest.fixture
def decided() -> list[dict[str, Any]]:
    """What the social-security simulator decided on, in order (the fields of each case it decided)."""
    return []


@pytest.fixture
def recording_simulator(decided: list[dict[str, Any]]) -> Iterator[SocialSecuritySimulator]:
    def decide(fields: dict[str, Any]) -> tuple[bool, str]:
        decided.append(fields)
        return True, "材料齐全，符合条件，准予办理"

    with SocialSecuritySimulator(decision_delay_ms=50, decide=decide) as sim:
        yield sim


def test_a_correction_replaces_the_dead_letter_and_the_sector_gets_the_corrected_case_under_a_new_key(
        make_gateway: Callable[..., Gateway], recording_simulator: SocialSecuritySimulator,
        decided: list[dict[str, Any]]) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": recording_simulator.url})
    keys = Keys.issue(gateway)
    case_no = dead_on_arrival(gateway, recording_simulator, keys)
    [letter] = dead_letter_ids(gateway)
    with client(gateway, keys.window) as window:
        refused = window.post(f"/v1/cases/{case_no}/correction",
                              json={"reason": "电话号码录入错误", "applicant": {"nickname": "王"}})
        assert refused.status_code == 422, refused.text
        corrected = window.post(f"/v1/cases/{case_no}/correction", headers={"If-Match": '"1"'},
                                json={"reason": "电话号码录入错误", "applicant": {"phone": "13847100002"}})
        assert corrected.status_code == 200, corrected.text
        assert corrected.json()["tasks"][0]["round"] == 1
        drain(gateway, lambda: gateway.service.get(case_no).state.value == "approved")
        events = window.get(f"/v1/cases/{case_no}/events").json()["items"]
    [fields] = decided
    assert fields["qqlsh"] == f"{case_no}:1:submit_case:r1"  # a new request, not a repeat of the dead one
    assert fields["lxdh"] == "13847100002"  # the corrected number reached the sector
    with UnitOfWork(gateway.engine, gateway.service.personal, read_only=True) as uow:
        assert uow.dead_letters.get(letter).status == "superseded"  # nothing left to replay
    [correction] = [e for e in events if e["trigger"] == "correct"]
    assert correction["actor"].startswith("window:") and correction["reason"] == "电话号码录入错误"
    change = correction["data"]["fields"]["applicant.phone"]
    assert "13847100001" not in str(change) and change["new"].endswith("0002")  # masked in the view


def test_a_correction_while_the_sector_has_the_case_is_sent_again_and_the_earlier_round_polls_no_more(
        make_gateway: Callable[..., Gateway], recording_simulator: SocialSecuritySimulator,
        decided: list[dict[str, Any]]) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": recording_simulator.url})
    keys = Keys.issue(gateway)
    with client(gateway, keys.hall) as hall:
        case_no = hall.post("/v1/cases", json=COMPLETE_APPLICATION).json()["case_no"]
    drain(gateway, lambda: task_of(gateway, case_no).sector_ref is not None)
    first_ref = task_of(gateway, case_no).sector_ref
    with client(gateway, keys.window) as window:
        corrected = window.post(f"/v1/cases/{case_no}/correction",
                                json={"reason": "姓名录入错误", "applicant": {"name": "王建华"},
                                      "form": {"insured_months": 48}})
    assert corrected.status_code == 200, corrected.text
    drain(gateway, lambda: gateway.service.get(case_no).state.value == "approved")
    task = task_of(gateway, case_no)
    assert task.sector_ref != first_ref and task.round == 1  # the sector's case for the corrected application
    assert [f["sqrxm"] for f in decided] == ["王建华"]  # the uncorrected one was never decided on: its polls ended
    assert recording_simulator.counters["cases_created"] == 2
    with gateway.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT operation, round, status FROM outbox ORDER BY id").all()
    assert ("query_status", 0, "superseded") in [tuple(r) for r in rows]


def test_a_correction_is_checked_as_intake_checks_and_a_refused_one_changes_nothing(
        make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": simulator.url})
    keys = Keys.issue(gateway)
    with client(gateway, keys.hall) as hall:
        case_no = hall.post("/v1/cases", json=COMPLETE_APPLICATION).json()["case_no"]
        bad = [({"applicant": {"id_number": "150203198503120038"}}, 422),  # the check digit
               ({"materials": [{"name": "居民身份证"}]}, 422),  # no longer complete
               ({"form": {"insured_months": "many"}}, 422),  # the matter's form schema
               ({}, 422)]  # nothing to correct
        with client(gateway, keys.window) as window:
            for body, status in bad:
                answer = window.post(f"/v1/cases/{case_no}/correction", json={"reason": "更正", **body})
                assert answer.status_code == status, (body, answer.text)
        assert hall.post(f"/v1/cases/{case_no}/correction",
                         json={"reason": "更正", "applicant": {"name": "王"}}).status_code == 403
    case = gateway.service.get(case_no)
    assert case.version == 1 and [e.trigger.value for e in case.events] == ["submit", "accept"]


# --- discarding with the case's outcome -------------------------------------------------------------------


def test_each_discard_outcome_settles_its_case_and_one_the_case_cannot_take_keeps_the_letter(
        make_gateway: Callable[..., Gateway]) -> None:
    with SocialSecuritySimulator(decision_delay_ms=60_000) as sim:  # undecided while the test runs
        gateway = make_gateway(sector_endpoints={"social_security": sim.url})
        keys = Keys.issue(gateway)
        with client(gateway, keys.hall) as hall:
            # The first case reaches the sector, which then answers what cannot be read: its status poll
            # dies, and so do the next two cases' submissions (at once: no retry, no breaker counting).
            in_process = hall.post("/v1/cases", json=COMPLETE_APPLICATION).json()["case_no"]
            drain(gateway, lambda: task_of(gateway, in_process).sector_ref is not None)
            sim.set_fault("malformed")
            returned, voided = (hall.post("/v1/cases", json=COMPLETE_APPLICATION).json()["case_no"] for _ in "ab")
        drain(gateway, lambda: len(dead_letter_ids(gateway)) == 3)
    letters = {letter.case_no: letter.id for letter in dead_letters(gateway)}
    with client(gateway, keys.clerk) as clerk:  # the department starts a special procedure meanwhile
        assert clerk.post(f"/v1/cases/{in_process}/suspend",
                          json={"procedure": "hearing", "reason": "听证"}).status_code == 200
    with client(gateway, keys.operator) as operator:
        missing = operator.post(f"/v1/ops/dead-letters/{letters[returned]}/discard", json={"reason": "不能送达"})
        assert missing.status_code == 422  # the case's outcome is required
        for case_no, outcome in ((returned, "return"), (voided, "void")):
            done = operator.post(f"/v1/ops/dead-letters/{letters[case_no]}/discard",
                                 json={"reason": "部门系统不再受理", "case_outcome": outcome})
            assert done.status_code == 200, done.text
        # A case in a special procedure cannot be returned now: the letter stays dead, the case as it was.
        kept = operator.post("/v1/ops/discards", json={"filter": {"ids": [letters[in_process]]},
                                                        "reason": "部门系统不再受理", "case_outcome": "return"})
        assert kept.status_code == 200 and kept.json()["count"] == 0, kept.text
        assert [k["id"] for k in kept.json()["kept"]] == [letters[in_process]]
        refused = operator.post(f"/v1/ops/dead-letters/{letters[in_process]}/discard",
                                json={"reason": "部门系统不再受理", "case_outcome": "return"})
        assert refused.status_code == 409 and refused.json()["type"].endswith("not-discardable")
        assert gateway.service.get(in_process).state.value == "suspended"
        # It may go to the back office, though: the sector, which had it, is to be told.
        handed = operator.post(f"/v1/ops/dead-letters/{letters[in_process]}/discard",
                               json={"reason": "部门系统不再受理", "case_outcome": "back_office"})
        assert handed.status_code == 200, handed.text
    settled = {c: gateway.service.get(c) for c in (returned, voided, in_process)}
    assert [(settled[c].state.value, str(settled[c].completion)) for c in (returned, voided)] == [
        ("closed", "退回办结"), ("closed", "作废办结")]
    task = settled[in_process].tasks[0]
    assert (settled[in_process].state.value, task.sector, task.sector_told) == ("suspended", None, False)
    assert ("cancel_case", "pending") in outbox_statuses(gateway)


def dead_letters(gateway: Gateway) -> list[Any]:
    with UnitOfWork(gateway.engine, gateway.service.personal, read_only=True) as uow:
        return list(uow.dead_letters.list())


def test_a_case_sent_back_for_a_supplement_goes_to_its_sector_again_once_complete(
        make_gateway: Callable[..., Gateway], recording_simulator: SocialSecuritySimulator,
        decided: list[dict[str, Any]]) -> None:
    """The way a sector's refusal will take (issue 18 wires its answers to it): the case waits at the window with
    its clock stopped; the applicant hands in what is missing; the task goes to the sector again, a new round."""
    gateway = make_gateway(sector_endpoints={"social_security": recording_simulator.url})
    keys = Keys.issue(gateway)
    case_no = dead_on_arrival(gateway, recording_simulator, keys)
    with client(gateway, keys.hall) as hall:
        sector = Actor(ActorKind.DEPARTMENT, "sector:social_security")
        sent_back = gateway.service.settle(case_no, "1", WayForward.SUPPLEMENT, sector, "劳动合同证明不清晰",
                                           ["解除或终止劳动合同证明"])
        assert (sent_back.state.value, sent_back.missing_materials) == ("supplement_required",
                                                                        ("解除或终止劳动合同证明",))
        assert sent_back.deadline is not None and sent_back.deadline.paused_on is not None
        assert dead_letters(gateway)[0].status == "superseded"  # the task starts a new round
        answer = hall.post(f"/v1/cases/{case_no}/supplement",
                           json={"materials": [{"name": "解除或终止劳动合同证明"}]})
        assert answer.status_code == 200 and answer.json()["state"] == "in_process", answer.text
        drain(gateway, lambda: gateway.service.get(case_no).state.value == "approved")
    assert [f["qqlsh"] for f in decided] == [f"{case_no}:1:submit_case:r1"]
    triggers = [e.trigger.value for e in gateway.service.get(case_no).events]
    assert triggers[2:5] == ["send_back", "supplement", "continue"]
