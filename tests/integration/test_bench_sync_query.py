"""The sync_query benchmark's measuring core on a tiny count: `make bench` is not run by `make test`, so
this keeps its figures sane (rates and latencies of right answers only, the ratio from the rates, wrong
answers counted as failures). No speed is asserted."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest

from adapters.simulators.housing_fund import HousingFundSimulator
from bench import sync_query
from bench.sync_query import Load, Target


@pytest.fixture
def sector() -> Iterator[HousingFundSimulator]:
    with HousingFundSimulator(token_ttl_s=600) as simulator:
        yield simulator


@pytest.mark.timeout(60)
def test_targets_are_measured_side_by_side_from_a_separate_process(sector: HousingFundSimulator) -> None:
    direct = sync_query.direct_target(sector.url)
    drive = sync_query.compare({"direct": direct, "gateway": direct}, connections=2, repeats=2, seconds=0.2)

    for name, runs in drive.repetitions.items():
        assert len(runs) == 2
        assert all(r.rps > 0 and r.ok > 0 and r.failed == 0 and 0 < r.p50_ms <= r.p99_ms for r in runs)
        assert drive.requests[name] > sum(r.ok for r in runs)  # calibration (the warm-up) counts as asked
    assert drive.client_cpu_s > 0
    assert sector.counters["queries_received"] >= sum(drive.requests.values())

    entry = sync_query.summary(drive, {"gateway": 0.5, "simulator": 0.5, "load client": 0.5}, 2.0, ["a note"])
    ratios = [g.rps / d.rps for g, d in zip(drive.repetitions["gateway"], drive.repetitions["direct"], strict=True)]
    assert entry["ratio"]["median"] == round(statistics.median(ratios), 3)
    assert entry["direct_rps"]["runs"] == entry["gateway_rps"]["runs"] == 2
    assert entry["failed"] == {"direct": 0, "gateway": 0}
    assert entry["gateway_cpu_ms_per_query"] == round(500 / drive.requests["gateway"], 2)
    assert entry["target"] == {"ratio": 0.5, "added_p50_ms": 2.0} and isinstance(entry["met"], bool)
    assert entry["note"] == "a note" and ("limited_by" in entry) == (not entry["met"])
    assert "ratio_2_workers" not in entry  # measured in full runs only


@pytest.mark.timeout(60)
def test_the_two_process_gateway_has_a_ratio_of_its_own_beside_the_default_one(sector: HousingFundSimulator) -> None:
    direct = sync_query.direct_target(sector.url)
    drive = sync_query.compare({"direct": direct, "gateway": direct, "gateway_2_workers": direct}, connections=2,
                               repeats=2, seconds=0.1)
    entry = sync_query.summary(drive, {"gateway": 0.5, "gateway_2_workers": 0.25, "simulator": 0.5}, 2.0, [],
                               machine_busy=0.97)

    pairs = zip(drive.repetitions["gateway_2_workers"], drive.repetitions["direct"], strict=True)
    assert entry["ratio_2_workers"]["median"] == round(statistics.median(g.rps / d.rps for g, d in pairs), 3)
    assert entry["gateway_2_workers_rps"]["runs"] == 2
    assert entry["gateway_2_workers_cpu_ms_per_query"] == round(250 / drive.requests["gateway_2_workers"], 2)
    assert entry["ratio"]["unit"] == "gateway/direct"  # `ratio` stays the single-process gateway's
    assert entry["machine_cpu_busy"] == 0.97  # other tenants' CPU time shows here, beside cpu_share
    if not entry["met"]:
        assert f"--workers {sync_query.WORKERS}" in entry["limited_by"] and "97% busy" in entry["limited_by"]


@pytest.mark.timeout(60)
def test_a_refused_or_unreadable_answer_is_a_failure_not_a_rate(sector: HousingFundSimulator) -> None:
    direct = sync_query.direct_target(sector.url)
    with Load({"direct": direct}, connections=2) as load:
        sector.set_fault("fail", count=3)  # 503 from a dead load balancer
        load.batch("direct")(10)
        sector.set_fault("malformed", count=2)  # 200, but a truncated body without the balance
        load.batch("direct")(10)
        repetition = load.repetition("direct", rate=100.0)

    assert (repetition.ok, repetition.failed) == (15, 5)
    assert repetition.rps == pytest.approx(75.0)  # only right answers count towards the rate


@pytest.mark.timeout(60)
def test_a_repetition_without_one_right_answer_is_an_error(sector: HousingFundSimulator) -> None:
    direct = sync_query.direct_target(sector.url)
    wrong = Target(direct.url, direct.method, direct.path, direct.headers, direct.body, b'"balance":"-1"')
    with Load({"wrong": wrong}, connections=2) as load:
        load.batch("wrong")(4)
        with pytest.raises(RuntimeError, match="every request"):
            load.repetition("wrong", rate=10.0)
