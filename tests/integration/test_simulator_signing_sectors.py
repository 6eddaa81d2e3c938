"""The three signing sectors of issue 17 over real HTTP, driven by clients written from their pages
(tests/support/sector_clients.py): a correctly signed case is accepted and later decided; a wrong key, a
stale timestamp and a replayed nonce are each refused in the sector's own way and counted; 电子证照 signs
its answers (verified with its certificate); 社会救助 answers HTTP 200 with code/msg/data and epoch ms."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from adapters.simulators.e_licence import ELicenceSimulator
from adapters.simulators.employment import DEFAULT_APP_KEY, DEFAULT_SECRET, EmploymentSimulator
from adapters.simulators.social_assistance import DEFAULT_APPID, SocialAssistanceSimulator
from adapters.simulators.social_assistance import DEFAULT_SECRET as JZ_SECRET
from tests.support.pki import sm2_pair
from tests.support.sector_clients import (
    STALE_S,
    Signing,
    e_licence_answer_verifies,
    e_licence_call,
    employment_call,
    social_assistance_call,
)
from tests.support.simulators import KNOWN_ID, fetch_openapi, routes_match_document

DELAY_MS = 300
WRONG_SECRET = "wrong-" + DEFAULT_SECRET  # not the sector's: its signatures must be refused
OURS, THEIRS, STRANGER = sm2_pair("yiwang-gateway"), sm2_pair("e-licence-sector"), sm2_pair("x")


def wait_for_decision() -> None:
    time.sleep(DELAY_MS / 1000 + 0.05)


# --------------------------------------------------------------------------- 就业


@pytest.fixture
def employment() -> Iterator[EmploymentSimulator]:
    with EmploymentSimulator(decision_delay_ms=DELAY_MS) as simulator:
        yield simulator


def employment_application(request_id: str, employer: str = "") -> dict[str, object]:
    return {"requestId": request_id, "itemCode": "000805006000", "caseNo": "BT2026120700001",
            "applicant": {"name": "王芳", "idNumber": KNOWN_ID, "mobile": "13804720001"},
            "materials": [{"name": "居民身份证", "provided": True}],
            "formInfo": {"insuredEmployer": employer, "lastEmployer": "包头钢铁（集团）有限责任公司"},
            "acceptTime": "2026-12-07 09:30:00"}


def jy(sim: EmploymentSimulator, method: str, path: str, **options: object) -> httpx.Response:
    secret = options.pop("secret", DEFAULT_SECRET)
    return employment_call(sim.url, method, path, DEFAULT_APP_KEY, str(secret), **options)  # type: ignore[arg-type]


def test_employment_accepts_a_signed_case_and_decides_it(employment: EmploymentSimulator) -> None:
    api = fetch_openapi(employment)
    routes_match_document(employment, api)
    submitted = jy(employment, "POST", "/jyapi/v1/applications", document=employment_application("r-1"))
    assert submitted.status_code == 200, submitted.text
    api.check_response("/jyapi/v1/applications", submitted)
    apply_no = submitted.json()["data"]["applyNo"]
    again = jy(employment, "POST", "/jyapi/v1/applications", document=employment_application("r-1"))
    assert again.json()["data"]["applyNo"] == apply_no
    refused = jy(employment, "POST", "/jyapi/v1/applications", document=employment_application("r-2", "某公司"))
    status = jy(employment, "GET", "/jyapi/v1/applications/status", params={"applyNo": apply_no})
    assert status.json()["data"]["state"] in ("01", "02")  # not yet decided
    wait_for_decision()
    for reference, state in ((apply_no, "03"), (refused.json()["data"]["applyNo"], "04")):
        decided = jy(employment, "GET", "/jyapi/v1/applications/status", params={"applyNo": reference})
        api.check_response("/jyapi/v1/applications/status", decided)
        assert decided.json()["data"]["state"] == state and decided.json()["data"]["finishTime"]
    withdrawn = jy(employment, "POST", "/jyapi/v1/applications/withdraw", document={"applyNo": apply_no})
    assert withdrawn.json()["data"] == {"withdrawn": False}  # decided: too late
    counters = employment.counters
    assert (counters["cases_created"], counters["duplicate_submits"], counters["auth_failures"]) == (2, 1, 0)


def test_employment_refuses_a_wrong_key_a_stale_timestamp_and_a_replayed_nonce(employment: EmploymentSimulator) -> None:
    status = "/jyapi/v1/applications/status"
    wrong = jy(employment, "GET", status, params={"applyNo": "JY1"}, secret=WRONG_SECRET)
    stale = jy(employment, "GET", status, params={"applyNo": "JY1"}, signing=Signing(skew_s=STALE_S))
    once = Signing()
    first = jy(employment, "GET", status, params={"applyNo": "JY1"}, signing=once)
    replayed = jy(employment, "GET", status, params={"applyNo": "JY1"}, signing=once)
    assert first.status_code == 404  # signed right: on to the business, which knows no such case
    answers = [(r.status_code, r.json()["retCode"], r.json()["retMsg"]) for r in (wrong, stale, replayed)]
    assert answers == [(401, "401004", "签名校验失败"),
                       (401, "401003", "请求时间戳已过期（与服务器时间相差超过300秒）"),
                       (401, "401005", "重复请求：X-Nonce已使用")]
    assert employment.counters["auth_failures"] == 3


# --------------------------------------------------------------------------- 电子证照


@pytest.fixture
def e_licence() -> Iterator[ELicenceSimulator]:
    with ELicenceSimulator(decision_delay_ms=DELAY_MS, client_certificate_pem=OURS.cert_pem,
                           key_pem=THEIRS.key_pem, certificate_pem=THEIRS.cert_pem) as simulator:
        yield simulator


def issuance(serial: str, provided: bool = True) -> dict[str, object]:
    return {"serialNo": serial, "licenceType": "11100000000013338W001", "caseNo": "BT2026120700002",
            "holder": {"name": "王芳", "idNumber": KNOWN_ID},
            "materials": [{"name": "就业创业登记表", "provided": provided}],
            "surface": {"employmentStatus": "失业"}, "acceptTime": 1796607000000}


def dz(sim: ELicenceSimulator, method: str, path: str, **options: object) -> httpx.Response:
    key = options.pop("key", OURS.key_pem)
    return e_licence_call(sim.url, method, path, "yiwang-gateway", key, **options)  # type: ignore[arg-type]


def test_e_licence_accepts_a_signed_case_decides_it_and_signs_every_answer(e_licence: ELicenceSimulator) -> None:
    api = fetch_openapi(e_licence)
    routes_match_document(e_licence, api)
    submitted = dz(e_licence, "POST", "/dzzz/api/v1/issuance", document=issuance("s-1"))
    assert submitted.status_code == 200, submitted.text
    api.check_response("/dzzz/api/v1/issuance", submitted)
    refused = dz(e_licence, "POST", "/dzzz/api/v1/issuance", document=issuance("s-2", provided=False))
    wait_for_decision()
    issued = dz(e_licence, "GET", f"/dzzz/api/v1/issuance/{submitted.json()['data']['issueId']}")
    api.check_response("/dzzz/api/v1/issuance/{issueId}", issued)
    not_issued = dz(e_licence, "GET", f"/dzzz/api/v1/issuance/{refused.json()['data']['issueId']}")
    assert issued.json()["data"]["state"] == "ISSUED" and issued.json()["data"]["licenceNo"]
    assert not_issued.json()["data"]["state"] == "REFUSED" and "不予签发" in not_issued.json()["data"]["reason"]
    for answer in (submitted, refused, issued, not_issued):
        assert answer.headers["X-App-Id"] == "yiwang-gateway"
        assert e_licence_answer_verifies(answer, THEIRS.cert_pem)
        assert not e_licence_answer_verifies(answer, STRANGER.cert_pem)  # only the sector's key made it
    assert e_licence.counters["answers_signed"] == 4


def test_e_licence_refuses_a_wrong_key_a_stale_timestamp_and_a_replayed_nonce(e_licence: ELicenceSimulator) -> None:
    path = "/dzzz/api/v1/issuance/DZ1"
    wrong = dz(e_licence, "GET", path, key=STRANGER.key_pem)
    stale = dz(e_licence, "GET", path, signing=Signing(skew_s=STALE_S))
    once = Signing()
    assert dz(e_licence, "GET", path, signing=once).status_code == 404
    replayed = dz(e_licence, "GET", path, signing=once)
    answers = [(r.status_code, r.json()["resultCode"]) for r in (wrong, stale, replayed)]
    assert answers == [(401, "E4014"), (401, "E4013"), (401, "E4015")]
    assert all(e_licence_answer_verifies(r, THEIRS.cert_pem) for r in (wrong, stale, replayed))  # refusals signed
    assert e_licence.counters["auth_failures"] == 3


# --------------------------------------------------------------------------- 社会救助


@pytest.fixture
def social_assistance() -> Iterator[SocialAssistanceSimulator]:
    with SocialAssistanceSimulator(decision_delay_ms=DELAY_MS) as simulator:
        yield simulator


def application(req_no: str, id_no: str, income: str = "1200", savings: str = "5000") -> dict[str, str]:
    return {"req_no": req_no, "item_code": "000512001000", "case_no": "BT2026120700003", "name": "李娜",
            "id_no": id_no, "family_size": "3", "monthly_income": income, "savings": savings,
            "accept_time": "1796607000000"}


def jz(sim: SocialAssistanceSimulator, path: str, fields: dict[str, str], **options: object) -> httpx.Response:
    secret = options.pop("secret", JZ_SECRET)
    return social_assistance_call(sim.url, path, DEFAULT_APPID, str(secret), fields,
                                  **options)  # type: ignore[arg-type]


def test_social_assistance_answers_code_msg_data_in_200_and_decides(
        social_assistance: SocialAssistanceSimulator) -> None:
    sim = social_assistance
    api = fetch_openapi(sim)
    routes_match_document(sim, api)
    before = int(time.time() * 1000)
    accepted = jz(sim, "/shjz/open/v1/apply", application("q-1", KNOWN_ID))
    api.check_response("/shjz/open/v1/apply", accepted)
    assert (accepted.status_code, accepted.json()["code"]) == (200, 0)
    apply_id = accepted.json()["data"]["apply_id"]
    assert accepted.json()["data"]["accept_time"] == 1796607000000  # epoch ms as sent
    rich = jz(sim, "/shjz/open/v1/apply", application("q-2", "15020419850312152X", savings="90000"))
    second_for_same = jz(sim, "/shjz/open/v1/apply", application("q-3", KNOWN_ID))
    too_much = jz(sim, "/shjz/open/v1/apply", application("q-4", "150204198001011511", income="3000"))
    assert (second_for_same.json()["code"], too_much.json()["code"]) == (42002, 42001)
    assert too_much.status_code == 200 and too_much.json()["data"] is None
    assert too_much.json()["msg"].startswith("不符合救助条件")
    wait_for_decision()
    for reference, status in ((apply_id, "3"), (rich.json()["data"]["apply_id"], "4")):
        answer = jz(sim, "/shjz/open/v1/query", {"apply_id": reference})
        api.check_response("/shjz/open/v1/query", answer)
        data = answer.json()["data"]
        assert data["status"] == status and before <= data["decide_time"] <= int(time.time() * 1000)
    assert jz(sim, "/shjz/open/v1/cancel", {"apply_id": apply_id}).json()["data"] == {"cancelled": False}
    assert (sim.counters["cases_created"], sim.counters["business_errors"]) == (2, 2)


def test_social_assistance_refuses_by_code(social_assistance: SocialAssistanceSimulator) -> None:
    sim = social_assistance
    query = {"apply_id": "JZ1"}
    wrong = jz(sim, "/shjz/open/v1/query", query, secret=WRONG_SECRET)
    stale = jz(sim, "/shjz/open/v1/query", query, signing=Signing(skew_s=STALE_S))
    once = Signing()
    assert jz(sim, "/shjz/open/v1/query", query, signing=once).json()["code"] == 44001
    replayed = jz(sim, "/shjz/open/v1/query", query, signing=once)
    answers = [(r.status_code, r.json()) for r in (wrong, stale, replayed)]
    assert answers == [(200, {"code": 40001, "msg": "签名错误", "data": None}),
                       (200, {"code": 40002, "msg": "时间戳过期", "data": None}),
                       (200, {"code": 40003, "msg": "重复请求", "data": None})]
    assert sim.counters["auth_failures"] == 3
