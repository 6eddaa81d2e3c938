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
from gateway.app import Gateway, create_app
from gateway.persistence.uow import UnitOfWork
from tests.conftest import COMPLETE_APPLICATION, SOCIAL_SECURITY_AGENCY, Keys, drain
from tests.test_delivery import outbox_statuses

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
    with UnitOfWork(gateway.engine, gateway.service.personal, read_only=True) as uow:
        return [letter.id for letter in uow.dead_letters.list()]


@pytest.fixture
def housing_fund() -> Iterator[HousingFundSimulator]:
    with HousingFundSimulator(decision_delay_ms=60_000) as sim:  # undecided while the test runs
        yield sim


@pytest.mark.xfail(strict=True, reason="issue 14: a withdrawn case left its tasks open and its sector uninformed")
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
        events = hall.get(f"/v1/cases/{case_no}/events").json()
    [task] = view["tasks"]
    assert (view["state"], task["state"], task["sector_told"]) == ("closed", "cancelled", True)
    assert housing_fund.counters["cancels_received"] == 1
    cancelled = [e for e in events if e["trigger"] == "task_cancelled"]
    assert [e["data"]["sector_notice"] for e in cancelled] == ["sending"]
    assert [e["trigger"] for e in events][-1] == "sector_told"


@pytest.mark.xfail(strict=True, reason="issue 14: discarding a dead letter left its case accepted, nothing in flight")
def test_discarding_a_dead_letter_hands_its_task_to_the_back_office_in_the_same_step(
        make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator) -> None:
    gateway = make_gateway(sector_endpoints={"social_security": simulator.url})
    keys = Keys.issue(gateway)
    simulator.set_fault("fail")  # longer than the retry policy: a dead letter
    with client(gateway, keys.hall) as hall:
        case_no = hall.post("/v1/cases", json=COMPLETE_APPLICATION).json()["case_no"]
    drain(gateway, lambda: outbox_statuses(gateway) == [("submit_case", "dead")])
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
