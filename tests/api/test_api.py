"""The unified endpoints: intake, completeness, idempotency, problem+json — on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import FixedClock
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from tests.support.gateways import COMPLETE_APPLICATION, PINNED, Keys

PROBLEM = "application/problem+json"


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway(clock=FixedClock(PINNED))


@pytest.fixture
def keys(gateway: Gateway) -> Keys:
    return Keys.issue(gateway)


@pytest.fixture
def hall(gateway: Gateway, keys: Keys) -> Iterator[TestClient]:
    """The online hall: every request carries the hall client's key."""
    with TestClient(create_app(gateway), headers=keys.hall) as client:
        yield client


def client_of(gateway: Gateway) -> TestClient:
    return TestClient(create_app(gateway), headers=Keys.issue(gateway).hall)


def count(gateway: Gateway, table: Any) -> int:
    with gateway.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def application(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(COMPLETE_APPLICATION)
    body.update(changes)
    return body


def test_a_complete_application_is_accepted_on_the_spot(hall: TestClient, gateway: Gateway) -> None:
    answer = hall.post("/v1/cases", json=application())
    assert answer.status_code == 201, answer.text
    case = answer.json()
    assert case["state"] == "accepted"
    assert case["case_no"] == "12150200MB1A00010L3000805001000" + "20261124" + "000001"
    assert case["receipt_no"] == "SL000805001000" + "20261124" + "000001"
    assert case["promised_by"] == "2026-12-01"  # Tuesday + 5 working days
    assert answer.headers["Location"] == f"/v1/cases/{case['case_no']}"
    assert count(gateway, t.outbox) == 1
    events = hall.get(f"/v1/cases/{case['case_no']}/events").json()["items"]
    assert [(e["trigger"], e["to_state"]) for e in events] == [("submit", "submitted"), ("accept", "accepted")]
    assert events[0]["at"] == "2026-11-24T10:00:00.000+08:00"  # shown in Beijing time, to the millisecond


def test_case_numbers_follow_the_beijing_date_and_a_daily_sequence(make_gateway: Callable[..., Gateway]) -> None:
    from datetime import datetime, timezone

    late_evening_utc = datetime(2026, 11, 24, 17, 30, tzinfo=timezone.utc)  # already the 25th in Beijing
    with client_of(make_gateway(clock=FixedClock(late_evening_utc))) as client:
        numbers = [client.post("/v1/cases", json=application()).json()["case_no"] for _ in range(2)]
    assert [n[31:] for n in numbers] == ["20261125000001", "20261125000002"]


def test_an_incomplete_application_lists_everything_missing_at_once(hall: TestClient, gateway: Gateway) -> None:
    answer = hall.post("/v1/cases", json=application(materials=[{"name": "居民身份证"}]))
    assert answer.status_code == 201
    case = answer.json()
    assert case["state"] == "supplement_required"
    assert case["missing_materials"] == ["解除或终止劳动合同证明", "本人银行账户"]
    assert case["receipt_no"] is None
    assert count(gateway, t.outbox) == 0  # nothing goes to the sector
    events = hall.get(f"/v1/cases/{case['case_no']}/events").json()["items"]
    assert events[-1]["data"] == {"missing": ["解除或终止劳动合同证明", "本人银行账户"], "round": 1}


def test_optional_materials_are_not_required(hall: TestClient) -> None:
    body = application(matter_code="12150200MB1A00010L3000805004000", materials=[{"name": "居民身份证"}])
    assert hall.post("/v1/cases", json=body).json()["state"] == "accepted"


def assert_problem(answer: Any, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    problem: dict[str, Any] = answer.json()
    assert problem["type"] == f"urn:yiwang:problem:{slug}"
    assert problem["status"] == status
    return problem


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        (application(matter_code="12150200MB1A00010L3999999999999"), 404, "unknown-matter"),
        (application(matter_code="short"), 422, "invalid-request"),
        ({"matter_code": COMPLETE_APPLICATION["matter_code"]}, 422, "invalid-request"),
        (application(applicant={"name": "王", "id_number": "150203198503120038"}), 422, "invalid-application"),
        (application(materials=[{"name": "户口簿"}]), 422, "invalid-application"),
        (application(unexpected="field"), 422, "invalid-request"),
    ],
)
def test_bad_applications_get_a_problem_and_store_nothing(
    hall: TestClient, gateway: Gateway, body: dict[str, Any], status: int, slug: str
) -> None:
    assert_problem(hall.post("/v1/cases", json=body), status, slug)
    assert count(gateway, t.cases) == 0 and count(gateway, t.outbox) == 0


def test_validation_errors_do_not_echo_personal_data(hall: TestClient) -> None:
    body = application(applicant={"name": "王建国", "id_number": "150203198503120039", "phone": "not-a-phone"})
    problem = assert_problem(hall.post("/v1/cases", json=body), 422, "invalid-request")
    assert "150203198503120039" not in json.dumps(problem, ensure_ascii=False)
    assert problem["errors"][0]["loc"] == ["body", "applicant", "phone"]


