"""A breaker protects the sector, not against the hall (issue 14): what an open circuit, a hall's mistake in a
query and a refused credential do to queries and deliveries, through the running gateway against the real
simulators over HTTP, on both databases (and over RabbitMQ where the transport makes a difference)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.app import Gateway, create_app
from tests.conftest import Keys, drain
from tests.test_delivery import submit

SECTOR, HOUSING = "social_security", "housing_fund"
PERSON = "150203198503120039"  # a person every simulator knows
CONTRIBUTIONS, BALANCE = "social_insurance_contributions", "housing_fund_balance"


@pytest.fixture
def housing() -> Iterator[HousingFundSimulator]:
    with HousingFundSimulator(decision_delay_ms=50) as sim:
        yield sim


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator,
            housing: HousingFundSimulator) -> Gateway:
    return make_gateway(bundles=(SECTOR, HOUSING), sector_endpoints={SECTOR: simulator.url, HOUSING: housing.url})


def ask(gateway: Gateway, name: str, params: dict[str, Any]) -> Any:
    """The hall's synchronous query, over HTTP: the response."""
    with TestClient(create_app(gateway), headers=Keys.issue(gateway).hall) as hall:
        return hall.post(f"/v1/queries/{name}", json={"params": params})


def health(gateway: Gateway, sector: str) -> dict[str, Any]:
    return gateway.registry.health()[sector]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- the hall's mistakes

# Parameters no request to the sector can carry: missing, of a shape the mapping or the WSDL refuses, a
# character XML 1.0 cannot hold, an URL no HTTP server takes. Nothing is sent: the mistake is the hall's.
UNSENDABLE = [
    (CONTRIBUTIONS, {}),
    (CONTRIBUTIONS, {"id_number": {"nested": 1}}),
    (CONTRIBUTIONS, {"id_number": "1502\x0103198503120039"}),
    (BALANCE, {}),
    (BALANCE, {"id_number": ["150203198503120039"]}),
    (BALANCE, {"id_number": "1" * 70_000}),
]


def test_a_query_no_request_can_carry_is_the_halls_mistake_422_and_never_the_sectors_failure(
        gateway: Gateway, simulator: SocialSecuritySimulator, housing: HousingFundSimulator) -> None:
    for name, params in UNSENDABLE:
        answer = ask(gateway, name, params)
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["type"] == "urn:yiwang:problem:query-invalid", answer.text
    assert simulator.counters["raw_requests"] == housing.counters["raw_requests"] == 0  # nothing was sent
    for sector in (SECTOR, HOUSING):  # no call of the sector's, so no failure of it either
        seen = health(gateway, sector)
        assert (seen["calls"], seen["failures"], seen["breaker"]) == (0, 0, "closed"), seen
    assert ask(gateway, CONTRIBUTIONS, {"id_number": PERSON}).status_code == 200


# --------------------------------------------------------------------------- one breaker for each way in

def settled(gateway: Gateway, case_no: str) -> bool:
    """Decided by the sector, or dead (the test then says which)."""
    return str(gateway.service.get(case_no).state) == "approved" or bool(gateway.service.dead_letters(case_no))


def test_failing_queries_open_the_query_breaker_only_and_cases_still_go(
        gateway: Gateway, simulator: SocialSecuritySimulator) -> None:
    simulator.set_fault("fail", count=5)  # 2 queries x 3 attempts: the 5th failure opens the breaker
    for _ in range(2):
        assert ask(gateway, CONTRIBUTIONS, {"id_number": PERSON}).status_code == 503
    case_no = submit(gateway)  # the sector is back, and the deliveries' breaker never saw it fail
    drain(gateway, lambda: settled(gateway, case_no))
    assert gateway.service.dead_letters() == []
    assert str(gateway.service.get(case_no).state) == "approved"
    assert simulator.counters["cases_created"] == 1


def test_failing_deliveries_open_the_delivery_breaker_only_and_queries_still_answer(
        gateway: Gateway, simulator: SocialSecuritySimulator) -> None:
    simulator.set_fault("fail", count=5)  # 2 cases x 3 attempts: the 5th failure opens the breaker
    first, second = submit(gateway), submit(gateway)
    drain(gateway, lambda: bool(gateway.service.dead_letters(first)))
    drain(gateway, lambda: simulator.counters["raw_requests"] >= 5)
    assert health(gateway, SECTOR)["breaker"] == "open"
    answer = ask(gateway, CONTRIBUTIONS, {"id_number": PERSON})  # the sector is back for the hall
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["months_paid"] > 0
