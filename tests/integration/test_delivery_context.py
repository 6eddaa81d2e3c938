"""A failed delivery carries its whole story: one history entry per attempt, and the sector's last raw answer.

Against the real simulators, through `build_adapter` and the shipped bundles (the path the gateway takes):
a fault that outlasts the retries leaves a `DeliveryError` whose `history` lists every attempt with its
failure class and whose `last_response` is what the sector said (the SOAP Fault XML, the 503 page, a 429's
Retry-After, a business refusal in a 200); a timeout leaves `timeout` entries and no answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from adapters.bundle import load_bundle
from adapters.contract import CanonicalMessage, CanonicalResult, DeliveryError, FailureClass, Operation
from adapters.kinds.common import LAST_RESPONSE_MAX_BYTES, RawAnswer
from adapters.registry import RegisteredAdapter, build_adapter, default_bundles_dir
from adapters.resilience import RetryingAdapter, RetryPolicy
from adapters.simulators import civil_affairs, housing_fund
from adapters.simulators.base import DEAD_BALANCER, SimulatorBase
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from tests.support.sector_cases import gjj_case, mz_case, shebao_case

BUNDLES = default_bundles_dir()
ATTEMPTS = 3
RETRIES = RetryPolicy(ATTEMPTS, 1, 5)
SUBMIT = Operation.SUBMIT_CASE
SECRETS = {
    "YIWANG_SECRET_GJJ_CLIENT_ID": housing_fund.DEFAULT_CLIENT_ID,
    "YIWANG_SECRET_GJJ_CLIENT_SECRET": housing_fund.DEFAULT_CLIENT_SECRET,
    "YIWANG_SECRET_MZ_PASSWORD": civil_affairs.DEFAULT_PASSWORD,
}
UNKNOWN_ID = "1502031985031200"  # not a well-formed ID number: no simulator knows the person
# sector -> (simulator class, a submit message it takes)
SECTORS: dict[str, tuple[type[SimulatorBase], CanonicalMessage]] = {
    "civil_affairs": (CivilAffairsSimulator, mz_case("MZ-CTX-1", "MZ-CASE-1", certificate_provided=True)),
    "social_security": (SocialSecuritySimulator, shebao_case("SB-CTX-1", "SB-CASE-1", insured_months=36)),
    "housing_fund": (HousingFundSimulator, gjj_case("GJJ-CTX-1", "GJJ-CASE-1", "1000.00")),
}


@pytest.fixture(autouse=True)
def sector_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def registered(sector: str, url: str, *, timeout_ms: int | None = None,
               retry: RetryPolicy = RETRIES) -> RegisteredAdapter:
    bundle = load_bundle(BUNDLES / sector)
    if timeout_ms is not None:
        bundle = replace(bundle, timeout_ms=timeout_ms)
    return build_adapter(bundle, endpoint=url, retry_override=retry)


@pytest.fixture
def sector(request: pytest.FixtureRequest) -> Iterator[tuple[str, SimulatorBase]]:
    """(sector name, its simulator running); parametrize indirectly with the sector name."""
    name: str = request.param
    with SECTORS[name][0](decision_delay_ms=50) as sim:
        yield name, sim


def failed(registered: RegisteredAdapter, operation: Operation | str, message: CanonicalMessage) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        registered.adapter.call(operation, message)  # type: ignore[arg-type]
    return caught.value


def assert_story(error: DeliveryError, failure: FailureClass, attempts: int = ATTEMPTS) -> None:
    """One well-formed history entry per attempt, in order, each of class `failure`."""
    assert error.failure is failure
    assert error.attempts == len(error.history) == attempts
    assert [entry["failure"] for entry in error.history] == [str(failure)] * attempts
    assert all(set(entry) == {"at", "failure", "message", "elapsed_ms"} for entry in error.history)
    assert all(isinstance(entry["elapsed_ms"], int) and entry["elapsed_ms"] >= 0 for entry in error.history)
    times = [datetime.fromisoformat(entry["at"]) for entry in error.history]
    assert all(str(t.tzinfo) == "UTC" for t in times)
    assert times == sorted(times)
    assert error.history[-1]["message"] == error.message


# ------------------------------------------------------------------ faults that outlast the retries


@pytest.mark.parametrize("sector", ["civil_affairs"], indirect=True)
def test_a_soap_fault_that_outlasts_the_retries_leaves_every_attempt_and_the_fault_xml(
        sector: tuple[str, SimulatorBase]) -> None:
    name, sim = sector
    sim.set_fault("fault")  # SOAP 1.2 Receiver fault, HTTP 500, every time
    error = failed(registered(name, sim.url), SUBMIT, SECTORS[name][1])
    assert_story(error, FailureClass.SECTOR_FAULT)
    assert error.retryable and "Receiver" in error.message
    assert all("Receiver" in entry["message"] for entry in error.history)
    answer = error.last_response
    assert answer is not None and answer["status"] == 500
    assert answer["headers"]["Content-Type"].startswith("application/soap+xml")
    assert "Fault>" in answer["body"] and civil_affairs.CivilAffairsSimulator.contract.server_error in answer["body"]
    assert "soap-envelope" in answer["body"]  # the whole envelope as the sector sent it
    assert sim.counters["raw_requests"] == ATTEMPTS and sim.counters["cases_created"] == 0


@pytest.mark.parametrize("sector", ["social_security", "housing_fund"], indirect=True)
def test_a_dead_load_balancer_leaves_every_attempt_and_its_503_page(sector: tuple[str, SimulatorBase]) -> None:
    name, sim = sector  # one SOAP 1.1 sector, one REST sector
    sim.set_fault("fail")
    error = failed(registered(name, sim.url), SUBMIT, SECTORS[name][1])
    assert_story(error, FailureClass.SECTOR_FAULT)
    assert all("503" in entry["message"] for entry in error.history)
    answer = error.last_response
    assert answer is not None and (answer["status"], answer["body"]) == (503, DEAD_BALANCER.body.decode("utf-8"))
    assert answer["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert set(answer["headers"]) <= {"Content-Type", "Content-Length", "Date", "Server"}


@pytest.mark.parametrize("sector", ["housing_fund"], indirect=True)
def test_a_429_leaves_its_retry_after_header(sector: tuple[str, SimulatorBase]) -> None:
    name, sim = sector
    sim.set_fault("rate_limit")  # 429 with Retry-After: 1 (the limiter pauses a second between attempts)
    error = failed(registered(name, sim.url, retry=RetryPolicy(2, 1, 5)), SUBMIT, SECTORS[name][1])
    assert_story(error, FailureClass.SECTOR_FAULT, attempts=2)
    assert error.last_response is not None and error.last_response["status"] == 429
    assert error.last_response["headers"]["Retry-After"] == "1"


@pytest.mark.parametrize(("sector", "query", "said"), [("civil_affairs", "marriage_record", "<tns:ResultCode>FAIL<"),
                                                       ("housing_fund", "housing_fund_balance", '"code":4040')],
                         indirect=["sector"])
def test_a_business_refusal_in_a_successful_answer_leaves_that_answer(
        sector: tuple[str, SimulatorBase], query: str, said: str) -> None:
    name, sim = sector
    error = failed(registered(name, sim.url), query, {"query": {"id_number": UNKNOWN_ID}})
    assert_story(error, FailureClass.SECTOR_FAULT, attempts=1)  # not retried: asking again gets the same
    answer = error.last_response
    assert answer is not None and answer["status"] == 200 and said in answer["body"]


# ------------------------------------------------------------------ no answer at all


@pytest.mark.parametrize("sector", ["civil_affairs", "housing_fund"], indirect=True)
def test_a_timeout_leaves_timeout_entries_and_no_answer(sector: tuple[str, SimulatorBase]) -> None:
    name, sim = sector
    sim.set_fault("slow", slow_ms=3_000)  # every request answered long after we gave up
    error = failed(registered(name, sim.url, timeout_ms=300), SUBMIT, SECTORS[name][1])
    assert_story(error, FailureClass.TIMEOUT)
    assert all(250 <= entry["elapsed_ms"] < 2_500 for entry in error.history)
    assert error.last_response is None


def test_a_refused_connection_leaves_transport_entries_and_no_answer() -> None:
    with CivilAffairsSimulator() as sim:
        url = sim.url
    error = failed(registered("civil_affairs", url), SUBMIT, SECTORS["civil_affairs"][1])  # nobody listens now
    assert_story(error, FailureClass.TRANSPORT)
    assert error.last_response is None


# ------------------------------------------------------------------ the retry wrapper alone


class Scripted:
    """An adapter failing as scripted, one error per call."""

    sector, version = "scripted", "1"

    def __init__(self, *errors: DeliveryError) -> None:
        self.errors = list(errors)

    def call(self, operation: Operation, message: CanonicalMessage) -> CanonicalResult:
        raise self.errors.pop(0)

    def render(self, operation: Operation, message: CanonicalMessage) -> Any:
        return {}


def test_the_history_lists_each_attempt_in_order_with_its_own_class() -> None:
    last = DeliveryError(FailureClass.SECTOR_FAULT, "HTTP 503", retryable=True)
    last.last_response = {"status": 503, "headers": {}, "body": "busy"}
    inner = Scripted(DeliveryError(FailureClass.TRANSPORT, "connection refused"),
                     DeliveryError(FailureClass.TIMEOUT, "no answer in time"), last)
    with pytest.raises(DeliveryError) as caught:
        RetryingAdapter(inner, RetryPolicy(3, 0, 0), sleep=lambda _: None).call(SUBMIT, {"idempotency_key": "K"})
    error = caught.value
    assert error is last and error.attempts == 3
    assert [(e["failure"], e["message"]) for e in error.history] == [
        ("transport", "connection refused"), ("timeout", "no answer in time"), ("sector_fault", "HTTP 503")]
    assert error.last_response == {"status": 503, "headers": {}, "body": "busy"}  # the final attempt's answer


def test_a_raw_answer_keeps_a_few_safe_headers_and_64_kib_of_body_in_its_charset() -> None:
    answer = RawAnswer()
    assert answer.last_response() is None
    body = "错".encode("gbk") * LAST_RESPONSE_MAX_BYTES  # twice the cut
    headers = {"Content-Type": "text/plain; charset=GBK", "Set-Cookie": "session=secret", "Retry-After": "5"}
    answer.keep(500, headers, body)
    kept = answer.last_response()
    assert kept is not None and kept["headers"] == {"Content-Type": "text/plain; charset=GBK", "Retry-After": "5"}
    assert kept["body"] == "错" * (LAST_RESPONSE_MAX_BYTES // 2)
    answer.keep(502, {"Content-Type": "text/html; charset=klingon"}, b"\xff<html>")
    assert answer.last_response() == {"status": 502, "headers": {"Content-Type": "text/html; charset=klingon"},
                                      "body": "\ufffd<html>"}


def test_an_answer_never_lingers_into_the_next_call() -> None:
    with CivilAffairsSimulator(decision_delay_ms=50) as sim:
        mz = registered("civil_affairs", sim.url, timeout_ms=300, retry=RetryPolicy(1, 1, 1))
        sim.set_fault("fault", count=1)
        assert failed(mz, SUBMIT, SECTORS["civil_affairs"][1]).last_response is not None
        sim.set_fault("slow", slow_ms=3_000)
        error = failed(mz, SUBMIT, SECTORS["civil_affairs"][1])  # the same adapter, the same thread
        assert error.failure is FailureClass.TIMEOUT and error.last_response is None
