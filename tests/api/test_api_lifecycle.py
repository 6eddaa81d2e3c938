"""A case's whole life through the HTTP API, on SQLite and PostgreSQL.

Every step goes through `create_app(gateway)` with the key of the role that takes it: the hall and
windows submit, the back office decides, the issuing window issues and delivers, the clock deems,
warns and flags. Housing-fund matters have no sector system, so they stay in-process; the
social-security sector is reached through the simulator where a test needs a sector system.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import FixedClock
from gateway.domain.matter import Matter
from gateway.domain.roles import Identity
from gateway.persistence import tables as t
from gateway.sectors.delivery import canonical_message
from tests.support.applications import APPLICANT_ID, HOUSING, HOUSING_FUND, HOUSING_MATERIALS, application
from tests.support.gateways import COMPLETE_APPLICATION, PINNED, SOCIAL_SECURITY_AGENCY, Keys, drain

HOUSING_FUND_NAME = "包头市住房公积金管理中心"
RETIREMENT = "12150200MB1A00010L3000805005000"  # 职工退休一件事: social security leads, housing fund co-decides
ELDER_ID = "150203196604150035"  # born 1966-04-15: 60 at PINNED (2026-11-24)
AGENT_ID = "150203199001010010"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


# --- the desk: one gateway, one client per role ----------------------------------------------------


@dataclass
class Desk:
    gateway: Gateway
    clock: FixedClock | None
    hall: TestClient
    window: TestClient
    clerk: TestClient  # the housing-fund centre's back office
    other_clerk: TestClient  # the social-security agency's back office
    issuing: TestClient

    def who(self, client: TestClient) -> Identity:
        """The identity behind a client's key, to name it in expected actors."""
        identity = self.gateway.keys.authenticate(client.headers["authorization"].removeprefix("Bearer "))
        assert identity is not None
        return identity

    def advance(self, days: int) -> None:
        assert self.clock is not None
        self.clock.advance(timedelta(days=days))


OpenDesk = Callable[..., Desk]


@pytest.fixture
def open_desk(make_gateway: Callable[..., Gateway]) -> OpenDesk:
    def open_(clock: FixedClock | None = None, **overrides: Any) -> Desk:
        gateway = make_gateway(clock=clock, **overrides)
        keys, app = Keys.issue(gateway), create_app(gateway)

        def client(headers: dict[str, str]) -> TestClient:
            return TestClient(app, headers=headers)

        return Desk(gateway, clock, client(keys.hall), client(keys.window),
                    client(keys.clerk_of(gateway, HOUSING_FUND)), client(keys.clerk), client(keys.issuing))

    return open_


@pytest.fixture
def desk(open_desk: OpenDesk) -> Desk:
    """At PINNED (Tuesday 2026-11-24, 10:00 Beijing time), the clock moved by hand."""
    return open_desk(clock=FixedClock(PINNED))


# --- requests --------------------------------------------------------------------------------------


