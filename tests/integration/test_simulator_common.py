"""What the four sector simulators share (adapters/simulators/base.py), tested across all four,
plus ``OpenApi``: the checker the REST simulators' tests run every answer through, so the
shipped OpenAPI documents stay complete and accurate (the bundle validator trusts them)."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import jsonschema
import pytest

from adapters.simulators.base import (
    REFERENCE_EPOCH,
    CaseBook,
    Counters,
    NonceCache,
    References,
    SimulatorBase,
    person_seed,
    recent_months,
)
from tests.support.simulators import KNOWN_ID, SIMULATORS, SUBMIT_PATH, OpenApi

# --------------------------------------------------------------------------- the OpenAPI checker


# --------------------------------------------------------------------------- shared behaviour


@pytest.fixture(params=sorted(SIMULATORS))
def any_sim(request: pytest.FixtureRequest) -> Iterator[SimulatorBase]:
    with SIMULATORS[request.param]() as simulator:
        yield simulator


def test_every_simulator_binds_an_ephemeral_port_and_releases_it(any_sim: SimulatorBase) -> None:
    assert any_sim.port != 0
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+(/.*)?", any_sim.url)
    description_url = any_sim.description_url
    assert httpx.get(description_url).status_code == 200
    with pytest.raises(RuntimeError):
        any_sim.start()
    any_sim.stop()
    any_sim.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(description_url)
    with pytest.raises(RuntimeError):
        _ = any_sim.url


def test_the_fail_and_rate_limit_faults_are_the_same_everywhere(any_sim: SimulatorBase) -> None:
    target = any_sim.url + SUBMIT_PATH[type(any_sim)]
    any_sim.set_fault("fail", count=1)
    dead = httpx.post(target, content=b"{}")
    assert dead.status_code == 503 and dead.headers["content-type"].startswith("text/html")
    any_sim.set_fault("rate_limit", count=1)
    limited = httpx.post(target, content=b"{}")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert any_sim.fault_mode is None
    counters = any_sim.counters
    assert counters["raw_requests"] == 2
    assert counters["faults_injected"] == 2 and counters["cases_created"] == 0


def test_the_description_is_outside_the_fault_plan(any_sim: SimulatorBase) -> None:
    any_sim.set_fault("fail")
    assert httpx.get(any_sim.description_url).status_code == 200
    counters = any_sim.counters
    assert counters["faults_injected"] == 0 and counters["raw_requests"] == 1  # counted all the same


@pytest.mark.parametrize("name", sorted(SIMULATORS))
def test_set_fault_accepts_the_documented_modes_only(name: str) -> None:
    simulator = SIMULATORS[name]()
    for mode in ("fail", "slow", "malformed", "hostile", "fault", "rate_limit", None):
        simulator.set_fault(mode)
    for mode in ("duplicate_callback", "early_callback"):
        if name == "public_security":
            simulator.set_fault(mode, count=1)
        else:
            with pytest.raises(ValueError):
                simulator.set_fault(mode)
    for mode, kwargs in (("explode", {}), ("fail", {"count": 0}), ("slow", {"slow_ms": -1})):
        with pytest.raises(ValueError):
            simulator.set_fault(mode, **kwargs)


@pytest.mark.parametrize("name", sorted(SIMULATORS))
def test_negative_decision_delay_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        SIMULATORS[name](decision_delay_ms=-1)


# --------------------------------------------------------------------------- the machinery itself


def test_case_book_applies_once_remembers_only_applied_and_decides_once() -> None:
    counters = Counters(["cases_created", "duplicate_submits"])
    calls: list[dict[str, Any]] = []

    def decide(fields: dict[str, Any]) -> tuple[bool, str]:
        calls.append(fields)
        return True, "ok"

    book = CaseBook(References("T", 3), 0.2, decide, counters)
    case, created = book.apply("r1", {"a": 1})
    again, created_again = book.apply("r1", {"a": 2})
    assert (created, again is case, created_again) == (True, True, False)
    assert re.fullmatch(r"T\d{3}", case.reference)
    assert book.decision(case) is None  # not due yet
    time.sleep(0.21)
    assert book.decision(case) == book.decision(case) == (True, "ok")
    assert calls == [{"a": 1}]
    assert counters.snapshot() == {"cases_created": 1, "duplicate_submits": 1}


def test_case_book_cancel_and_decide_now() -> None:
    book = CaseBook(References("T", 3), 60, lambda _: (False, "no"), Counters(["cases_created", "duplicate_submits"]))
    first, _ = book.apply("a", {})
    assert book.cancel(first.reference) is True and book.cancel(first.reference) is True
    assert book.decision(first) is None  # a cancelled case is never decided
    second, _ = book.apply("b", {})
    assert book.decide_now(second) == (False, "no")
    assert book.cancel(second.reference) is False  # decided: too late
    assert book.cancel("T") is None


def test_references_follow_the_clock_and_a_restarted_run_starts_above_every_earlier_one() -> None:
    now = [REFERENCE_EPOCH.timestamp() + 12.5]  # seconds; whole-second steps keep the float arithmetic exact

    def sleep(seconds: float) -> None:
        now[0] += seconds

    first_run = References("T", 4, unit_ms=1000, clock=lambda: now[0], sleep=sleep)
    assert [first_run.next() for _ in range(3)] == ["T0013", "T0014", "T0015"]  # a burst waits a step each
    assert now[0] == REFERENCE_EPOCH.timestamp() + 15.5  # never ahead of the clock
    restarted = References("T", 4, unit_ms=1000, clock=lambda: now[0], sleep=sleep)  # at once, memory lost
    assert restarted.next() == "T0016"
    now[0] += 100  # idle: the next reference is the clock's, not the counter's
    assert restarted.next() == "T0116"
    assert References("T", 2, unit_ms=1000, clock=lambda: now[0], sleep=sleep).next() == "T17"  # modulo 10**width


def test_nonce_cache_refuses_reuse_within_the_window_and_forgets_after() -> None:
    cache = NonceCache(0.05)
    assert cache.first_use("n1") and not cache.first_use("n1") and cache.first_use("n2")
    time.sleep(0.06)
    assert cache.first_use("n1")  # forgotten: the timestamp check refuses that old a request anyway


def test_person_seed_and_recent_months() -> None:
    assert person_seed(KNOWN_ID) == person_seed(KNOWN_ID) is not None
    assert person_seed("15020419901120152X") is not None
    assert person_seed("123") is None and person_seed("") is None and person_seed(None) is None
    assert recent_months(3, date(2026, 1, 31)) == [(2025, 12), (2025, 11), (2025, 10)]


def test_openapi_checker_closes_objects_and_translates_nullable() -> None:
    api = OpenApi(
        "openapi: 3.0.3\npaths: {}\ncomponents:\n  schemas:\n    A:\n      type: object\n"
        "      properties:\n        x: {type: integer, nullable: true}\n"
    )
    schema = api._json_schema({"$ref": "#/components/schemas/A"})
    jsonschema.validate({"x": None}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"x": 1, "y": 2}, copy.deepcopy(schema))
