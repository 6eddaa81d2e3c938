"""Materials cited from the electronic licence library (issue 18): the hall names a licence instead of uploading
a scan; intake asks the library (the named query `licence_lookup`, the real simulator on an ephemeral port)
and takes it only when it is valid and the applicant's own, keeping its provenance and trust level, which the
case view shows and the sectors' canonical message carries. A revoked, expired, unknown or other person's
licence is a 422 `licence-refused` that changes nothing; so is citing one when no library is connected."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.simulators.licence_library import LicenceLibrarySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.case import Actor, ActorKind, Certificate, TaskState
from gateway.persistence import tables as t
from gateway.sectors.delivery import canonical_message
from tests.support.applications import APPLICANT_ID, HOUSING_MATERIALS, application
from tests.support.gateways import Keys, drain
from tests.support.licences import HOLDER_ID, ISSUER, SECTOR, activate_library, licence

ID_CARD = "居民身份证"
OTHERS = tuple(m for m in HOUSING_MATERIALS if m != ID_CARD)


@dataclass
class Hall:
    gateway: Gateway
    client: TestClient
    keys: Keys
    library: LicenceLibrarySimulator

    def submit(self, materials: list[dict[str, Any]], key: str | None = None) -> httpx.Response:
        headers = {**self.keys.hall, **({"Idempotency-Key": key} if key else {})}
        return self.client.post("/v1/cases", json=application(materials=()) | {"materials": materials},
                                headers=headers)

    def cases_of_applicant(self) -> int:
        return len(self.gateway.service.for_applicant(APPLICANT_ID))


def citing(number: str) -> list[dict[str, Any]]:
    return [{"name": ID_CARD, "licence": {"number": number}}, *({"name": n} for n in OTHERS)]


@pytest.fixture
def hall(make_gateway: Callable[..., Gateway]) -> Iterator[Hall]:
    with LicenceLibrarySimulator() as library:
        gateway = make_gateway(bundles=(), sector_endpoints={SECTOR: library.url})
        activate_library(gateway)
        with TestClient(create_app(gateway)) as client:
            yield Hall(gateway, client, Keys.issue(gateway), library)


def test_a_cited_licence_is_confirmed_and_kept_with_its_provenance(hall: Hall) -> None:
    hall.library.shelve(licence("GA-150203-0001"))
    answer = hall.submit(citing("GA-150203-0001"))
    assert answer.status_code == 201, answer.text
    cited, *declared = answer.json()["materials"]
    assert cited["trust"] == "authoritative" and cited["file_ref"] is None
    provenance = cited["provenance"]
    assert {k: provenance[k] for k in ("source", "licence_number", "issuer", "valid_until", "document_ref")} == {
        "source": "licence_library", "licence_number": "GA-150203-0001", "issuer": ISSUER,
        "valid_until": "2036-01-01", "document_ref": "dzzzk://licences/GA-150203-0001"}
    assert provenance["fetched_at"].endswith("+00:00")  # stored in UTC
    assert [(m["trust"], m["provenance"]) for m in declared] == [("declared", None)] * len(OTHERS)
    assert hall.library.counters["lookups_received"] == 1

    case_no = answer.json()["case_no"]
    assert hall.client.get(f"/v1/cases/{case_no}", headers=hall.keys.hall).json()["materials"][0] == cited
    case = hall.gateway.service.get(case_no)
    sent = canonical_message(case, case.tasks[0].task_id, "k")["case"]["materials"]
    assert sent[0] == {**cited, "received": True}  # a sector knows where the material came from
    assert sent[1]["trust"] == "declared"
    with hall.gateway.engine.connect() as conn:  # the provenance names the licence, never its holder's ID number
        stored = conn.execute(select(t.cases.c.materials).where(t.cases.c.case_no == case_no)).scalar_one()
    assert "GA-150203-0001" in str(stored) and HOLDER_ID not in str(stored)


# Each refusal: the licence on the library's shelf (None: none by that number) and what the detail says.
REFUSALS = {"GA-1": (licence("GA-1", revoked=True), "已注销"),
            "GA-2": (licence("GA-2", valid_until=date(2020, 1, 1)), "已过有效期"),
            "GA-3": (licence("GA-3", holder_id="150203199001010015"), "不是申请人本人"),  # another person's
            "GA-4": (None, "没有可用的证照")}


def test_a_licence_the_case_cannot_take_is_refused_and_changes_nothing(hall: Hall) -> None:
    for number, (shelved, why) in REFUSALS.items():
        if shelved is not None:
            hall.library.shelve(shelved)
        answer = hall.submit(citing(number))
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert problem["type"] == "urn:yiwang:problem:licence-refused" and why in problem["detail"], number
        assert HOLDER_ID not in answer.text
    asked = hall.library.counters["lookups_received"]
    both = hall.submit([{"name": ID_CARD, "file_ref": "m-1", "licence": {"number": "GA-1"}}])
    assert both.status_code == 422  # an upload or a citation, not both: the library is not asked
    assert hall.library.counters["lookups_received"] == asked
    hall.library.set_fault("fault")  # a library that cannot be asked: as a query's sector, 503 with Retry-After
    unavailable = hall.submit(citing("GA-1"))
    assert unavailable.status_code == 503 and "Retry-After" in unavailable.headers
    assert hall.cases_of_applicant() == 0


def test_a_repeated_submission_replays_without_asking_the_library_again(hall: Hall) -> None:
    hall.library.shelve(licence("GA-150203-0003"))
    first = hall.submit(citing("GA-150203-0003"), key="retry-1")
    again = hall.submit(citing("GA-150203-0003"), key="retry-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert hall.library.counters["lookups_received"] == 1


def test_a_supplement_may_cite_a_licence(hall: Hall) -> None:
    hall.library.shelve(licence("GA-150203-0004"))
    case_no = hall.submit([{"name": n} for n in OTHERS]).json()["case_no"]
    supplied = hall.client.post(f"/v1/cases/{case_no}/supplement", headers=hall.keys.hall,
                                json={"materials": [{"name": ID_CARD, "licence": {"number": "GA-150203-0004"}}]})
    assert supplied.status_code == 200, supplied.text
    cited = next(m for m in supplied.json()["materials"] if m["name"] == ID_CARD)
    assert cited["trust"] == "authoritative"


def test_a_correction_of_the_id_number_confirms_the_cited_licences_again(hall: Hall) -> None:
    hall.library.shelve(licence("GA-150203-0005"))
    case_no = hall.submit(citing("GA-150203-0005")).json()["case_no"]  # complete: accepted at once
    before = hall.gateway.service.get(case_no)
    corrected = hall.client.post(f"/v1/cases/{case_no}/correction", headers=hall.keys.window,
                                 json={"reason": "证件号码录入有误", "applicant": {"id_number": "150203199001010015"}})
    assert corrected.status_code == 422 and "不是申请人本人" in corrected.json()["detail"]
    assert hall.gateway.service.get(case_no).version == before.version  # nothing changed


def test_a_correction_may_cite_a_licence_and_one_of_the_name_alone_asks_the_library_nothing(hall: Hall) -> None:
    hall.library.shelve(licence("GA-150203-0006"))
    case_no = hall.submit([{"name": n} for n in HOUSING_MATERIALS]).json()["case_no"]
    corrected = hall.client.post(f"/v1/cases/{case_no}/correction", headers=hall.keys.window,
                                 json={"reason": "身份证改为引用电子证照", "materials": citing("GA-150203-0006")})
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["materials"][0]["trust"] == "authoritative"
    renamed = hall.client.post(f"/v1/cases/{case_no}/correction", headers=hall.keys.window,
                               json={"reason": "姓名录入有误", "applicant": {"name": "李秀瑛"}})
    assert renamed.status_code == 200 and renamed.json()["materials"] == corrected.json()["materials"]
    assert hall.library.counters["lookups_received"] == 1


def test_citing_a_licence_without_a_connected_library_is_refused(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=())  # no active bundle answers licence_lookup
    with TestClient(create_app(gateway)) as client:
        answer = client.post("/v1/cases", json=application(materials=()) | {"materials": citing("GA-1")},
                             headers=Keys.issue(gateway).hall)
    assert answer.status_code == 422 and "未接入" in answer.json()["detail"]
    assert gateway.service.for_applicant(APPLICANT_ID) == []


def test_the_librarys_named_queries_answer_the_hall(hall: Hall) -> None:
    hall.library.shelve(licence("GA-150203-0007", revoked=True))
    by_number = hall.client.post("/v1/queries/licence_lookup", headers=hall.keys.hall,
                                 json={"params": {"number": "GA-150203-0007"}})
    assert by_number.status_code == 200, by_number.text
    assert by_number.json()["sector"] == SECTOR
    assert {k: by_number.json()["result"][k] for k in ("number", "status", "issuer")} == {
        "number": "GA-150203-0007", "status": "revoked", "issuer": ISSUER}
    held = hall.client.post("/v1/queries/licences_of_holder", headers=hall.keys.hall,
                            json={"params": {"id_type": "111", "id_number": HOLDER_ID}})
    assert held.status_code == 200 and [i["number"] for i in held.json()["result"]["items"]] == ["GA-150203-0007"]


def test_an_issued_certificate_is_filed_in_the_library_once_and_can_then_be_cited(hall: Hall) -> None:
    """The subscription end to end: the case event certificate_issued reaches the library as a guaranteed delivery
    (the library's receipt kept), and the licence it filed is one the hall may cite."""
    service, issuing = hall.gateway.service, Actor(ActorKind.ISSUING_WINDOW, "issuer")
    case_no = hall.submit([{"name": n} for n in HOUSING_MATERIALS]).json()["case_no"]
    service.decide_task(case_no, "1", TaskState.APPROVED, "准予提取", Actor(ActorKind.DEPARTMENT, "clerk"),
                        "12150200MB1A00020M")
    service.issue_certificate(case_no, Certificate("居民身份证", "GJJ-2026-0001", ISSUER, date(2031, 12, 6)), issuing)
    drain(hall.gateway, lambda: hall.library.licence("GJJ-2026-0001") is not None
          and hall.library.counters["registrations_received"] == 1)
    filed = hall.library.licence("GJJ-2026-0001")
    assert filed is not None
    assert (filed.holder_id_number, filed.issuer, filed.valid_until, filed.case_no) == (
        HOLDER_ID, ISSUER, date(2031, 12, 6), case_no)
    again = hall.submit(citing("GJJ-2026-0001"))
    assert again.status_code == 201 and again.json()["materials"][0]["trust"] == "authoritative"
