"""The 公积金 simulator over real HTTP (httpx): OAuth2 client credentials, idempotent applications,
business errors inside HTTP 200, the delayed decision, cancellation, balance and paging, every
fault mode. Every JSON answer is checked against the shipped OpenAPI document."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from adapters.simulators.housing_fund import OPENAPI_FILE, HousingFundSimulator
from tests.support.simulators import (
    KNOWN_ID,
    OpenApi,
    eventually,
    fetch_openapi,
    routes_match_document,
    shipped_openapi_is_wellformed,
)

DELAY_MS = 240  # generous: the "before the decision" checks must hold on a loaded machine
APPLICATIONS = "/api/v2/applications"
TICKET = "/api/v2/applications/{ticketId}"
BALANCE = "/api/v2/accounts/{idCardNo}/balance"
DEPOSITS = "/api/v2/accounts/{idCardNo}/deposits"


def application(number: str = "A-1", **form: Any) -> dict[str, Any]:
    return {
        "bizType": "12150200MB1A00020M3000000001",
        "applicationNo": number,
        "applicant": {"fullName": "张三", "idCardNo": KNOWN_ID, "mobile": "13800138000"},
        "attachments": [{"title": "购房合同", "received": True}],
        "formData": form or {"amount": 50000, "house_price": 800000},
        "acceptedAt": 1_795_000_000_000,
        "priority": "GREEN",
    }


class Gjj:
    """A test client: gets a token, calls by path template, checks every JSON answer."""

    def __init__(self, sim: HousingFundSimulator, api: OpenApi) -> None:
        self.sim, self.api = sim, api
        self.http = httpx.Client(base_url=sim.url, timeout=5.0)
        self.token = self.new_token()

    def new_token(self, auth: tuple[str, str] = ("yiwang", "s3cret")) -> str:
        response = self.http.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "cases"}, auth=auth)
        self.api.check_response("/oauth/token", response)
        return str(response.json().get("access_token"))

    def call(self, method: str, template: str, *, token: str | None = None, check: bool = True, **kw: Any) -> httpx.Response:
        params = kw.pop("path", {})
        headers = {"Authorization": f"Bearer {token or self.token}", **kw.pop("headers", {})}
        response = self.http.request(method, template.format(**params), headers=headers, **kw)
        if check:
            self.api.check_response(template, response)
        return response

    def submit(self, request_id: str | None, body: dict[str, Any]) -> httpx.Response:
        headers = {"X-Request-Id": request_id} if request_id else {}
        return self.call("POST", APPLICATIONS, json=body, headers=headers)

    def status(self, ticket: str) -> httpx.Response:
        return self.call("GET", TICKET, path={"ticketId": ticket})


@pytest.fixture
def sim() -> Iterator[HousingFundSimulator]:
    with HousingFundSimulator(decision_delay_ms=DELAY_MS) as simulator:
        yield simulator


@pytest.fixture
def gjj(sim: HousingFundSimulator) -> Iterator[Gjj]:
    client = Gjj(sim, fetch_openapi(sim))
    yield client
    client.http.close()


# --------------------------------------------------------------------------- the document


def test_the_served_document_is_the_shipped_one_and_covers_every_route(sim: HousingFundSimulator) -> None:
    api = fetch_openapi(sim)
    routes_match_document(sim, api)
    shipped_openapi_is_wellformed(OPENAPI_FILE)
    flows = api.document["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == sim.token_url
    api.check_request(APPLICATIONS, "post", application())


# --------------------------------------------------------------------------- OAuth2


def test_token_flow_and_its_refusals(gjj: Gjj) -> None:
    token = gjj.http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("yiwang", "s3cret"))
    assert token.status_code == 200
    answer = token.json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 300 and len(answer["access_token"]) > 20
    assert token.headers["cache-control"] == "no-store"

    wrong = gjj.http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("yiwang", "nope"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    anonymous = gjj.http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert anonymous.status_code == 401
    grant = gjj.http.post("/oauth/token", data={"grant_type": "password"}, auth=("yiwang", "s3cret"))
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    for response in (wrong, anonymous, grant):
        gjj.api.check_response("/oauth/token", response)
    assert gjj.sim.counters["auth_failures"] == 2


def test_business_calls_need_a_valid_unexpired_token() -> None:
    with HousingFundSimulator(token_ttl_s=0.15) as simulator:
        client = Gjj(simulator, fetch_openapi(simulator))
        assert client.call("GET", BALANCE, path={"idCardNo": KNOWN_ID}).status_code == 200
        for token in ("made-up", client.token):
            if token == client.token:
                time.sleep(0.2)  # let it expire
            refused = client.call("GET", BALANCE, path={"idCardNo": KNOWN_ID}, token=token)
            assert refused.status_code == 401
            assert refused.json() == {"code": 401, "msg": "invalid_token"}
            assert refused.headers["www-authenticate"].startswith("Bearer")
        client.token = client.new_token()  # a fresh one works again
        assert client.call("GET", BALANCE, path={"idCardNo": KNOWN_ID}).status_code == 200
        no_header = client.http.get(BALANCE.format(idCardNo=KNOWN_ID))
        assert no_header.status_code == 401
        assert simulator.counters["auth_failures"] == 3 and simulator.counters["tokens_issued"] == 2


# --------------------------------------------------------------------------- applications


def test_submit_is_idempotent_on_the_request_id(gjj: Gjj) -> None:
    first = gjj.submit("req-1", application())
    assert first.status_code == 201
    ticket = first.json()["data"]["ticketId"]
    assert first.json()["code"] == 0 and ticket.startswith("GJJ") and len(ticket) == 13
    again = gjj.submit("req-1", application())
    assert (again.status_code, again.json()["data"]["ticketId"]) == (200, ticket)
    other = gjj.submit("req-2", application("A-2"))
    assert other.status_code == 201 and other.json()["data"]["ticketId"] != ticket
    counters = gjj.sim.counters
    assert (counters["submits_received"], counters["cases_created"], counters["duplicate_submits"]) == (3, 2, 1)


def test_concurrent_duplicates_make_one_ticket(gjj: Gjj) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        tickets = set(pool.map(lambda _: gjj.submit("race", application()).json()["data"]["ticketId"], range(12)))
    assert len(tickets) == 1 and gjj.sim.counters["cases_created"] == 1


def test_business_errors_are_code_in_200_and_not_remembered(gjj: Gjj) -> None:
    incomplete = application()
    del incomplete["applicant"]["idCardNo"]
    rejected = gjj.submit("req-x", incomplete)
    assert rejected.status_code == 200
    assert rejected.json()["code"] == 4001 and "applicant.idCardNo" in rejected.json()["msg"]
    assert "data" not in rejected.json()
    no_request_id = gjj.submit(None, application())
    assert (no_request_id.json()["code"], "X-Request-Id" in no_request_id.json()["msg"]) == (4001, True)
    bad_priority = gjj.submit("req-y", application() | {"priority": "URGENT"})
    bad_time = gjj.submit("req-z", application() | {"acceptedAt": True})
    assert bad_priority.json()["code"] == bad_time.json()["code"] == 4002
    assert gjj.sim.counters["cases_created"] == 0 and gjj.sim.counters["business_errors"] == 4

    accepted = gjj.submit("req-x", application())  # the corrected retry is a new case
    assert accepted.status_code == 201 and gjj.sim.counters["cases_created"] == 1


def test_a_body_that_is_not_a_json_object_is_400(gjj: Gjj) -> None:
    for body in (b"{not json", b"[1, 2]", b"[" * 5000 + b"]" * 5000):
        response = gjj.call("POST", APPLICATIONS, content=body, headers={"X-Request-Id": "r"})
        assert response.status_code == 400 and response.json()["code"] == 400
    assert gjj.sim.counters["cases_created"] == 0


def test_status_goes_pending_reviewing_then_approved(gjj: Gjj) -> None:
    ticket = gjj.submit("ok", application()).json()["data"]["ticketId"]
    pending = gjj.status(ticket).json()["data"]
    assert pending == {"ticketId": ticket, "status": "PENDING", "remark": pending["remark"], "decidedAt": None}
    time.sleep(DELAY_MS / 2000 + 0.005)
    assert gjj.status(ticket).json()["data"]["status"] in ("REVIEWING", "APPROVED")
    time.sleep(DELAY_MS / 2000 + 0.02)
    decided = gjj.status(ticket).json()["data"]
    assert (decided["status"], decided["remark"]) == ("APPROVED", "审核通过，款项将于3个工作日内到账")
    assert abs(datetime.now() - datetime.fromtimestamp(decided["decidedAt"] / 1000)) < timedelta(seconds=5)
    assert gjj.status(ticket).json()["data"] == decided  # decided once


def test_withdrawing_more_than_the_house_costs_is_rejected(gjj: Gjj) -> None:
    ticket = gjj.submit("deny", application(amount="900000.00", house_price="800000")).json()["data"]["ticketId"]
    time.sleep(DELAY_MS / 1000 + 0.02)
    decided = gjj.status(ticket).json()["data"]
    assert (decided["status"], decided["remark"]) == ("REJECTED", "提取金额超过购房款")
    assert gjj.sim.counters["queries_received"] == 1


def test_custom_decide_and_unknown_ticket() -> None:
    seen: list[dict[str, Any]] = []
    with HousingFundSimulator(decision_delay_ms=0, decide=lambda f: (seen.append(f), (False, "自定义"))[1]) as simulator:
        client = Gjj(simulator, fetch_openapi(simulator))
        ticket = client.submit("c", application()).json()["data"]["ticketId"]
        assert client.status(ticket).json()["data"]["remark"] == "自定义"
        client.status(ticket)
        missing = client.status("GJJ9999999999")
        assert (missing.status_code, missing.json()["code"]) == (404, 404)
    assert len(seen) == 1 and seen[0]["applicant"]["fullName"] == "张三"


def test_cancel_before_and_after_the_decision(gjj: Gjj) -> None:
    early = gjj.submit("c1", application()).json()["data"]["ticketId"]
    cancel = gjj.call("DELETE", TICKET, path={"ticketId": early})
    assert cancel.json() == {"code": 0, "msg": "ok", "data": {"cancelled": True}}
    assert gjj.status(early).status_code == 404  # withdrawn: gone
    assert gjj.call("DELETE", TICKET, path={"ticketId": early}).json()["data"] == {"cancelled": True}

    late = gjj.submit("c2", application("A-2")).json()["data"]["ticketId"]
    time.sleep(DELAY_MS / 1000 + 0.02)
    assert gjj.call("DELETE", TICKET, path={"ticketId": late}).json()["data"] == {"cancelled": False}
    assert gjj.status(late).json()["data"]["status"] == "APPROVED"
    assert gjj.call("DELETE", TICKET, path={"ticketId": "GJJ0000000999"}).status_code == 404
    assert gjj.sim.counters["cancels_received"] == 4


# --------------------------------------------------------------------------- accounts


def test_balance_of_a_known_and_an_unknown_person(gjj: Gjj) -> None:
    known = gjj.call("GET", BALANCE, path={"idCardNo": KNOWN_ID}).json()
    assert known["code"] == 0 and known["data"]["currency"] == "CNY" and known["data"]["status"] == "NORMAL"
    assert known == gjj.call("GET", BALANCE, path={"idCardNo": KNOWN_ID}).json()  # stable
    unknown = gjj.call("GET", BALANCE, path={"idCardNo": "not-a-person"})
    assert unknown.status_code == 200 and unknown.json() == {"code": 4040, "msg": "未查询到缴存账户"}


def test_paging_through_all_57_deposits(gjj: Gjj) -> None:
    months: list[str] = []
    page = 1
    while True:
        answer = gjj.call("GET", DEPOSITS, path={"idCardNo": KNOWN_ID}, params={"page": page, "pageSize": 20}).json()
        data = answer["data"]
        assert (data["page"], data["pageSize"], data["total"]) == (page, 20, 57)
        months += [item["month"] for item in data["items"]]
        if page * 20 >= data["total"]:
            break
        page += 1
    assert page == 3 and len(months) == 57 == len(set(months))
    assert months == sorted(months, reverse=True)  # newest first
    assert months[0] == (datetime.now().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    beyond = gjj.call("GET", DEPOSITS, path={"idCardNo": KNOWN_ID}, params={"page": 4, "pageSize": 20}).json()
    assert beyond["data"]["items"] == []
    default = gjj.call("GET", DEPOSITS, path={"idCardNo": KNOWN_ID}).json()["data"]
    assert (default["page"], default["pageSize"], len(default["items"])) == (1, 20, 20)
    for params in ({"page": 0}, {"pageSize": 101}, {"page": "x"}):
        bad = gjj.call("GET", DEPOSITS, path={"idCardNo": KNOWN_ID}, params=params).json()
        assert bad["code"] == 4002
    unknown = gjj.call("GET", DEPOSITS, path={"idCardNo": "nobody"}).json()
    assert unknown["code"] == 4040


# --------------------------------------------------------------------------- faults


def test_fail_fault_and_rate_limit_modes(gjj: Gjj) -> None:
    gjj.sim.set_fault("fail", count=1)
    dead = gjj.call("POST", APPLICATIONS, json=application(), headers={"X-Request-Id": "f"}, check=False)
    assert dead.status_code == 503 and "text/html" in dead.headers["content-type"]
    gjj.sim.set_fault("fault", count=1)
    broken = gjj.call("POST", APPLICATIONS, json=application(), headers={"X-Request-Id": "f"})
    assert broken.status_code == 500 and broken.json()["code"] == 500
    gjj.sim.set_fault("rate_limit", count=1)
    limited = gjj.call("GET", BALANCE, path={"idCardNo": KNOWN_ID})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert gjj.submit("f", application()).status_code == 201
    assert gjj.sim.counters["cases_created"] == 1 and gjj.sim.counters["faults_injected"] == 3


def test_the_token_endpoint_is_outside_the_fault_plan(gjj: Gjj) -> None:
    gjj.sim.set_fault("fail")
    assert gjj.new_token()
    assert gjj.call("GET", BALANCE, path={"idCardNo": KNOWN_ID}, check=False).status_code == 503


def test_malformed_and_hostile_answers(gjj: Gjj) -> None:
    gjj.sim.set_fault("malformed", count=1)
    truncated = gjj.call("GET", BALANCE, path={"idCardNo": KNOWN_ID}, check=False)
    assert truncated.status_code == 200 and truncated.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        truncated.json()
    gjj.sim.set_fault("hostile", count=1)
    hostile = gjj.call("GET", BALANCE, path={"idCardNo": KNOWN_ID}, check=False)
    assert hostile.status_code == 200 and hostile.content.count(b"[") == 100_000
    with pytest.raises(RecursionError):
        hostile.json()


def test_slow_mode_applies_the_case_even_when_the_client_gives_up(gjj: Gjj) -> None:
    gjj.sim.set_fault("slow", count=1, slow_ms=300)
    with pytest.raises(httpx.ReadTimeout):
        gjj.call("POST", APPLICATIONS, json=application(), headers={"X-Request-Id": "slow"}, timeout=0.1)
    assert eventually(lambda: gjj.sim.counters["cases_created"] == 1)
    retry = gjj.submit("slow", application())
    assert retry.status_code == 200  # the retry finds the applied case
    counters = gjj.sim.counters
    # raw: the document, the token, the abandoned POST and its retry; applied: one
    assert (counters["raw_requests"], counters["submits_received"], counters["cases_created"]) == (4, 2, 1)


def test_unknown_paths_and_methods(gjj: Gjj) -> None:
    assert gjj.call("GET", "/api/v3/nothing", check=False).status_code == 404
    wrong = gjj.call("PUT", APPLICATIONS, check=False)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
