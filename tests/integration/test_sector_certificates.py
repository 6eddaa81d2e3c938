"""A sector's certificate reaches unified issuing, over real HTTP, on SQLite and PostgreSQL (issue 18).

The 电子证照 simulator (SM2 both ways, the shipped bundle) decides an application; its status answer names the
licence, its number and validity and its time of decision. The gateway keeps those on the task, shows the
sector's time beside ours on the timeline, fetches the licence (`fetch_certificate`, an outbox message like any
other) and prefills it for unified issuing (`certificate_draft`, 待出证). The issuing window issues it without
typing it; a number other than the sector's is refused. Where the matter says so (`auto_issue_electronic`) the
gateway issues the electronic licence itself. A fetch the sector refuses is a dead letter an operator replays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.e_licence import LICENCE_ISSUER, LICENCE_NAME
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.case import CaseState, Trigger
from gateway.domain.clock import SHANGHAI
from tests.support.cases import outbox_statuses
from tests.support.gateways import Keys, activate_shipped, drain
from tests.support.pki import shipped_credentials
from tests.support.simulators import ELicenceWithTestKeys

LICENCE_MATTER = "11150200MB0H00130B3000116001000"  # 就业创业证电子证照签发, 包头市政务服务和数据管理局
APPLICATION: dict[str, Any] = {
    "matter_code": LICENCE_MATTER,
    "applicant": {"name": "王建国", "id_number": "150203198503120039", "phone": "13847100001"},
    "materials": [{"name": "居民身份证"}, {"name": "纸质就业创业证"}],
    "form": {"licence_no": "15020300200000001", "issuing_authority": "包头市就业服务中心", "issue_date": "2026-06-01"},
}


@pytest.fixture
def sim() -> Iterator[ELicenceWithTestKeys]:
    with ELicenceWithTestKeys(0, 30) as running:
        yield running


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], sim: ELicenceWithTestKeys) -> Gateway:
    gateway = make_gateway(bundles=(), sector_endpoints={"e_licence": sim.url})
    shipped = shipped_credentials()
    for name in ("e_licence-signing", "e_licence-sector"):
        [credential] = shipped.trusted(name)
        gateway.certs.import_pem(name, credential.certificate_pem, credential.private_key_pem, sector="e_licence",
                                 actor="test")
    activate_shipped(gateway.bundles, "e_licence")
    return gateway


def submitted(hall: TestClient) -> str:
    answer = hall.post("/v1/cases", json=APPLICATION)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_no"])


def prefilled(gateway: Gateway, case_no: str) -> Callable[[], bool]:
    return lambda: gateway.service.get(case_no).certificate_draft is not None


def test_the_licence_is_fetched_prefilled_and_issued_at_the_window_with_the_sectors_time_beside_ours(
        gateway: Gateway, sim: ELicenceWithTestKeys) -> None:
    keys = Keys.issue(gateway)
    with TestClient(create_app(gateway), headers=keys.hall) as hall:
        case_no = submitted(hall)
        drain(gateway, prefilled(gateway, case_no))
        case = gateway.service.get(case_no)
        assert case.state is CaseState.APPROVED and sim.counters["licences_fetched"] == 1
        [task] = case.tasks
        assert task.result is not None and task.result.certificate_issued
        decided = task.result.decided_at
        assert decided is not None and decided.utcoffset() == timedelta(0)
        concluded = next(e for e in case.events if e.trigger is Trigger.TASK_CONCLUDED)
        assert decided <= concluded.at  # the sector decided; we learnt it at our next poll
        expected_until = date(decided.astimezone(SHANGHAI).year + 5, *decided.astimezone(SHANGHAI).timetuple()[1:3])
        assert task.result.certificate_valid_until == expected_until
        draft = case.certificate_draft
        assert draft is not None and (draft.sector, draft.task_id) == ("e_licence", "1")
        assert draft.certificate.number == task.result.certificate_number
        assert (draft.certificate.name, draft.certificate.issuer) == (LICENCE_NAME, LICENCE_ISSUER)
        assert draft.certificate.valid_until == expected_until and draft.file_ref and draft.file_ref.endswith(".ofd")
        assert ("fetch_certificate", "done") in outbox_statuses(gateway, case_no)

        timeline = hall.get(f"/v1/cases/{case_no}/events").json()["items"]
        shown = next(e for e in timeline if e["trigger"] == "task_concluded")
        assert datetime.fromisoformat(shown["sector_at"]) == decided and shown["sector_at"].endswith("+08:00")
        assert shown["data"]["sector_at"] == shown["sector_at"]  # every instant we send is Beijing time
        assert abs(datetime.fromisoformat(shown["at"]) - concluded.at) < timedelta(milliseconds=1)  # ours, shown
        assert all(e["sector_at"] is None for e in timeline if e["trigger"] != "task_concluded")
        view = hall.get(f"/v1/cases/{case_no}").json()
        assert view["certificate_draft"]["number"] == draft.certificate.number
        assert view["certificate_draft"]["label"] == "待出证" and view["certificate"] is None
        assert view["tasks"][0]["result"]["certificate_number"] == draft.certificate.number

        issuing = {"Authorization": keys.issuing["Authorization"]}
        other = {"name": LICENCE_NAME, "number": "NOT-THE-SECTORS", "issuer": LICENCE_ISSUER}
        refused = hall.post(f"/v1/cases/{case_no}/certificate", json=other, headers=issuing)
        assert refused.status_code == 422, refused.text
        assert refused.json()["type"].endswith("case-rule-violated") and "不一致" in refused.json()["detail"]
        assert gateway.service.get(case_no).certificate is None
        issued = hall.post(f"/v1/cases/{case_no}/certificate", headers=issuing)  # no body: the prefilled one
        assert issued.status_code == 200, issued.text
        assert issued.json()["state"] == "certificate_issued"
        assert issued.json()["certificate"]["number"] == draft.certificate.number
        delivered = hall.post(f"/v1/cases/{case_no}/delivery", json={"method": "pickup"}, headers=issuing)
        assert delivered.json()["state"] == "closed"
        receipt = hall.get(f"/v1/cases/{case_no}/documents/delivery_receipt").json()
        assert receipt["certificate"]["number"] == draft.certificate.number


def test_an_electronic_licence_is_issued_by_the_gateway_where_the_matter_says_so(gateway: Gateway) -> None:
    matter = gateway.catalogue.published(LICENCE_MATTER)
    assert matter is not None
    draft = gateway.catalogue.draft(replace(matter, auto_issue_electronic=True), "test")
    gateway.catalogue.publish(LICENCE_MATTER, draft.version, "test")
    keys = Keys.issue(gateway)
    with TestClient(create_app(gateway), headers=keys.hall) as hall:
        case_no = submitted(hall)
        drain(gateway, lambda: gateway.service.get(case_no).state is CaseState.CERTIFICATE_ISSUED)
        case = gateway.service.get(case_no)
        issue = case.events[-1]
        assert issue.trigger is Trigger.ISSUE_CERTIFICATE and str(issue.actor) == "system:gateway"
        assert case.certificate is not None and case.certificate_draft is not None
        assert case.certificate == case.certificate_draft.certificate
        delivered = hall.post(f"/v1/cases/{case_no}/delivery", json={"method": "pickup"},
                              headers={"Authorization": keys.issuing["Authorization"]})
        assert delivered.json()["state"] == "closed"  # awaiting delivery as usual, then done


def test_a_fetch_the_sector_refuses_is_a_dead_letter_an_operator_replays(
        gateway: Gateway, sim: ELicenceWithTestKeys) -> None:
    keys = Keys.issue(gateway)
    operator = {"Authorization": keys.operator["Authorization"]}
    with TestClient(create_app(gateway), headers=keys.hall) as hall:
        case_no = submitted(hall)
        drain(gateway, lambda: gateway.service.get(case_no).state is CaseState.APPROVED)
        sim.set_fault("fail")  # the licence service is down while the licence is fetched
        drain(gateway, lambda: ("fetch_certificate", "dead") in outbox_statuses(gateway, case_no))
        sim.set_fault(None)
        assert gateway.service.get(case_no).certificate_draft is None
        [letter] = hall.get("/v1/ops/dead-letters", params={"case_no": case_no}, headers=operator).json()["items"]
        assert letter["operation"] == "fetch_certificate"
        replayed = hall.post(f"/v1/ops/dead-letters/{letter['id']}/replay", json={"reason": "证照库已恢复"},
                             headers=operator)
        assert replayed.status_code == 200, replayed.text
        drain(gateway, prefilled(gateway, case_no))
