"""A named query's declared parameters at the hall's door (issue 18), on SQLite and PostgreSQL.

The shipped `housing_fund_balance` declares `id_number` (a string, required, pattern `id_number`: GB 11643 with
its check character). A missing, malformed or unknown parameter is a 422 `invalid-query-parameters` naming it,
before any sector call: the sector's address here is a closed port, so a call would have been a 503. A good call
reaches the simulator, and its request id is in the answer and on the message log's record of the exchange.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.housing_fund import HousingFundSimulator
from gateway.audit.ledger import MESSAGE, Filters
from gateway.bootstrap.app import Gateway, create_app
from tests.support.gateways import Keys

PERSON = "150203198503120039"  # well formed, check character included
QUERY = "/v1/queries/housing_fund_balance"


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def hall(make_gateway: Callable[..., Gateway]) -> Iterator[TestClient]:
    gateway = make_gateway(bundles=("housing_fund",), sector_endpoints={"housing_fund": closed_port()})
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as client:
        yield client


@pytest.mark.parametrize(("params", "errors"), [
    ({}, [{"name": "id_number", "msg": "必填参数缺失"}]),
    ({"id_number": PERSON[:-1] + "1"}, [{"name": "id_number", "msg": "不是有效的居民身份证号码（GB 11643，含校验码）"}]),
    ({"id_number": 150203198503120039}, [{"name": "id_number", "msg": "应为文本"}]),
    ({"id_number": PERSON, "idCard": PERSON}, [{"name": "idCard", "msg": "未声明的参数（可用参数：id_number）"}]),
])
def test_a_bad_parameter_is_a_422_naming_it_and_the_sector_is_not_called(
        hall: TestClient, params: dict[str, Any], errors: list[dict[str, str]]) -> None:
    answer = hall.post(QUERY, json={"params": params})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert body["type"] == "urn:yiwang:problem:invalid-query-parameters"
    assert body["errors"] == errors
    assert PERSON not in answer.text  # the caller's values are not echoed


def test_a_good_call_gets_a_request_id_in_the_answer_and_the_message_log(make_gateway: Callable[..., Gateway]) -> None:
    with HousingFundSimulator(decision_delay_ms=50) as sim:
        gateway = make_gateway(bundles=("housing_fund",), sector_endpoints={"housing_fund": sim.url})
        with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as hall:
            first = hall.post(QUERY, json={"params": {"id_number": PERSON}})
            second = hall.post(QUERY, json={"params": {"id_number": PERSON}})
    assert first.status_code == 200, first.text
    ids = [a.json()["request_id"] for a in (first, second)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]  # one per call
    logged = gateway.ledger.records(Filters(MESSAGE, sector="housing_fund"))
    keys = {(r.action, gateway.ledger.open_body(r)["idempotency_key"]) for r in logged
            if r.subject == "housing_fund_balance"}
    assert keys == {(direction, i) for direction in ("sent", "received") for i in ids}


def test_the_document_gives_the_declared_contract(hall: TestClient) -> None:
    operation = hall.get("/openapi.json").json()["paths"][QUERY]["post"]
    params = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["params"]
    assert params["additionalProperties"] is False and params["required"] == ["id_number"]
    id_number = params["properties"]["id_number"]
    assert id_number["type"] == "string" and id_number["pattern"] == "^[0-9]{17}[0-9Xx]$"
    assert "居民身份证号码" in id_number["description"] and "idCardNo" in id_number["description"]
