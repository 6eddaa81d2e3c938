"""ID and phone numbers are masked in answers for roles that do not need them; the roles that must use them
read them whole from one endpoint, and every such read is written to the audit log first."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from gateway.audit.ledger import Filters
from gateway.bootstrap.app import Gateway, create_app
from tests.support.applications import HOUSING_FUND, application
from tests.support.gateways import COMPLETE_APPLICATION, Keys

ID_NUMBER = COMPLETE_APPLICATION["applicant"]["id_number"]
PHONE = COMPLETE_APPLICATION["applicant"]["phone"]


def _reads(gateway: Gateway, case_no: str) -> list[str]:
    return [r.actor for r in gateway.ledger.records(Filters(kind="audit", action="read unmasked personal data",
                                                            case_no=case_no))]


def test_unmasked_reads_are_for_the_window_clerk_and_issuing_window_and_each_is_audited(
    make_gateway: Callable[..., Gateway]
) -> None:
    gateway = make_gateway(bundles=())  # the back office decides: the agency's clerk has the task
    keys = Keys.issue(gateway)
    client = TestClient(create_app(gateway))
    case_no = client.post("/v1/cases", json=COMPLETE_APPLICATION, headers=keys.hall).json()["case_no"]

    masked = client.get(f"/v1/cases/{case_no}", headers=keys.operator).json()["applicant"]
    assert masked["id_number"] != ID_NUMBER and masked["id_number"].endswith(ID_NUMBER[-4:])
    assert masked["phone"] != PHONE
    assert _reads(gateway, case_no) == []

    for headers in (keys.window, keys.clerk, keys.issuing):
        answer = client.get(f"/v1/cases/{case_no}/personal-data", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["applicant"]["id_number"] == ID_NUMBER
        assert answer.json()["applicant"]["phone"] == PHONE
    assert len(_reads(gateway, case_no)) == 3

    for headers in (keys.hall, keys.operator, keys.catalogue_admin):
        assert client.get(f"/v1/cases/{case_no}/personal-data", headers=headers).status_code == 403
    other_clerk = keys.clerk_of(gateway, "11150204MB0C00050L")  # a department without a task of this case
    assert client.get(f"/v1/cases/{case_no}/personal-data", headers=other_clerk).status_code == 403
    assert len(_reads(gateway, case_no)) == 3  # refused reads show nothing, so record no read


def test_a_number_typed_into_an_opinion_is_masked_in_case_and_event_answers(
    make_gateway: Callable[..., Gateway]
) -> None:
    gateway = make_gateway()  # housing-fund matters go to the back office: no housing-fund bundle is active
    keys = Keys.issue(gateway)
    client = TestClient(create_app(gateway))
    case = client.post("/v1/cases", json=application(), headers=keys.hall).json()
    opinion = f"申请人 {ID_NUMBER} 缴存不足，请致电 {PHONE}"
    answer = client.post(f"/v1/cases/{case['case_no']}/tasks/1/decision",
                         json={"decision": "denied", "opinion": opinion}, headers=keys.clerk_of(gateway, HOUSING_FUND))
    assert answer.status_code == 200, answer.text
    shown = answer.text + client.get(f"/v1/cases/{case['case_no']}/events", headers=keys.window).text
    assert "缴存不足" in shown and ID_NUMBER[-4:] in shown
    assert ID_NUMBER not in shown and PHONE not in shown
