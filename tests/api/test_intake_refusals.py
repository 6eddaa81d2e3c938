"""Intake refuses what can never be delivered (issue 14), over HTTP on SQLite and PostgreSQL.

Texts a person typed are normalised (NFC, trimmed) and refused when blank where a text is required, or when
they carry characters an XML 1.0 document cannot hold, control characters, non-characters or invisible format
characters; a form's declared `format`, pattern and bounds are enforced; an ID number in GB 11643 form must
carry a real birth date, not in the future and at most 120 years back. Each refusal is a 422 problem whose
`errors[].loc` names the field and whose `msg` says in Chinese what is wrong, and nothing is stored.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.bootstrap.app import Gateway, create_app
from gateway.cases.service import CaseService, SubmitCase
from gateway.domain import lifecycle
from gateway.domain.case import Actor, ActorKind, Applicant, SubmittedMaterial
from gateway.domain.clock import FixedClock
from gateway.domain.codes import id_number_check_char
from gateway.persistence import tables as t
from tests.support.gateways import COMPLETE_APPLICATION, PINNED, Keys

PROBLEM = "urn:yiwang:problem:"
UNEMPLOYMENT = str(COMPLETE_APPLICATION["matter_code"])  # 失业保险金申领 (social security)
HOUSING = "12150200MB1A00020M3000720001000"  # 住房公积金提取: back office, decided by the housing fund's clerk
HOUSING_FUND = "12150200MB1A00020M"
HOUSING_MATERIALS = [{"name": m} for m in ("居民身份证", "购房合同", "购房发票", "本人银行卡")]
AGENT = {"name": "张代办", "id_number": "150203199001010010", "agency_point": "哈达社区便民服务站"}
CHINESE = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Hall:
    gateway: Gateway
    hall: TestClient
    window: TestClient
    clerk: TestClient  # the housing fund's back office
    issuing: TestClient

    def post(self, client: TestClient, path: str, body: dict[str, Any]) -> httpx.Response:
        """JSON with \\u escapes for everything beyond ASCII: a lone surrogate travels as JSON allows it."""
        return client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})

    def submit(self, body: dict[str, Any], client: TestClient | None = None) -> dict[str, Any]:
        answer = self.post(client or self.hall, "/v1/cases", body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def cases(self) -> int:
        with self.gateway.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.cases)).scalar_one())


@pytest.fixture
def office(make_gateway: Callable[..., Gateway]) -> Hall:
    gateway = make_gateway(clock=FixedClock(PINNED))
    keys, app = Keys.issue(gateway), create_app(gateway)
    return Hall(gateway, TestClient(app, headers=keys.hall), TestClient(app, headers=keys.window),
                TestClient(app, headers=keys.clerk_of(gateway, HOUSING_FUND)), TestClient(app, headers=keys.issuing))


def application(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(COMPLETE_APPLICATION)
    body.update(changes)
    return body


def housing(**changes: Any) -> dict[str, Any]:
    return application(matter_code=HOUSING, materials=HOUSING_MATERIALS, form={}, **changes)


def refused(answer: httpx.Response, loc: list[Any], slug: str = "invalid-request") -> str:
    """The answer is a 422 `slug` problem naming `loc`; its message for that field (Chinese)."""
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["type"] == PROBLEM + slug, problem
    messages = [e["msg"] for e in problem.get("errors") or [] if e["loc"] == loc]
    assert messages, problem
    assert CHINESE.search(messages[0]), messages[0]
    return str(messages[0])


def with_applicant(**fields: Any) -> dict[str, Any]:
    body = application()
    body["applicant"] = {**body["applicant"], **fields}
    return body


# --- texts in a submission ------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "loc", "says"), [
    (with_applicant(name="王\x07建国"), ["applicant", "name"], "控制字符"),
    (with_applicant(name=" \u3000 "), ["applicant", "name"], "不能为空"),
    (with_applicant(name="王建\ud800国"), ["applicant", "name"], "代理"),
    (with_applicant(address="包头市\ufffe昆都仑区"), ["applicant", "address"], "非字符"),
    (with_applicant(legal_representative="\u202e国建王"), ["applicant", "legal_representative"], "格式控制"),
    (with_applicant(id_number="1502031985\x0003120039"), ["applicant", "id_number"], "控制字符"),
    (with_applicant(name="王建国\n王建军"), ["applicant", "name"], "一行"),
    (application(materials=[{"name": "居民身份证\u200b"}]), ["materials", 0, "name"], "格式控制"),
], ids=["bell", "blank", "surrogate", "noncharacter", "bidi-override", "nul", "line-break", "zero-width-space"])
def test_a_typed_text_that_cannot_be_delivered_is_refused_naming_its_field(
        office: Hall, body: dict[str, Any], loc: list[Any], says: str) -> None:
    message = refused(office.post(office.hall, "/v1/cases", body), ["body", *loc])
    assert says in message
    assert office.cases() == 0


def test_an_agents_typed_texts_are_refused_too(office: Hall) -> None:
    body = application(channel="village_agency", agent={**AGENT, "name": "张\x1b[31m代办"})
    assert "代办员" in refused(office.post(office.window, "/v1/cases", body), ["body", "agent", "name"])
    assert office.cases() == 0


def test_texts_are_kept_in_nfc_without_surrounding_blanks(office: Hall) -> None:
    decomposed = "Zoe\u0301 Ma"  # an e and a combining acute accent: NFC makes them one character, é
    case = office.submit(with_applicant(name=f"  {decomposed}\u3000", address=" 包头市昆都仑区钢铁大街 ",
                                        id_number=" 150203198503120039 "))
    shown = office.window.get(f"/v1/cases/{case['case_no']}/personal-data").json()["applicant"]
    assert (shown["name"], shown["address"], shown["id_number"]) == ("Zo\u00e9 Ma", "包头市昆都仑区钢铁大街",
                                                                    "150203198503120039")


def test_a_blank_optional_text_counts_as_not_given(office: Hall) -> None:
    case = office.submit(with_applicant(address="   "))
    assert office.window.get(f"/v1/cases/{case['case_no']}/personal-data").json()["applicant"]["address"] is None


# --- texts in the actions on a case ---------------------------------------------------------------------


def reviewed_case(office: Hall) -> str:
    """A housing-fund case a window reviews (the shipped guide accepts on the spot)."""
    matter = office.gateway.catalogue.published(HOUSING)
    assert matter is not None
    draft = office.gateway.catalogue.draft(replace(matter, auto_accept=False), "test")
    office.gateway.catalogue.publish(HOUSING, draft.version, "test")
    return str(office.submit(housing(channel="city_window"), office.window)["case_no"])


def unchanged(office: Hall, case_no: str, version: int) -> None:
    assert office.gateway.service.get(case_no).version == version


def test_window_and_back_office_texts_are_refused_and_change_nothing(office: Hall) -> None:
    case_no = reviewed_case(office)
    path = f"/v1/cases/{case_no}"
    refused(office.post(office.window, f"{path}/not-accept", {"reason": "材料\x00不实"}), ["body", "reason"])
    refused(office.post(office.window, f"{path}/supplement-request", {"missing": ["购房\x85合同"]}),
            ["body", "missing", 0])
    unchanged(office, case_no, 1)
    office.post(office.window, f"{path}/accept", {})
    refused(office.post(office.clerk, f"{path}/tasks/1/decision", {"decision": "denied", "opinion": "不符\u202e合"}),
            ["body", "opinion"])
    refused(office.post(office.clerk, f"{path}/suspend", {"procedure": "hearing", "reason": " \t "}),
            ["body", "reason"])
    unchanged(office, case_no, 2)


def test_issuing_and_evaluation_texts_are_refused_and_change_nothing(office: Hall) -> None:
    case_no = office.submit(housing())["case_no"]
    path = f"/v1/cases/{case_no}"
    assert office.post(office.clerk, f"{path}/tasks/1/decision", {"decision": "approved"}).status_code == 200
    certificate = {"name": "住房公积金提取到账通知\uffff", "number": "GJJ-TQ-2026-000123", "issuer": "包头市住房公积金管理中心"}
    refused(office.post(office.issuing, f"{path}/certificate", certificate), ["body", "name"])
    version = office.gateway.service.get(case_no).version
    other = office.submit(housing())["case_no"]
    refused(office.post(office.hall, f"/v1/cases/{other}/withdraw", {"reason": "不办了\ud83d"}), ["body", "reason"])
    assert office.post(office.hall, f"/v1/cases/{other}/withdraw", {"reason": "不办了"}).status_code == 200
    refused(office.post(office.hall, f"/v1/cases/{other}/evaluation",
                        {"level": "satisfied", "channel": "pc", "text": "很好\x08"}), ["body", "text"])
    unchanged(office, case_no, version)
    assert office.gateway.service.get(other).evaluation is None


def test_a_lookup_number_is_trimmed_and_a_control_character_refused(office: Hall) -> None:
    case_no = office.submit(application())["case_no"]
    found = office.post(office.hall, "/v1/cases/lookup", {"id_number": " 150203198503120039\t"})
    assert [c["case_no"] for c in found.json()["items"]] == [case_no], found.text
    refused(office.post(office.hall, "/v1/cases/lookup", {"id_number": "15020319850312\x000039"}),
            ["body", "id_number"])


def test_a_webhook_description_is_a_typed_text(office: Hall) -> None:
    """Checked where subscriptions are made, before the address (which here would not resolve)."""
    body = {"url": "https://hall.example.com/events", "events": ["*"], "description": "大厅\u202e事件"}
    answer = office.post(office.hall, "/v1/webhooks", body)
    assert answer.status_code == 422 and answer.json()["type"] == PROBLEM + "invalid-webhook", answer.text
    assert "格式控制" in answer.json()["detail"]


# --- a form's declared format, pattern and bounds -------------------------------------------------------


APPLICATION_FORM = {
    "type": "object",
    "required": ["employer_name", "separation_date"],
    "properties": {
        "employer_name": {"type": "string", "maxLength": 40, "title": "原用人单位名称"},
        "separation_date": {"type": "string", "format": "date", "title": "解除劳动关系日期"},
        "interview_at": {"type": "string", "format": "date-time", "title": "预约面谈时间"},
        "region_code": {"type": "string", "pattern": "^[0-9]{6}$", "title": "参保地行政区划代码"},
        "insured_months": {"type": "integer", "minimum": 12, "maximum": 600, "title": "累计缴费月数"},
        "dependants": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 5},
    },
    "additionalProperties": False,
}
GOOD_FORM = {"employer_name": "包头钢铁（集团）有限责任公司", "separation_date": "2026-10-31",
             "interview_at": "2026-12-01T09:30:00+08:00", "region_code": "150203", "insured_months": 36,
             "dependants": ["王小明"]}


@pytest.fixture
def form_office(office: Hall) -> Hall:
    """The unemployment guide republished with a form that declares formats, a pattern and bounds."""
    matter = office.gateway.catalogue.published(UNEMPLOYMENT)
    assert matter is not None
    draft = office.gateway.catalogue.draft(replace(matter, form_schema=APPLICATION_FORM), "test")
    office.gateway.catalogue.publish(UNEMPLOYMENT, draft.version, "test")
    return office


@pytest.mark.parametrize(("field", "value"), [
    pytest.param("separation_date", "2026-02-30", id="date-feb-30"),
    pytest.param("separation_date", "2026-13-01", id="date-month-13"),
    pytest.param("separation_date", "20261031", id="date-basic-form"),
    pytest.param("interview_at", "2026-02-30T09:30:00+08:00", id="date-time-feb-30"),
    pytest.param("interview_at", "2026-12-01T25:00:00+08:00", id="date-time-hour-25"),
    pytest.param("interview_at", "2026-12-01T09:30:00", id="date-time-no-offset"),
    pytest.param("region_code", "15020", id="pattern"),
    pytest.param("insured_months", 11, id="minimum"),
    pytest.param("insured_months", 601, id="maximum"),
    pytest.param("employer_name", "包" * 41, id="max-length"),
    pytest.param("dependants", ["a"] * 6, id="max-items"),
])
def test_a_forms_declared_format_pattern_and_bounds_are_enforced(form_office: Hall, field: str, value: Any) -> None:
    answer = form_office.post(form_office.hall, "/v1/cases", application(form={**GOOD_FORM, field: value}))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["type"] == PROBLEM + "invalid-application"
    assert [e["loc"] for e in problem["errors"]] == [["body", "form", field]]
    assert form_office.cases() == 0


def test_a_form_within_its_declarations_is_accepted(form_office: Hall) -> None:
    case = form_office.submit(application(form=GOOD_FORM))
    assert case["state"] == "accepted"


@pytest.mark.parametrize(("field", "value", "says"), [
    ("employer_name", "包头钢铁\x1f集团", "控制字符"),
    ("employer_name", "   ", "不能为空"),
    ("dependants", ["王小明", "\ufdd0"], "非字符"),
])
def test_a_forms_texts_are_typed_texts(form_office: Hall, field: str, value: Any, says: str) -> None:
    answer = form_office.post(form_office.hall, "/v1/cases", application(form={**GOOD_FORM, field: value}))
    loc = ["body", "form", field, 1] if isinstance(value, list) else ["body", "form", field]
    assert says in refused(answer, loc, "invalid-application")
    assert form_office.cases() == 0


def test_a_forms_texts_are_stored_normalised(form_office: Hall) -> None:
    case = form_office.submit(application(form={**GOOD_FORM, "employer_name": "  包头钢铁集团\u3000"}))
    assert form_office.gateway.service.get(case["case_no"]).form["employer_name"] == "包头钢铁集团"


MARRIAGE = "11150203MB0C0004054000113001000"  # 内地居民结婚登记: at the window, by appointment
MARRIAGE_MATERIALS = [{"name": m} for m in ("双方居民身份证", "无配偶及无禁止结婚亲属关系的签字声明", "双方近期半身免冠合影照片")]
APPOINTMENT = {"spouse_name": "李秀英", "spouse_id_number": "150203198807150026", "appointment_at": "2026-12-01T09:30:00+08:00"}


@pytest.mark.parametrize(("change", "accepted"), [
    ({}, True),
    ({"appointment_at": "2026-02-30T09:30:00+08:00"}, False),
    ({"appointment_at": "2026-12-01"}, False),
    ({"spouse_id_number": "15020319880715002"}, False),
])
def test_the_shipped_marriage_registration_checks_its_appointment(office: Hall, change: dict[str, Any],
                                                                  accepted: bool) -> None:
    body = application(matter_code=MARRIAGE, materials=MARRIAGE_MATERIALS, channel="city_window",
                       form={**APPOINTMENT, **change})
    answer = office.post(office.window, "/v1/cases", body)
    assert answer.status_code == (201 if accepted else 422), answer.text
    assert office.cases() == int(accepted)


# --- ID numbers in GB 11643 form carry a real birth date ---------------------------------------------------


def gb11643(first17: str) -> str:
    return first17 + id_number_check_char(first17)


def born(birth: str, region: str = "150203", sequence: str = "003") -> str:
    """A resident ID number (check digit right) of someone born on `birth` (YYYYMMDD)."""
    return gb11643(region + birth + sequence)


@pytest.mark.parametrize(("id_type", "number", "says"), [
    pytest.param("111", born("20260230"), "出生日期", id="resident-no-such-day"),
    pytest.param("111", born("20261125"), "出生日期", id="resident-born-tomorrow"),
    pytest.param("111", born("19061123"), "120", id="resident-over-120-years"),
    pytest.param("112", born("19850231"), "出生日期", id="temporary-no-such-day"),
    pytest.param("112", born("19850312")[:-1] + "0", "校验", id="temporary-check-digit"),
    pytest.param("154", born("20300101", "810000"), "出生日期", id="residence-permit-future"),
    pytest.param("553", gb11643("91584019851331001"), "出生日期",
                 id="permanent-residence-2023-month-13"),
    pytest.param("111", born("19850312")[:-1] + "0", "校验", id="resident-check-digit"),
])
def test_an_id_number_in_gb11643_form_must_carry_a_real_past_birth_date(
        office: Hall, id_type: str, number: str, says: str) -> None:
    answer = office.post(office.hall, "/v1/cases", with_applicant(id_type=id_type, id_number=number))
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["type"] == PROBLEM + "invalid-application"
    assert says in problem["detail"] and "申请人" in problem["detail"]
    assert office.cases() == 0


@pytest.mark.parametrize(("id_type", "number"), [
    ("111", born("19061124")),  # 120 years ago to the day (PINNED is 2026-11-24)
    ("111", born("20261124")),  # born today
    ("111", born("19850312", sequence="008").replace("X", "x")),  # a lower-case x is the same check character
    ("553", "USA150203850312"),  # the 2017 permanent residence card: 3 letters and 12 digits, its own form
    ("414", "E12345678"),  # a passport: no GB 11643 form
])
def test_real_birth_dates_and_other_id_types_are_accepted(office: Hall, id_type: str, number: str) -> None:
    office.submit(with_applicant(id_type=id_type, id_number=number))


def test_an_agents_id_number_must_carry_a_real_birth_date(office: Hall) -> None:
    body = application(channel="village_agency", agent={**AGENT, "id_number": born("19900230")})
    answer = office.post(office.window, "/v1/cases", body)
    assert answer.status_code == 422 and "代办员" in answer.json()["detail"], answer.text
    assert office.cases() == 0


# --- what was stored before stays as it is ----------------------------------------------------------------


def test_a_case_stored_before_with_now_refused_data_still_loads_shows_and_moves_on(office: Hall) -> None:
    """Written as an older gateway did, without today's checks: every reading path still works."""
    service = office.gateway.service
    matter = office.gateway.catalogue.published(UNEMPLOYMENT)
    assert matter is not None
    old = SubmitCase(UNEMPLOYMENT, Applicant("王\x07建国 ", "111", born("20260230"), address="  "),
                     tuple(SubmittedMaterial(m["name"]) for m in COMPLETE_APPLICATION["materials"]),
                     form={"insured_months": 36, "separation_date": "2026-02-30"})
    now = service.clock.now()
    case = CaseService._new_case(matter, old, now, 1)
    lifecycle.submit(case, matter, Actor(ActorKind.APPLICANT, "older-gateway"), now, service.calendar)
    with service.uow() as uow:
        uow.cases.add(case, now)
        uow.commit()

    shown = office.window.get(f"/v1/cases/{case.case_no}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["applicant"]["name"] == "王\x07建国 "
    assert office.window.get(f"/v1/cases/{case.case_no}/events").status_code == 200
    personal = office.window.get(f"/v1/cases/{case.case_no}/personal-data").json()["applicant"]
    assert (personal["id_number"], personal["address"]) == (born("20260230"), "  ")
    assert [c["case_no"] for c in office.post(office.hall, "/v1/cases/lookup",
                                              {"id_number": born("20260230")}).json()["items"]] == [case.case_no]
    accepted = office.post(office.window, f"/v1/cases/{case.case_no}/accept", {})
    assert accepted.status_code == 200 and accepted.json()["state"] == "accepted", accepted.text
    assert service.get(case.case_no).form == {"insured_months": 36, "separation_date": "2026-02-30"}
