"""The licence library simulator over real HTTP (adapters/simulators/licence_library.py, its page
docs/sectors/licence_library.md): registrations idempotent by requestId, malformed ones refused, lookups by
number and by holder with status, and the bearer token required."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from adapters.simulators.licence_library import DEFAULT_TOKEN, Licence, LicenceLibrarySimulator
from tests.support.simulators import fetch_openapi, routes_match_document

PATH = "/dzzzk/api/v1/licences"
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
HOLDER = {"name": "李秀英", "idType": "111", "idNumber": "150203198503120039"}


@pytest.fixture
def shelf() -> Iterator[LicenceLibrarySimulator]:
    with LicenceLibrarySimulator() as simulator:
        yield simulator


@pytest.fixture
def library(shelf: LicenceLibrarySimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shelf.url, headers=AUTH) as client:
        yield client


def registration(**changes: Any) -> dict[str, Any]:
    return {"requestId": "C1:event:3:licence_library", "licenceNo": "JY-0001", "licenceName": "就业创业证",
            "holder": HOLDER, "issuer": "包头市就业服务中心", "validUntil": "2031-12-06",
            "issuedAt": "2026-12-07T02:00:00+00:00", "caseNo": "C1", **changes}


def test_an_issued_certificate_is_filed_once_and_a_repeat_gets_its_receipt(library: httpx.Client) -> None:
    first = library.post(PATH, json=registration()).json()
    again = library.post(PATH, json=registration()).json()
    assert first["code"] == "0" and not first["data"]["duplicate"]
    assert again["data"] == {**first["data"], "duplicate": True}
    taken = library.post(PATH, json=registration(requestId="C2:event:1:licence_library")).json()
    assert taken["code"] == "E1003"


@pytest.mark.parametrize(("changes", "code"), [
    ({"issuer": None}, "E1001"),
    ({"holder": {"name": "李秀英"}}, "E1001"),
    ({"licenceNo": 17}, "E1002"),
    ({"validUntil": "2031/12/06"}, "E1002"),
])
def test_a_malformed_registration_is_refused_and_files_nothing(library: httpx.Client, changes: dict[str, Any],
                                                               code: str) -> None:
    refused = library.post(PATH, json=registration(**changes)).json()
    assert refused["code"] == code and refused["msg"]
    assert library.get(f"{PATH}/JY-0001").json()["code"] == "E4040"


def test_a_licence_is_answered_by_number_and_by_holder_with_its_status(library: httpx.Client,
                                                                     shelf: LicenceLibrarySimulator) -> None:
    library.post(PATH, json=registration())
    shelf.shelve(Licence("GA-0002", "居民身份证", "李秀英", "111", HOLDER["idNumber"], "包头市公安局",
                             valid_until=date(2020, 1, 1)))
    found = library.get(f"{PATH}/JY-0001").json()["data"]
    assert (found["status"], found["issuer"], found["validUntil"], found["docRef"]) == (
        "valid", "包头市就业服务中心", "2031-12-06", "dzzzk://licences/JY-0001")
    shelf.revoke("JY-0001")
    held = library.get(PATH, params={"idType": "111", "idNumber": HOLDER["idNumber"]}).json()["data"]
    assert {lic["licenceNo"]: lic["status"] for lic in held["licences"]} == {"JY-0001": "revoked",
                                                                             "GA-0002": "expired"}
    assert library.get(PATH, params={"idType": "111"}).json()["code"] == "E1001"


def test_without_the_token_nothing_is_answered(library: httpx.Client) -> None:
    refused = library.get(f"{PATH}/JY-0001", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.json()["code"] == "E4010"


def test_every_answer_is_what_the_published_document_says(library: httpx.Client,
                                                          shelf: LicenceLibrarySimulator) -> None:
    api = fetch_openapi(shelf)
    routes_match_document(shelf, api)
    api.check_request(PATH, "POST", registration())
    for answer in (library.post(PATH, json=registration()), library.post(PATH, json=registration(issuer=None))):
        api.check_response(PATH, answer)
    api.check_response(f"{PATH}/{{licenceNo}}", library.get(f"{PATH}/JY-0001"))
    api.check_response(f"{PATH}/{{licenceNo}}", library.get(f"{PATH}/NONE"))
    api.check_response(PATH, library.get(PATH, params={"idType": "111", "idNumber": HOLDER["idNumber"]}))
    api.check_response(f"{PATH}/{{licenceNo}}", library.get(f"{PATH}/JY-0001", headers={"Authorization": ""}))
