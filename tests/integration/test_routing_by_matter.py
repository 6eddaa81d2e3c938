"""One bureau, two systems, split by matter (issue 18), on SQLite and PostgreSQL, over real HTTP.

包头市昆都仑区民政局 keeps marriage registration on its civil-affairs system (the shipped `civil_affairs` bundle,
department-wide) and hands its disability allowances (困难残疾人两项补贴) to the social-assistance system (a copy
of the shipped `social_assistance` bundle naming that department and that one matter). Activation refuses
only a real overlap (department and matter both), naming the department, the matter and the other sector;
routing lets the matter-specific bundle win; a case of each matter reaches its own simulator.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapters.registry import default_bundles_dir
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.social_assistance import SocialAssistanceSimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.sectors.bundle_records import BundleConflict, pack_folder
from tests.support.gateways import Keys, drain

BUREAU = "11150203MB0C000405"  # 包头市昆都仑区民政局
MARRIAGE = "11150203MB0C0004054000113001000"  # 内地居民结婚登记
ALLOWANCE = "11150203MB0C0004054000113003000"  # 困难残疾人生活补贴和重度残疾人护理补贴
PERSON = {"name": "王建国", "id_number": "150203198503120039", "phone": "13847100001"}


def split_copy(tmp_path: Path, sector: str, version: str, matters: list[str]) -> bytes:
    """A shipped bundle's copy serving the bureau, for `matters` only (none: all of them)."""
    folder = tmp_path / f"{sector}-{version}"
    shutil.copytree(default_bundles_dir() / sector, folder, dirs_exist_ok=True)
    descriptor = folder / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^version: ".*"', f'version: "{version}"', text)
    text = re.sub(r"(?m)^  departments: \[.*\].*$", f"  departments: [{BUREAU}]", text)
    text = re.sub(r"(?m)^  matters: \[\]", f"  matters: [{', '.join(matters)}]", text)
    descriptor.write_text(text, encoding="utf-8")
    return pack_folder(folder)


@pytest.fixture
def sims() -> Iterator[dict[str, CivilAffairsSimulator | SocialAssistanceSimulator]]:
    with ExitStack() as stack:
        yield {"civil_affairs": stack.enter_context(CivilAffairsSimulator(decision_delay_ms=50)),
               "social_assistance": stack.enter_context(SocialAssistanceSimulator(0, 50))}


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], sims: dict[str, object], tmp_path: Path) -> Gateway:
    """civil_affairs department-wide on the bureau, social_assistance on its allowance only."""
    gateway = make_gateway(bundles=("civil_affairs",),
                           sector_endpoints={s: sim.url for s, sim in sims.items()})  # type: ignore[attr-defined]
    version = gateway.bundles.register(split_copy(tmp_path, "social_assistance", "split-1", [ALLOWANCE]),
                                       "test").version
    gateway.bundles.activate("social_assistance", version, "test", force=True)
    return gateway


def test_activation_refuses_only_where_department_and_matter_both_overlap(gateway: Gateway, tmp_path: Path) -> None:
    store = gateway.bundles
    # Department-wide beside department-wide: civil_affairs already takes every matter of the bureau.
    wide = store.register(split_copy(tmp_path, "social_assistance", "wide-1", []), "test").version
    with pytest.raises(BundleConflict) as refused:
        store.activate("social_assistance", wide, "test", force=True)
    assert str(refused.value).startswith(f"social_assistance 声明的部门 {BUREAU} 的全部事项已由 civil_affairs 服务")
    # Matter-specific beside matter-specific on one matter: the allowance is social_assistance's already.
    rival = store.register(split_copy(tmp_path, "employment", "split-1", [ALLOWANCE, MARRIAGE]), "test").version
    with pytest.raises(BundleConflict) as refused:
        store.activate("employment", rival, "test", force=True)
    assert str(refused.value).startswith(f"employment 声明的部门 {BUREAU} 的事项 {ALLOWANCE}已由 social_assistance 服务")
    # Another matter of the bureau, matter-specific: beside the department-wide one, allowed.
    other = store.register(split_copy(tmp_path, "employment", "split-2", [MARRIAGE]), "test").version
    assert store.activate("employment", other, "test", force=True).status == "active"
    gateway.registry.refresh()
    assert gateway.registry.route(MARRIAGE, BUREAU) == "employment"
    assert {v.sector: v.version for v in store.versions() if v.status == "active"} == {
        "civil_affairs": "2026.11.1", "social_assistance": "split-1", "employment": "split-2"}


def test_the_matter_specific_bundle_wins_and_each_case_reaches_its_own_system(
        gateway: Gateway, sims: dict[str, CivilAffairsSimulator | SocialAssistanceSimulator]) -> None:
    assert gateway.registry.route(ALLOWANCE, BUREAU) == "social_assistance"
    assert gateway.registry.route(MARRIAGE, BUREAU) == "civil_affairs"
    keys = Keys.issue(gateway)
    marriage = {"matter_code": MARRIAGE, "channel": "city_window", "applicant": PERSON,
                "materials": [{"name": m} for m in ("双方居民身份证", "无配偶及无禁止结婚亲属关系的签字声明",
                                                    "双方近期半身免冠合影照片")],
                "form": {"spouse_name": "李秀英", "spouse_id_number": "150203198807150026",
                         "appointment_at": "2026-12-01T09:30:00+08:00"}}
    allowance = {"matter_code": ALLOWANCE, "channel": "city_window", "applicant": PERSON,
                 "materials": [{"name": "居民身份证"}, {"name": "残疾人证"}],
                 "form": {"family_size": 2, "monthly_income": "900.00"}}
    with TestClient(create_app(gateway), headers=keys.window) as window:
        case_nos = []
        for body in (marriage, allowance):
            answer = window.post("/v1/cases", json=body)
            assert answer.status_code == 201, answer.text
            case_nos.append(answer.json()["case_no"])

    def task_of(case_no: str) -> tuple[str | None, str | None]:
        task = gateway.service.get(case_no).tasks[0]
        return task.sector, task.sector_ref

    drain(gateway, lambda: all(task_of(c)[1] for c in case_nos))
    (marriage_sector, marriage_ref), (allowance_sector, allowance_ref) = map(task_of, case_nos)
    assert (marriage_sector, allowance_sector) == ("civil_affairs", "social_assistance")
    assert marriage_ref and marriage_ref.startswith("MZ")
    assert sims["civil_affairs"].counters["cases_created"] == 1
    assert sims["social_assistance"].counters["cases_created"] == 1