def submit(client: TestClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = client.post("/v1/cases", json=body or application())
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def act(client: TestClient, case_no: str, action: str, body: dict[str, Any] | None = None,
        **headers: str) -> httpx.Response:
    return client.post(f"/v1/cases/{case_no}/{action}", json=body or {}, headers=headers)


def ok(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def decide(desk: Desk, case_no: str, decision: str, opinion: str = "", task: str = "1") -> httpx.Response:
    return act(desk.clerk, case_no, f"tasks/{task}/decision", {"decision": decision, "opinion": opinion})


def assert_problem(answer: httpx.Response, status: int, slug: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"] == f"urn:yiwang:problem:{slug}"


def events(client: TestClient, case_no: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/cases/{case_no}/events")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def triggers(client: TestClient, case_no: str) -> list[str]:
    return [e["trigger"] for e in events(client, case_no)]


def last_event(client: TestClient, case_no: str, trigger: str) -> dict[str, Any]:
    return [e for e in events(client, case_no) if e["trigger"] == trigger][-1]


def view(client: TestClient, case_no: str) -> dict[str, Any]:
    return ok(client.get(f"/v1/cases/{case_no}"))


def document(client: TestClient, case_no: str, kind: str) -> dict[str, Any]:
    return ok(client.get(f"/v1/cases/{case_no}/documents/{kind}"))


def republish(gateway: Gateway, code: str = HOUSING, **changes: Any) -> Matter:
    """Publish the next version of `code` with `changes` to its guide (a draft first, as admins do)."""
    matter = gateway.catalogue.published(code)
    assert matter is not None
    draft = gateway.catalogue.draft(replace(matter, **changes), "test")
    return gateway.catalogue.publish(code, draft.version, "test")


def outbox_rows(gateway: Gateway) -> list[Any]:
    with gateway.engine.connect() as conn:
        return list(conn.execute(select(t.outbox).order_by(t.outbox.c.id)))


# --- 1. back-office decisions ----------------------------------------------------------------------


def test_the_back_office_approves_its_single_department_case(desk: Desk) -> None:
    case = submit(desk.hall)
    assert case["state"] == "accepted"
    assert case["tasks"] == [{"task_id": "1", "department": HOUSING_FUND_NAME, "credit_code": HOUSING_FUND,
                              "lead": True, "via": "back_office", "state": "pending", "sector_ref": None,
                              "opinion": None, "round": 0, "sector_told": None, "result": None}]
    approved = ok(decide(desk, case["case_no"], "approved", "符合提取条件"))
    assert (approved["state"], approved["opinion"], approved["tasks"][0]["state"]) == ("approved", "符合提取条件",
                                                                                      "approved")
    clerk = f"department:{desk.who(desk.clerk).id}"
    tail = events(desk.clerk, case["case_no"])[2:]
    assert [(e["trigger"], e["to_state"], e["actor"]) for e in tail] == [
        ("start_processing", "in_process", clerk), ("task_started", "in_process", clerk),
        ("task_concluded", "in_process", clerk), ("approve", "approved", f"department:{HOUSING_FUND}")]
    assert tail[2]["data"] == {"task": "1", "department": HOUSING_FUND_NAME, "decision": "approved", "lead": True}
    assert tail[3]["data"] == {"lead": HOUSING_FUND_NAME, "not_approved_by": {}}


def test_a_clerk_of_another_department_may_neither_decide_nor_read(desk: Desk) -> None:
    case_no = submit(desk.hall)["case_no"]
    answer = act(desk.other_clerk, case_no, "tasks/1/decision", {"decision": "approved"})
    assert_problem(answer, 403, "not-your-case")
    assert_problem(desk.other_clerk.get(f"/v1/cases/{case_no}"), 403, "not-your-case")
    assert_problem(desk.other_clerk.get(f"/v1/cases/{case_no}/events"), 403, "not-your-case")
    assert view(desk.hall, case_no)["state"] == "accepted"


@pytest.mark.parametrize("decision", ["denied", "returned"])
def test_denying_or_returning_needs_a_written_opinion(desk: Desk, decision: str) -> None:
    case_no = submit(desk.hall)["case_no"]
    assert_problem(decide(desk, case_no, decision), 422, "case-rule-violated")
    assert_problem(decide(desk, case_no, decision, "   "), 422, "case-rule-violated")
    after = view(desk.hall, case_no)
    assert (after["state"], after["tasks"][0]["state"], after["version"]) == ("accepted", "pending", 1)


def test_a_returned_case_closes_as_returned(desk: Desk) -> None:
    case_no = submit(desk.hall)["case_no"]
    closed = ok(decide(desk, case_no, "returned", "购房合同未经备案，请备案后重新申请"))
    assert (closed["state"], closed["completion"]) == ("closed", "退回办结")
    assert closed["opinion"] == "购房合同未经备案，请备案后重新申请"
    ret, close = events(desk.hall, case_no)[-2:]
    assert (ret["trigger"], ret["to_state"], ret["reason"]) == ("return", "returned", "购房合同未经备案，请备案后重新申请")
    assert ret["data"] == {"lead": HOUSING_FUND_NAME,
                           "not_approved_by": {HOUSING_FUND_NAME: "购房合同未经备案，请备案后重新申请"}}
    assert (close["trigger"], close["actor"], close["data"]) == ("close", "system:gateway", {"completion": "退回办结"})


# --- 2. parallel approval (并联审批) ----------------------------------------------------------------


def retirement_application() -> dict[str, Any]:
    return application(RETIREMENT, ("居民身份证", "本人人事档案", "本人银行账户"),
                       form={"retirement_date": "2026-12-01", "employer_name": "包头钢铁（集团）有限责任公司",
                             "withdraw_provident_fund": True})


def test_a_parallel_case_waits_for_every_department_and_follows_the_lead(
        open_desk: OpenDesk, simulator: SocialSecuritySimulator) -> None:
    desk = open_desk(sector_endpoints={"social_security": simulator.url})
    case = submit(desk.hall, retirement_application())
    assert [(t["task_id"], t["credit_code"], t["lead"], t["via"]) for t in case["tasks"]] == [
        ("1", SOCIAL_SECURITY_AGENCY, True, "sector_system"), ("2", HOUSING_FUND, False, "back_office")]
    case_no = case["case_no"]
    drain(desk.gateway, lambda: desk.gateway.service.get(case_no).tasks[0].state == "approved")
    assert view(desk.hall, case_no)["state"] == "in_process"  # the co-department has not decided yet
    approved = ok(decide(desk, case_no, "denied", "账户存在未结清贷款，暂不能销户提取", task="2"))
    assert approved["state"] == "approved"
    assert [t["state"] for t in approved["tasks"]] == ["approved", "denied"]
    decision = last_event(desk.hall, case_no, "approve")
    assert decision["actor"] == f"department:{SOCIAL_SECURITY_AGENCY}"
    assert decision["data"] == {"lead": "包头市社会保险事业服务中心",
                                "not_approved_by": {HOUSING_FUND_NAME: "账户存在未结清贷款，暂不能销户提取"}}
    assert [r.operation for r in outbox_rows(desk.gateway)].count("submit_case") == 1
    assert {r.sector for r in outbox_rows(desk.gateway)} == {"social_security"}


# --- 3. supplements (补齐补正) ----------------------------------------------------------------------


def test_supplements_go_round_until_the_materials_are_complete(desk: Desk) -> None:
    case_no = submit(desk.hall, application(materials=("居民身份证",)))["case_no"]
    notice = document(desk.hall, case_no, "supplement_notice")
    assert (notice["title"], notice["round"]) == ("补齐补正告知书", 1)
    assert notice["missing_materials"] == ["购房合同", "购房发票", "本人银行卡"]
    second = ok(act(desk.hall, case_no, "supplement", {"materials": [{"name": "购房合同"}]}))
    assert (second["state"], second["supplement_rounds"]) == ("supplement_required", 2)
    assert second["missing_materials"] == ["购房发票", "本人银行卡"]
    assert document(desk.hall, case_no, "supplement_notice")["missing_materials"] == ["购房发票", "本人银行卡"]
    done = ok(act(desk.hall, case_no, "supplement", {"materials": [{"name": "购房发票"}, {"name": "本人银行卡"}]}))
    assert (done["state"], done["missing_materials"], done["receipt_no"] is not None) == ("accepted", [], True)
    assert triggers(desk.hall, case_no) == ["submit", "request_supplement", "supplement", "request_supplement",
                                            "supplement", "accept"]
    assert_problem(act(desk.hall, case_no, "supplement", {"materials": [{"name": "购房合同"}]}), 409,
                   "transition-not-allowed")
    assert view(desk.hall, case_no)["supplement_rounds"] == 2


def test_a_supplement_may_only_name_listed_materials(desk: Desk) -> None:
    case_no = submit(desk.hall, application(materials=("居民身份证",)))["case_no"]
    assert_problem(act(desk.hall, case_no, "supplement", {"materials": [{"name": "户口簿"}]}), 422,
                   "invalid-application")
    assert_problem(act(desk.hall, case_no, "supplement", {"materials": []}), 422, "invalid-request")
    assert (view(desk.hall, case_no)["state"], triggers(desk.hall, case_no)) == (
        "supplement_required", ["submit", "request_supplement"])


# --- 4. a window reviews the application (auto_accept false) ------------------------------------------


def window_submission(desk: Desk) -> str:
    assert republish(desk.gateway, auto_accept=False).version == 2  # every shipped matter accepts on the spot
    case = submit(desk.window, application(channel="city_window"))
    assert (case["state"], case["matter_version"], case["receipt_no"], case["tasks"]) == ("submitted", 2, None, [])
    return str(case["case_no"])


def test_a_window_accepts_a_reviewed_application(desk: Desk) -> None:
    case_no = window_submission(desk)
    accepted = ok(act(desk.window, case_no, "accept"))
    assert (accepted["state"], accepted["promised_by"]) == ("accepted", "2026-11-27")  # 3 working days
    event = last_event(desk.hall, case_no, "accept")
    assert event["actor"] == f"window:{desk.who(desk.window).id}"
    assert event["data"]["receipt_no"] == accepted["receipt_no"]
    receipt = document(desk.window, case_no, "acceptance_receipt")
    assert (receipt["deemed"], receipt["accepted_by"]) == (False, event["actor"])


def test_not_accepting_needs_reasons_and_yields_a_notice(desk: Desk) -> None:
    case_no = window_submission(desk)
    assert_problem(act(desk.window, case_no, "not-accept"), 422, "case-rule-violated")
    assert_problem(desk.window.get(f"/v1/cases/{case_no}/documents/not_accepted_notice"), 404,
                   "document-not-available")
    closed = ok(act(desk.window, case_no, "not-accept", {"reason": "购房合同签订已超过2年"}))
    assert (closed["state"], closed["completion"]) == ("closed", "办结")
    assert triggers(desk.hall, case_no)[-2:] == ["not_accept", "close"]
    notice = document(desk.window, case_no, "not_accepted_notice")
    assert (notice["title"], notice["reason"]) == ("不予受理通知书", "购房合同签订已超过2年")
    assert notice["decided_by"] == f"window:{desk.who(desk.window).id}"


def test_a_window_asks_only_for_listed_materials(desk: Desk) -> None:
    case_no = window_submission(desk)
    asked = act(desk.window, case_no, "supplement-request", {"missing": ["户口簿"]})
    assert_problem(asked, 422, "case-rule-violated")
    asked = ok(act(desk.window, case_no, "supplement-request", {"missing": ["购房发票"], "reason": "发票模糊不清"}))
    assert (asked["state"], asked["missing_materials"], asked["supplement_rounds"]) == (
        "supplement_required", ["购房发票"], 1)
    notice = document(desk.window, case_no, "supplement_notice")
    assert (notice["missing_materials"], notice["reason"]) == (["购房发票"], "发票模糊不清")
    back = ok(act(desk.window, case_no, "supplement", {"materials": [{"name": "购房发票"}]}))
    assert back["state"] == "submitted"  # complete again, and still for the window to accept


# --- 5. the clock: deemed acceptance, e-supervision, special procedures ------------------------------


def tick_twice(desk: Desk) -> int:
    """Run the clock twice: the second run must find nothing more to do."""
    moved = desk.gateway.service.tick()
    assert desk.gateway.service.tick() == 0
    return moved


def clock_events(desk: Desk, case_no: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e["trigger"], e["actor"], e["data"]) for e in events(desk.hall, case_no)
            if e["trigger"] in ("deadline_warning", "overdue", "deem_accepted")]


def test_an_undecided_application_is_deemed_accepted_after_five_working_days(desk: Desk) -> None:
    case_no = window_submission(desk)  # Tuesday 11-24: acceptance due Tuesday 12-01
    assert view(desk.hall, case_no)["deadline"]["due"] == "2026-12-01"
    desk.advance(3)  # Friday 11-27: two working days left
    assert tick_twice(desk) == 1
    desk.advance(5)  # Wednesday 12-02
    assert tick_twice(desk) == 1
    case = view(desk.hall, case_no)
    assert (case["state"], case["promised_by"], len(case["tasks"])) == ("accepted", "2026-12-07", 1)
    warning, deemed = clock_events(desk, case_no)
    assert warning == ("deadline_warning", "clock:deadline-clock", {"kind": "acceptance", "due": "2026-12-01"})
    assert deemed[:2] == ("deem_accepted", "clock:deadline-clock")
    assert deemed[2]["promised_by"] == "2026-12-07" and deemed[2]["receipt_no"] == case["receipt_no"]
    assert document(desk.hall, case_no, "acceptance_receipt")["deemed"] is True


def test_the_completion_deadline_is_warned_then_flagged_each_once(desk: Desk) -> None:
    case_no = submit(desk.hall)["case_no"]  # promised by Friday 11-27
    assert tick_twice(desk) == 0  # three working days left: no warning yet
    desk.advance(1)
    assert tick_twice(desk) == 1
    desk.advance(5)  # Monday 11-30
    assert tick_twice(desk) == 1
    due = {"kind": "completion", "due": "2026-11-27"}
    assert clock_events(desk, case_no) == [("deadline_warning", "clock:deadline-clock", due),
                                           ("overdue", "clock:deadline-clock", due)]
    deadline = view(desk.hall, case_no)["deadline"]
    assert (deadline["warned"], deadline["overdue"]) == (True, True)


def test_a_suspended_case_is_never_overdue_and_resuming_moves_the_promise(
        open_desk: OpenDesk, simulator: SocialSecuritySimulator) -> None:
    desk = open_desk(clock=FixedClock(PINNED), sector_endpoints={"social_security": simulator.url})
    case_no = submit(desk.hall, copy.deepcopy(COMPLETE_APPLICATION))["case_no"]  # promised by 12-01
    drain(desk.gateway, lambda: str(desk.gateway.service.get(case_no).state) == "in_process")
    hearing = {"procedure": "hearing", "reason": "申请人对解除劳动合同原因有异议，组织听证"}
    suspended = ok(act(desk.other_clerk, case_no, "suspend", hearing))
    assert (suspended["state"], suspended["deadline"]["paused_since"]) == ("suspended", "2026-11-24")
    desk.advance(10)  # Friday 12-04, past the promise
    assert tick_twice(desk) == 0
    resumed = ok(act(desk.other_clerk, case_no, "resume", {"reason": "听证结束"}))
    assert (resumed["state"], resumed["promised_by"]) == ("in_process", "2026-12-11")  # 8 working days later
    assert last_event(desk.hall, case_no, "resume")["data"] == {"promised_by": "2026-12-11"}
    assert last_event(desk.hall, case_no, "suspend")["data"] == {"procedure": "hearing"}
    assert tick_twice(desk) == 0
    assert "overdue" not in triggers(desk.hall, case_no)


def test_a_sector_decision_during_a_special_procedure_is_not_lost(
        open_desk: OpenDesk, simulator: SocialSecuritySimulator) -> None:
    desk = open_desk(sector_endpoints={"social_security": simulator.url})
    case_no = submit(desk.hall, copy.deepcopy(COMPLETE_APPLICATION))["case_no"]
    drain(desk.gateway, lambda: str(desk.gateway.service.get(case_no).state) == "in_process")
    ok(act(desk.other_clerk, case_no, "suspend", {"procedure": "inspection", "reason": "核查原用人单位"}))
    time.sleep(0.1)  # the simulator's decision delay (50 ms) runs out: its next answer is a decision
    drain(desk.gateway, lambda: simulator.counters["queries_received"] >= 1)
    assert view(desk.hall, case_no)["state"] == "suspended"  # a special procedure holds the case
    ok(act(desk.other_clerk, case_no, "resume", {"reason": "核查完毕"}))
    drain(desk.gateway, lambda: str(desk.gateway.service.get(case_no).state) == "approved", timeout_s=2)


def test_the_back_office_can_suspend_its_own_case(desk: Desk) -> None:
    case_no = submit(desk.hall)["case_no"]
    suspended = act(desk.clerk, case_no, "suspend", {"procedure": "expert_review", "reason": "需专家论证房屋性质"})
    assert ok(suspended)["state"] == "suspended"


# --- 6. issuing, delivery, evaluation ----------------------------------------------------------------


def approved_case(desk: Desk) -> str:
    republish(desk.gateway, express_delivery=True)  # the shipped guide offers pickup only
    case_no = str(submit(desk.hall)["case_no"])
    ok(decide(desk, case_no, "approved", "符合提取条件"))
    return case_no


CERTIFICATE = {"name": "住房公积金提取到账通知", "number": "GJJ-TQ-2026-000123", "issuer": HOUSING_FUND_NAME}
EVALUATION = {"level": "very_satisfied", "channel": "mobile", "text": "一次办好"}


def test_the_result_is_issued_and_delivered_by_express_with_its_documents(desk: Desk) -> None:
    case_no = approved_case(desk)
    issued = ok(act(desk.issuing, case_no, "certificate", CERTIFICATE))
    assert (issued["state"], issued["certificate"]) == ("certificate_issued", {**CERTIFICATE, "valid_until": None})
    assert_problem(act(desk.issuing, case_no, "delivery", {"method": "express"}), 422, "case-rule-violated")
    closed = ok(act(desk.issuing, case_no, "delivery", {"method": "express", "tracking_no": "SF1234567890"}))
    assert (closed["state"], closed["completion"]) == ("closed", "出证办结")
    assert triggers(desk.hall, case_no)[-3:] == ["issue_certificate", "deliver", "close"]
    receipt = document(desk.issuing, case_no, "delivery_receipt")
    assert (receipt["title"], receipt["method"], receipt["tracking_no"]) == ("送达回证", "express", "SF1234567890")
    assert receipt["certificate"]["number"] == CERTIFICATE["number"]
    acceptance = document(desk.hall, case_no, "acceptance_receipt")
    assert (acceptance["receipt_no"], acceptance["promised_by"]) == (closed["receipt_no"], "2026-11-27")
    assert acceptance["accepted_by"] == "window:completeness-check"


def test_a_case_is_evaluated_once_and_only_when_closed(desk: Desk) -> None:
    case_no = approved_case(desk)
    assert_problem(act(desk.hall, case_no, "evaluation", EVALUATION), 409, "transition-not-allowed")
    ok(act(desk.issuing, case_no, "certificate", CERTIFICATE))
    ok(act(desk.issuing, case_no, "delivery", {"method": "pickup", "received_by": "李秀英"}))
    evaluated = ok(act(desk.hall, case_no, "evaluation", EVALUATION))
    assert evaluated["evaluation"] == EVALUATION
    assert_problem(act(desk.hall, case_no, "evaluation", {**EVALUATION, "level": "dissatisfied"}), 422,
                   "case-rule-violated")
    event = last_event(desk.hall, case_no, "evaluate")
    assert (event["actor"], event["data"]) == (f"applicant:{desk.who(desk.hall).id}",
                                               {"level": "very_satisfied", "channel": "mobile"})
    assert view(desk.hall, case_no)["evaluation"] == EVALUATION


# --- 7. withdrawal ------------------------------------------------------------------------------------


def test_the_applicant_withdraws_and_the_case_is_voided(desk: Desk) -> None:
    case_no = submit(desk.hall)["case_no"]
    closed = ok(act(desk.hall, case_no, "withdraw", {"reason": "已通过商业贷款付清房款"}))
    assert (closed["state"], closed["completion"]) == ("closed", "作废办结")
    withdraw, cancelled, close = events(desk.hall, case_no)[-3:]
    assert (withdraw["trigger"], withdraw["to_state"], withdraw["reason"]) == ("withdraw", "withdrawn",
                                                                              "已通过商业贷款付清房款")
    assert withdraw["actor"] == f"applicant:{desk.who(desk.hall).id}"
    # its one task, at the back office, ends with it; no sector system had it to be told
    assert (cancelled["trigger"], cancelled["data"]["sector_notice"]) == ("task_cancelled", "not_needed")
    assert closed["tasks"][0]["state"] == "cancelled"
    assert (close["trigger"], close["data"]) == ("close", {"completion": "作废办结"})
    assert_problem(decide(desk, case_no, "approved"), 409, "transition-not-allowed")


# --- 8. optimistic concurrency --------------------------------------------------------------------------


def test_if_match_admits_the_current_version_only(desk: Desk) -> None:
    created = desk.hall.post("/v1/cases", json=application())
    case_no, etag = created.json()["case_no"], created.headers["ETag"]
    assert etag == '"1"' and desk.clerk.get(f"/v1/cases/{case_no}").headers["ETag"] == etag
    approved = act(desk.clerk, case_no, "tasks/1/decision", {"decision": "approved"}, **{"If-Match": etag})
    assert ok(approved)["version"] == 2 and approved.headers["ETag"] == '"2"'
    stale = act(desk.issuing, case_no, "certificate", CERTIFICATE, **{"If-Match": etag})
    assert_problem(stale, 409, "stale-version")
    assert_problem(act(desk.issuing, case_no, "certificate", CERTIFICATE, **{"If-Match": "two"}), 422,
                   "case-rule-violated")
    after = view(desk.hall, case_no)
    assert (after["state"], after["version"], after["certificate"]) == ("approved", 2, None)
    assert triggers(desk.hall, case_no)[-1] == "approve"


# --- 9. agents, channels, the green channel -------------------------------------------------------------


AGENT = {"name": "张代办", "id_number": AGENT_ID, "agency_point": "哈达社区便民服务站"}


def test_a_village_agency_submission_names_its_agent(desk: Desk) -> None:
    body = application(channel="village_agency")
    assert_problem(desk.window.post("/v1/cases", json=body), 422, "invalid-application")
    case = submit(desk.window, {**body, "agent": AGENT})
    assert case["agent"] == {"name": "张代办", "id_number": "1502**********0010", "agency_point": "哈达社区便民服务站"}
    first = events(desk.window, case["case_no"])[0]
    assert (first["trigger"], first["actor"]) == ("submit", f"agent:{desk.who(desk.window).id}")
    assert first["data"]["channel"] == "village_agency"
    ok(act(desk.window, case["case_no"], "withdraw", {"reason": "申请人委托撤回"}))
    withdrawn = [e for e in events(desk.window, case["case_no"]) if e["trigger"] == "withdraw"]
    assert withdrawn[0]["actor"] == f"agent:{desk.who(desk.window).id}"  # the agent still acts, recorded so


@pytest.mark.parametrize(("caller", "channel"), [("hall", "city_window"), ("hall", "village_agency"),
                                                 ("window", "online_pc"), ("window", "mobile")])
def test_callers_submit_through_their_own_channels_only(desk: Desk, caller: str, channel: str) -> None:
    client: TestClient = getattr(desk, caller)
    answer = client.post("/v1/cases", json=application(channel=channel, agent=AGENT))
    assert_problem(answer, 403, "forbidden")
    assert outbox_rows(desk.gateway) == [] and desk.gateway.service.for_applicant(APPLICANT_ID) == []


def test_an_applicant_aged_60_goes_through_the_green_channel(desk: Desk) -> None:
    body = copy.deepcopy(COMPLETE_APPLICATION)
    body["applicant"]["id_number"] = ELDER_ID
    case = submit(desk.hall, body)
    assert (case["state"], case["green_channel"]) == ("accepted", ["aged_60_plus"])
    submit(desk.hall, copy.deepcopy(COMPLETE_APPLICATION))  # 41 years old: no priority
    row, younger = outbox_rows(desk.gateway)
    assert (row.operation, row.sector, row.priority, younger.priority) == ("submit_case", "social_security", 1, 0)
    with desk.gateway.service.uow(read_only=True) as uow:
        message = uow.outbox.get(row.id)
    assert message is not None
    payload = canonical_message(desk.gateway.service.get(case["case_no"]), message.task_id,
                                message.idempotency_key)
    assert payload["case"]["green_channel"] is True and payload["task"]["lead"] is True


def test_claimed_grounds_join_the_computed_one(desk: Desk) -> None:
    elder = {"name": "刘桂兰", "id_number": ELDER_ID}
    assert submit(desk.hall, application(applicant=elder, green_channel=["disabled"]))["green_channel"] == [
        "aged_60_plus", "disabled"]
    assert submit(desk.hall, application(green_channel=["pregnant"]))["green_channel"] == ["pregnant"]
    assert submit(desk.hall)["green_channel"] == []


# --- 10. "my cases" ------------------------------------------------------------------------------------


def test_an_applicant_finds_their_cases_and_no_answer_shows_the_id_number(desk: Desk) -> None:
    mine = [submit(desk.hall)["case_no"], submit(desk.hall, application(materials=("居民身份证",)))["case_no"]]
    other = submit(desk.hall, {**application(), "applicant": {"name": "赵敏", "id_number": AGENT_ID}})["case_no"]
    found = desk.hall.post("/v1/cases/lookup", json={"id_number": APPLICANT_ID})
    assert sorted(c["case_no"] for c in ok(found)["items"]) == sorted(mine)
    assert [c["case_no"] for c in ok(desk.window.post("/v1/cases/lookup", json={"id_number": AGENT_ID}))["items"]] == [
        other]
    answers = [found, desk.hall.get(f"/v1/cases/{mine[0]}"), desk.hall.get(f"/v1/cases/{mine[0]}/events"),
               desk.hall.get(f"/v1/cases/{mine[0]}/documents/acceptance_receipt"),
               desk.hall.get(f"/v1/cases/{mine[1]}/documents/supplement_notice")]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert APPLICANT_ID not in answer.text and APPLICANT_ID not in str(answer.headers)
    assert ok(desk.hall.post("/v1/cases/lookup", json={"id_number": ELDER_ID}))["items"] == []


# --- 11. uploaded materials ------------------------------------------------------------------------------


def test_a_case_refers_to_an_uploaded_material(desk: Desk) -> None:
    upload = desk.hall.post("/v1/materials", files={"file": ("购房合同.pdf", PDF, "application/pdf")})
    assert upload.status_code == 201, upload.text
    ref = upload.json()["ref"]
    assert upload.json()["media_type"] == "application/pdf"
    materials = [{"name": m, "file_ref": ref if m == "购房合同" else None} for m in HOUSING_MATERIALS]
    case = submit(desk.hall, {**application(), "materials": materials})
    uploaded = {"name": "购房合同", "file_ref": ref, "trust": "declared", "provenance": None}  # the applicant's word
    assert uploaded in case["materials"]
    assert uploaded in view(desk.clerk, case["case_no"])["materials"]


def test_an_unknown_file_ref_is_an_invalid_application(desk: Desk) -> None:
    materials = [{"name": "购房合同", "file_ref": "mat_" + "0" * 32}]
    answer = desk.hall.post("/v1/cases", json={**application(), "materials": materials})
    assert_problem(answer, 422, "invalid-application")
    assert desk.gateway.service.for_applicant(APPLICANT_ID) == []


def test_a_decided_task_cannot_be_decided_otherwise(desk: Desk) -> None:
    case_no = submit(desk.hall)["case_no"]
    ok(decide(desk, case_no, "approved", "符合提取条件"))
    assert decide(desk, case_no, "approved", "符合提取条件").status_code == 200  # the same again: no change
    changed = decide(desk, case_no, "denied", "改变主意")
    assert changed.status_code == 422 and "已作出决定" in changed.json()["detail"]
    assert view(desk.hall, case_no)["tasks"][0]["state"] == "approved"


def test_express_delivery_only_where_the_matter_offers_it(desk: Desk) -> None:
    case_no = str(submit(desk.hall)["case_no"])
    ok(decide(desk, case_no, "approved", "符合提取条件"))
    ok(act(desk.issuing, case_no, "certificate", CERTIFICATE))
    refused = act(desk.issuing, case_no, "delivery", {"method": "express", "tracking_no": "SF1"})
    assert refused.status_code == 422 and "快递" in refused.json()["detail"]
