"""A breaker protects the sector, not against the hall (issue 14): what an open circuit, a hall's mistake in a
query and a refused credential do to queries and deliveries, through the running gateway against the real
simulators over HTTP, on both databases (and over RabbitMQ where the transport makes a difference)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.registry import default_bundles_dir
from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.audit.ledger import MESSAGE, Filters
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.clock import as_utc
from gateway.persistence import tables as t
from gateway.sectors.bundle_records import pack_folder
from gateway.transport.amqp import queue_name
from tests.support.broker import eventually, queue_depth, running
from tests.support.cases import submit
from tests.support.gateways import Keys, drain
from tests.support.services import rabbitmq_vhost

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


def tune(gateway: Gateway, sector: str, folder: Path, **lines: str) -> None:
    """Register and activate the shipped bundle with some top-level lines of its descriptor replaced, as a sector
    team would for a test deployment (e.g. `circuit_breaker="{failure_threshold: 5, reset_after_ms: 300}"`)."""
    bundle = folder / f"{sector}-tuned"
    shutil.copytree(default_bundles_dir() / sector, bundle)
    descriptor = bundle / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    for key, value in {**lines, "version": '"tuned-1"'}.items():
        text, found = re.subn(rf"(?m)^{key}: .*$", f"{key}: {value}", text)
        assert found == 1, key
    descriptor.write_text(text, encoding="utf-8")
    version = gateway.bundles.register(pack_folder(bundle), "test").version
    gateway.bundles.activate(sector, version, "test", force=True)


# --------------------------------------------------------------------------- the hall's mistakes

# Parameters no request to the sector can carry: missing, of a shape the mapping or the WSDL refuses, a
# character XML 1.0 cannot hold (refused at the door, as every typed text is), an URL no HTTP server takes.
# Nothing is sent: the mistake is the hall's. The shipped queries declare their parameters, so their contract
# refuses these (`invalid-query-parameters`); copies declaring none leave it to the rendering (`query-invalid`).
QUERY_INVALID, TEXT_REFUSED = "urn:yiwang:problem:query-invalid", "urn:yiwang:problem:invalid-request"
BAD_PARAMETERS = "urn:yiwang:problem:invalid-query-parameters"
UNSENDABLE = [
    (CONTRIBUTIONS, {}, QUERY_INVALID),
    (CONTRIBUTIONS, {"id_number": {"nested": 1}}, QUERY_INVALID),
    (CONTRIBUTIONS, {"id_number": "1502\x0103198503120039"}, TEXT_REFUSED),
    (BALANCE, {}, QUERY_INVALID),
    (BALANCE, {"id_number": ["150203198503120039"]}, QUERY_INVALID),
    (BALANCE, {"id_number": "1" * 70_000}, QUERY_INVALID),
]


def undeclared(gateway: Gateway, sector: str, folder: Path) -> None:
    """Activate a copy of the shipped bundle whose queries declare no parameters (as before issue 18)."""
    bundle = folder / f"{sector}-undeclared"
    shutil.copytree(default_bundles_dir() / sector, bundle)
    for mapping in bundle.glob("*.mapping.yaml"):
        text = mapping.read_text(encoding="utf-8")
        mapping.write_text(re.sub(r"(?m)^parameters:.*\n(?:  .*\n)*", "", text), encoding="utf-8")
    descriptor = bundle / "bundle.yaml"
    descriptor.write_text(re.sub(r'(?m)^version: ".*"', 'version: "undeclared-1"',
                                 descriptor.read_text(encoding="utf-8")), encoding="utf-8")
    gateway.bundles.activate(sector, gateway.bundles.register(pack_folder(bundle), "test").version, "test",
                             force=True)


def test_a_query_no_request_can_carry_is_the_halls_mistake_422_and_never_the_sectors_failure(
        gateway: Gateway, simulator: SocialSecuritySimulator, housing: HousingFundSimulator, tmp_path: Path) -> None:
    for declared in (True, False):
        if not declared:
            for sector in (SECTOR, HOUSING):
                undeclared(gateway, sector, tmp_path)
        for name, params, problem in UNSENDABLE:
            answer = ask(gateway, name, params)
            assert answer.status_code == 422, (name, answer.text)
            expected = BAD_PARAMETERS if declared and problem == QUERY_INVALID else problem
            assert answer.json()["type"] == expected, answer.text
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


def test_a_querys_retry_after_is_the_time_until_its_breaker_may_close(
        gateway: Gateway, simulator: SocialSecuritySimulator, tmp_path: Path) -> None:
    tune(gateway, SECTOR, tmp_path, circuit_breaker="{failure_threshold: 3, reset_after_ms: 30000}")
    simulator.set_fault("fail")
    opened = ask(gateway, CONTRIBUTIONS, {"id_number": PERSON})  # its 3 attempts open the breaker
    time.sleep(1.2)
    refused = ask(gateway, CONTRIBUTIONS, {"id_number": PERSON})  # refused without a call
    assert (opened.status_code, refused.status_code) == (503, 503)
    assert refused.json()["type"] == "urn:yiwang:problem:sector-unavailable"
    assert simulator.counters["raw_requests"] == 3
    assert 29 <= int(opened.headers["Retry-After"]) <= 30
    assert 27 <= int(refused.headers["Retry-After"]) <= 29  # the breaker's remaining time, a second later


def test_a_version_test_refused_by_its_own_open_breaker_does_not_count_as_reachable(
        gateway: Gateway, simulator: SocialSecuritySimulator, tmp_path: Path) -> None:
    tune(gateway, SECTOR, tmp_path, circuit_breaker="{failure_threshold: 1, reset_after_ms: 30000}")
    simulator.set_fault("fail")  # the probe's first 503 opens the breaker; its next attempt is refused
    result = gateway.sector_calls.test_version(SECTOR, "tuned-1").public()["test_result"]
    assert result["reachable"] is False, result


# --------------------------------------------------------------------------- credentials are not health


def test_a_sector_back_with_other_credentials_leaves_no_breaker_half_open(
        make_gateway: Callable[..., Gateway], housing: HousingFundSimulator, tmp_path: Path) -> None:
    gateway = make_gateway(bundles=(HOUSING,), sector_endpoints={HOUSING: housing.url})
    tune(gateway, HOUSING, tmp_path, circuit_breaker="{failure_threshold: 5, reset_after_ms: 300}")
    assert ask(gateway, BALANCE, {"id_number": PERSON}).status_code == 200  # a token is fetched and cached
    housing.set_fault("fail")
    for _ in range(2):  # 2 queries x 3 attempts: the breaker opens
        assert ask(gateway, BALANCE, {"id_number": PERSON}).status_code == 503
    port = housing.port
    housing.stop()  # the sector comes back from its maintenance with a new client secret
    with HousingFundSimulator(port=port, client_secret="rotated-during-maintenance") as back:
        time.sleep(0.35)  # past reset_after: the next query is the trial
        answer = ask(gateway, BALANCE, {"id_number": PERSON})
        assert answer.status_code == 502 and answer.json()["type"] == "urn:yiwang:problem:sector-auth-failed"
        assert back.counters["auth_failures"] >= 1
        seen = health(gateway, HOUSING)
        assert seen["query_breaker"] == "closed", seen  # the sector answered: not left on trial for ever
        assert seen["sector_failures"] == 5  # the 503s that opened it: refused credentials are not its health


# --------------------------------------------------------------------------- a case meets an open circuit

BRIEF_OUTAGE = "{failure_threshold: 5, reset_after_ms: 3000}"  # the breaker may close 3 s after it opened


def submitted(gateway: Gateway, case_no: str) -> Any:
    """The case's submit_case outbox row."""
    with gateway.engine.connect() as conn:
        return conn.execute(select(t.outbox).where(t.outbox.c.case_no == case_no,
                                                   t.outbox.c.operation == "submit_case")).one()


