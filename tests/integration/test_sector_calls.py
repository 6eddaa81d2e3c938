"""The four shipped sectors through the running gateway: routing, synchronous queries, callbacks,
cancellation, and what the hall is told when a sector is down or slow."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.registry import default_bundles_dir
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.public_security import PublicSecuritySimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.bootstrap.serving import serve_in_thread
from gateway.domain.case import Actor, ActorKind
from gateway.domain.roles import Role
from gateway.sectors.bundle_records import pack_folder
from tests.support.gateways import Keys, drain

SECTORS = ("social_security", "housing_fund", "civil_affairs", "public_security")
WITHDRAWAL = "12150200MB1A00020M3000720001000"  # 住房公积金提取: the housing-fund system decides
ID_CARD_RENEWAL = "11150203MB0E00080E4000114002000"  # 居民身份证换领: public security, by callback
PERSON = "150203198503120039"


@dataclass
class World:
    gateway: Gateway
    url: str
    systems: dict[str, Any]
    keys: Keys

    def client(self, headers: dict[str, str]) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def state(self, case_no: str) -> str:
        return str(self.gateway.service.get(case_no).state)


@pytest.fixture
def world(make_gateway: Callable[..., Gateway]) -> Iterator[World]:
    with ExitStack() as stack:
        systems: dict[str, Any] = {
            "social_security": stack.enter_context(SocialSecuritySimulator(decision_delay_ms=50)),
            "housing_fund": stack.enter_context(HousingFundSimulator(decision_delay_ms=500)),
            "civil_affairs": stack.enter_context(CivilAffairsSimulator(decision_delay_ms=50)),
            "public_security": stack.enter_context(PublicSecuritySimulator(decision_delay_ms=50)),
        }
        gateway = make_gateway(bundles=SECTORS, sector_endpoints={s: sim.url for s, sim in systems.items()})
        url = stack.enter_context(serve_in_thread(create_app(gateway)))
        systems["public_security"].callback_url = f"{url}/callbacks/public_security"
        yield World(gateway, url, systems, Keys.issue(gateway))


def submit(world: World, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    with world.client(headers or world.keys.window) as client:
        answer = client.post("/v1/cases", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["case_no"])


def withdrawal_case() -> dict[str, Any]:
    return {"matter_code": WITHDRAWAL, "channel": "city_window", "applicant": {"name": "王建国", "id_number": PERSON},
            "materials": [{"name": n} for n in ("居民身份证", "购房合同", "购房发票", "本人银行卡")]}


def id_card_case() -> dict[str, Any]:
    return {"matter_code": ID_CARD_RENEWAL, "channel": "city_window", "applicant": {"name": "王建国", "id_number": PERSON},
            "materials": [{"name": "居民户口簿"}, {"name": "原居民身份证"}]}


def test_tasks_route_to_the_sector_whose_bundle_serves_the_department(world: World) -> None:
    case_no = submit(world, withdrawal_case())
    case = world.gateway.service.get(case_no)
    assert [(t.department, t.sector) for t in case.tasks] == [("包头市住房公积金管理中心", "housing_fund")]
    drain(world.gateway, lambda: world.state(case_no) == "approved")
    assert world.systems["housing_fund"].counters["cases_created"] == 1


@pytest.mark.parametrize(
    ("name", "sector"),
    [("housing_fund_balance", "housing_fund"), ("marriage_record", "civil_affairs"),
     ("household_registration", "public_security"), ("social_insurance_contributions", "social_security")],
)
def test_synchronous_queries_reach_the_sector_that_declares_them(world: World, name: str, sector: str) -> None:
    with world.client(world.keys.hall) as hall:
        answer = hall.post(f"/v1/queries/{name}", json={"params": {"id_number": PERSON}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["sector"] == sector and answer.json()["result"]


def test_an_unknown_query_is_a_404_problem(world: World) -> None:
    with world.client(world.keys.hall) as hall:
        answer = hall.post("/v1/queries/tax_record", json={"params": {}})
    assert answer.status_code == 404 and answer.json()["type"] == "urn:yiwang:problem:no-active-adapter"


def test_a_sector_that_is_down_is_a_503_with_retry_after_not_a_hang(world: World) -> None:
    world.systems["housing_fund"].set_fault("fail")
    with world.client(world.keys.hall) as hall:
        answer = hall.post("/v1/queries/housing_fund_balance", json={"params": {"id_number": PERSON}})
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"] == "urn:yiwang:problem:sector-unavailable"
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.json()["detail"].startswith("请在 Retry-After 所示秒数后重试（诊断：")  # the hall reads Chinese


def test_a_slow_sector_is_a_504(world: World, tmp_path: Path) -> None:
    bundle = tmp_path / "housing_fund"
    shutil.copytree(default_bundles_dir() / "housing_fund", bundle)
    descriptor = bundle / "bundle.yaml"
    text = re.sub(r"(?m)^timeout_ms: \d+", "timeout_ms: 200", descriptor.read_text(encoding="utf-8"))
    descriptor.write_text(re.sub(r'(?m)^version: "', 'version: "fast-', text), encoding="utf-8")
    version = world.gateway.bundles.register(pack_folder(bundle), "test").version
    world.gateway.bundles.activate("housing_fund", version, "test", force=True)
    world.systems["housing_fund"].set_fault("slow", slow_ms=1500)
    with world.client(world.keys.hall) as hall:
        answer = hall.post("/v1/queries/housing_fund_balance", json={"params": {"id_number": PERSON}})
    assert answer.status_code == 504 and answer.json()["type"] == "urn:yiwang:problem:sector-timeout"


@pytest.mark.parametrize("fault", [None, "duplicate_callback", "early_callback"])
def test_a_callback_decides_the_case_once(world: World, fault: str | None) -> None:
    police = world.systems["public_security"]
    if fault:
        police.set_fault(fault, count=1)
    case_no = submit(world, id_card_case())
    drain(world.gateway, lambda: world.state(case_no) == "approved")
    case = world.gateway.service.get(case_no)
    assert [e.trigger.value for e in case.events].count("task_concluded") == 1
    assert case.tasks[0].sector_ref and case.tasks[0].sector_ref.startswith("GA")
    assert police.counters["cases_created"] == 1


def test_a_forged_callback_is_refused_and_changes_nothing(world: World) -> None:
    case_no = submit(world, id_card_case())
    drain(world.gateway, lambda: world.gateway.service.get(case_no).tasks[0].sector_ref is not None)
    ref = world.gateway.service.get(case_no).tasks[0].sector_ref
    forged = {"YWH": ref, "BJBH": case_no, "JG": "TY", "YJ": "伪造", "SJ": "2026-11-24 10:00:00"}
    answer = httpx.post(f"{world.url}/callbacks/public_security", json=forged,
                        headers={"X-Ca-Key": "ga-callback", "X-Ca-Timestamp": "0", "X-Ca-Nonce": "n",
                                 "X-Ca-Signature": "AAAA"})
    assert answer.status_code == 401 and answer.json()["type"] == "urn:yiwang:problem:callback-rejected"
    assert all(e.reason != "伪造" for e in world.gateway.service.get(case_no).events)


def test_withdrawing_a_case_the_sector_has_cancels_it_there(world: World) -> None:
    case_no = submit(world, withdrawal_case())
    drain(world.gateway, lambda: world.state(case_no) == "in_process")  # the sector decides after 500 ms
    world.gateway.service.withdraw(case_no, Actor(ActorKind.APPLICANT, "hall"), "不再需要")
    drain(world.gateway, lambda: world.systems["housing_fund"].counters["cancels_received"] == 1)
    assert world.state(case_no) == "closed"


def test_the_hall_sees_adapter_health(world: World) -> None:
    operator_headers = world.keys.operator
    with world.client(operator_headers) as ops:
        health = ops.get("/v1/adapters").json()
    assert set(health) == set(SECTORS)
    assert all(h["breaker"] == "closed" and h["version"] for h in health.values())



def test_preview_renders_for_a_case_without_calling_the_sector(world: World) -> None:
    case_no = submit(world, withdrawal_case())
    before = world.systems["housing_fund"].counters["raw_requests"]
    headers = world.gateway.keys.issue("gjj it", [Role.SECTOR_ADMIN], sector="housing_fund")[1]
    with world.client({"Authorization": f"Bearer {headers}"}) as admin:
        answer = admin.post("/v1/adapters/housing_fund/preview", json={"operation": "submit_case",
                                                                       "case_no": case_no})
        other = admin.post("/v1/adapters/social_security/preview", json={"operation": "submit_case",
                                                                          "case_no": case_no})
    assert answer.status_code == 200, answer.text
    request = answer.json()["request"]
    assert request["method"] == "POST" and request["body"]["applicationNo"] == case_no
    assert world.systems["housing_fund"].counters["raw_requests"] == before  # nothing was sent
    assert other.status_code == 403  # a sector administrator previews their own sector only


def test_a_registered_version_is_tested_against_the_sectors_test_endpoint(world: World) -> None:
    with world.client(world.keys.operator) as ops:
        tested = ops.post("/v1/adapters/housing_fund/versions/2026.12.0/test")
        world.systems["housing_fund"].set_fault("fail")
        failed = ops.post("/v1/adapters/housing_fund/versions/2026.12.0/test")
    assert tested.status_code == 200 and tested.json()["test_result"]["reachable"] is True
    assert failed.json()["test_result"]["reachable"] is False