def test_invalid_json_is_a_400_problem(hall: TestClient, gateway: Gateway) -> None:
    answer = hall.post("/v1/cases", content=b'{"matter_code": ', headers={"content-type": "application/json"})
    assert_problem(answer, 400, "invalid-json")
    assert count(gateway, t.cases) == 0


def test_oversized_bodies_are_refused_before_parsing(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(max_body_bytes=2048)
    big = application(form={"note": "x" * 4096})
    with client_of(gateway) as client:
        assert_problem(client.post("/v1/cases", json=big), 413, "payload-too-large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold for streamed bodies too
            data = json.dumps(big).encode()
            for i in range(0, len(data), 512):
                yield data[i : i + 512]

        answer = client.post("/v1/cases", content=chunks(), headers={"content-type": "application/json"})
        assert_problem(answer, 413, "payload-too-large")
        assert client.post("/v1/cases", json=application()).status_code == 201  # a normal body still passes
    assert count(gateway, t.cases) == 1


def test_unknown_case_is_a_404_problem(hall: TestClient) -> None:
    assert_problem(hall.get("/v1/cases/NOPE"), 404, "case-not-found")
    assert_problem(hall.get("/v1/cases/NOPE/events"), 404, "case-not-found")


def test_the_hall_sees_personal_data_masked(hall: TestClient) -> None:
    case_no = hall.post("/v1/cases", json=application()).json()["case_no"]
    view = hall.get(f"/v1/cases/{case_no}").json()
    assert view["applicant"]["id_number"] == "1502**********0039"
    assert view["applicant"]["phone"] == "138****0001"


def test_a_retried_post_with_the_same_key_returns_the_first_case(hall: TestClient, gateway: Gateway) -> None:
    first = hall.post("/v1/cases", json=application(), headers={"Idempotency-Key": "k-1"})
    again = hall.post("/v1/cases", json=application(), headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(gateway, t.cases) == 1 and count(gateway, t.outbox) == 1


def test_the_same_key_with_another_body_is_a_422(hall: TestClient, gateway: Gateway) -> None:
    hall.post("/v1/cases", json=application(), headers={"Idempotency-Key": "k-2"})
    other = application(form={"insured_months": 12, "separation_date": "2026-10-31"})
    assert_problem(hall.post("/v1/cases", json=other, headers={"Idempotency-Key": "k-2"}), 422,
                   "idempotency-key-reused")
    assert count(gateway, t.cases) == 1


def test_another_identity_reusing_a_key_gets_a_case_of_its_own(hall: TestClient, gateway: Gateway) -> None:
    """A key belongs to the identity that sent it: another caller using the same key — with the same body or
    another — gets a new case, not the first caller's answer, and no 422 that would say the key was used."""
    first = hall.post("/v1/cases", json=application(), headers={"Idempotency-Key": "shared-1"}).json()
    hall.post("/v1/cases", json=application(), headers={"Idempotency-Key": "shared-2"})
    other_body = application(form={"insured_months": 12, "separation_date": "2026-10-31"})
    with TestClient(create_app(gateway), headers=Keys.of(gateway, Role.HALL_CLIENT, name="another hall")) as other:
        same = other.post("/v1/cases", json=application(), headers={"Idempotency-Key": "shared-1"})
        different = other.post("/v1/cases", json=other_body, headers={"Idempotency-Key": "shared-2"})
        retried = other.post("/v1/cases", json=application(), headers={"Idempotency-Key": "shared-1"})
    for answer in (same, different):
        assert answer.status_code == 201, answer.text
        assert "Idempotent-Replayed" not in answer.headers
    numbers = {first["case_no"], same.json()["case_no"], different.json()["case_no"]}
    assert len(numbers) == 3 and count(gateway, t.cases) == 4
    assert retried.headers["Idempotent-Replayed"] == "true" and retried.json() == same.json()  # its own answer
    again = hall.post("/v1/cases", json=application(), headers={"Idempotency-Key": "shared-1"})
    assert again.json() == first and again.headers["Idempotent-Replayed"] == "true"  # the first caller's still


def test_the_key_survives_a_restart(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(clock=FixedClock(PINNED))
    hall = Keys.issue(gateway).hall  # the same caller before and after: the key is that caller's
    with TestClient(create_app(gateway), headers=hall) as before:
        first = before.post("/v1/cases", json=application(), headers={"Idempotency-Key": "k-3"}).json()
    with TestClient(create_app(make_gateway(clock=FixedClock(PINNED))), headers=hall) as after:  # a new process
        again = after.post("/v1/cases", json=application(), headers={"Idempotency-Key": "k-3"})
    assert again.json()["case_no"] == first["case_no"]


def test_the_openapi_document_describes_problems(hall: TestClient) -> None:
    spec = hall.get("/openapi.json").json()
    responses = spec["paths"]["/v1/cases"]["post"]["responses"]
    assert {"201", "400", "404", "413", "422"} <= set(responses)
    assert "application/problem+json" in responses["404"]["content"]