def approved(gateway: Gateway, *case_nos: str) -> bool:
    return all(str(gateway.service.get(c).state) == "approved" for c in case_nos)


def open_the_delivery_breaker(gateway: Gateway, simulator: SocialSecuritySimulator) -> tuple[str, str]:
    """Two cases while the sector answers 503: 3 + 2 failures open the breaker (the first case dies)."""
    simulator.set_fault("fail")
    first, second = submit(gateway), submit(gateway)
    gateway.dispatcher.run_once()
    assert health(gateway, SECTOR)["breaker"] == "open"
    return first, second


def test_a_case_meeting_an_open_circuit_waits_for_it_without_spending_an_attempt(
        gateway: Gateway, simulator: SocialSecuritySimulator, tmp_path: Path) -> None:
    tune(gateway, SECTOR, tmp_path, circuit_breaker=BRIEF_OUTAGE)
    first, second = open_the_delivery_breaker(gateway, simulator)
    seen = simulator.counters["raw_requests"]
    third = submit(gateway)
    gateway.dispatcher.run_once()
    row = submitted(gateway, third)
    assert (row.status, row.deliveries) == ("pending", 0)  # refused before the sector: no attempt spent
    wait = as_utc(row.available_at) - datetime.now(UTC)
    assert timedelta(0) < wait <= timedelta(seconds=3)  # due when the breaker may close
    assert gateway.service.dead_letters(third) == []
    assert simulator.counters["raw_requests"] == seen  # the sector was not called

    simulator.set_fault(None)
    drain(gateway, lambda: settled(gateway, third) and (approved(gateway, second, third)
                                                        or bool(gateway.service.dead_letters(third))))
    assert [(letter.case_no, letter.error_class) for letter in gateway.service.dead_letters()] == [
        (first, "sector_fault")]
    assert (submitted(gateway, third).status, submitted(gateway, third).deliveries) == ("done", 1)
    assert simulator.counters["cases_created"] == 2  # the second case waited too, and went


def test_a_call_the_breaker_refused_is_not_in_the_message_log_as_sent(
        gateway: Gateway, simulator: SocialSecuritySimulator, tmp_path: Path) -> None:
    tune(gateway, SECTOR, tmp_path, circuit_breaker=BRIEF_OUTAGE)
    open_the_delivery_breaker(gateway, simulator)
    third = submit(gateway)
    gateway.dispatcher.run_once()

    def sent() -> list[str]:
        return [r.subject for r in gateway.ledger.records(Filters(MESSAGE, action="sent", case_no=third))]

    assert sent() == []  # the breaker refused it: nothing went to the sector
    simulator.set_fault(None)
    drain(gateway, lambda: approved(gateway, third))
    assert sent().count("submit_case") == 1  # what went, when it went


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_over_rabbitmq_a_case_meeting_an_open_circuit_is_published_again_when_it_may_close(
        make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator, tmp_path: Path) -> None:
    with rabbitmq_vhost() as url:
        gateway = make_gateway(amqp_url=url, sector_endpoints={SECTOR: simulator.url}, dispatch_idle_ms=20)
        tune(gateway, SECTOR, tmp_path, circuit_breaker=BRIEF_OUTAGE)
        simulator.set_fault("fail")
        first, second = submit(gateway), submit(gateway)
        with running(gateway) as transport:
            eventually(lambda: health(gateway, SECTOR)["breaker"] == "open", what="the delivery breaker open")
            seen = simulator.counters["raw_requests"]
            third = submit(gateway)
            eventually(lambda: submitted(gateway, third).published_at is not None  # through the broker, and back
                       and submitted(gateway, third).status in ("pending", "dead"), what="the third case taken")
            row = submitted(gateway, third)
            assert (row.status, row.deliveries) == ("pending", 0), row  # waits in the outbox, not the broker
            assert simulator.counters["raw_requests"] == seen
            simulator.set_fault(None)
            eventually(lambda: bool(gateway.service.dead_letters(third)) or all(
                settled(gateway, c) for c in (first, second, third)), what="the waiting cases delivered")
            assert gateway.service.dead_letters(third) == []
            eventually(lambda: queue_depth(url, queue_name(SECTOR, False)) == 0, what="every message acked")
            assert transport.consumer.stats.retried == 0  # acked after the deferral, never handed back
        # Delivered side by side, the first two spent 5 or 6 real attempts between them before the breaker opened:
        # one or both died of them; one refused by the breaker instead waited like the third.
        died = {letter.case_no: letter.error_class for letter in gateway.service.dead_letters()}
        assert set(died) <= {first, second} and set(died.values()) == {"sector_fault"}, died
        assert approved(gateway, third) and submitted(gateway, third).deliveries == 1
        assert simulator.counters["cases_created"] == 3 - len(died)


def test_a_case_waiting_longer_than_max_wait_is_a_circuit_open_dead_letter_with_the_sectors_last_answer(
        gateway: Gateway, simulator: SocialSecuritySimulator, tmp_path: Path) -> None:
    tune(gateway, SECTOR, tmp_path, circuit_breaker="{failure_threshold: 5, reset_after_ms: 60000}",
         retry="{attempts: 4, initial_ms: 100, max_ms: 2000, max_wait_ms: 300}")
    first, second = open_the_delivery_breaker(gateway, simulator)
    third = submit(gateway)
    gateway.dispatcher.run_once()
    assert submitted(gateway, third).status == "pending"  # waiting for the breaker, 300 ms at most
    drain(gateway, lambda: bool(gateway.service.dead_letters(third)))
    [letter] = gateway.service.dead_letters(third)
    assert letter.error_class == "circuit_open"
    assert "retry.max_wait_ms 300" in letter.error_message and "HTTP 503" in letter.error_message
    assert letter.last_response["status"] == 503  # the sector's last real answer, not our refusal
    assert "No server is available" in letter.last_response["body"]
    assert letter.rendered_request is not None and letter.deliveries == 1  # the first refusal spent nothing
    assert [x.error_class for x in gateway.service.dead_letters(second)] == ["circuit_open"]
    assert [x.error_class for x in gateway.service.dead_letters(first)] == ["sector_fault"]
    assert simulator.counters["submits_received"] == 0
    waiting = gateway.metrics.get_sample_value(
        "yiwang_deliveries_total", {"sector": SECTOR, "operation": "submit_case", "outcome": "waiting"})
    assert waiting is not None and waiting >= 2
