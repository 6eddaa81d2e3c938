"""A fifth sector joins with no change to the project's code: a bundle, the public API, a running system.

The 医疗保障局 (medical security) co-decides 新生儿出生登记一件事 and has, until now, decided through the
back office. Its IT team writes a bundle (tests/data/bundles/medical_security: descriptor, the OpenAPI
document its system publishes, three mappings — no Python), registers and activates it through
`/v1/adapters` with a sector administrator's key, and from then on its tasks go to its system. Its
system here is a `HousingFundSimulator`: the same REST/JSON + OAuth2 dialect, its own credentials.
Everything else (the hall API, the dispatcher, the registry) is the project's code as it is.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.housing_fund import default_decide as housing_fund_decide
from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.persistence import tables as t
from gateway.persistence.bundle_tables import bundle_versions
from gateway.sectors.bundle_records import pack_folder
from tests.support.gateways import COMPLETE_APPLICATION, SOCIAL_SECURITY_AGENCY, Keys, drain

BUNDLE = Path(__file__).parents[1] / "data" / "bundles" / "medical_security"
SECTOR = "medical_security"
VERSION = "2026.12.1"
BUNDLES = "/v1/adapters/bundles"
ZIP = {"Content-Type": "application/zip"}
PROBLEM_PREFIX = "urn:yiwang:problem:"

BIRTH = "11150200MB0E0007023000114004000"  # 新生儿出生登记一件事 (parallel; 公安局 leads)
POLICE = "11150200MB0E000702"  # 包头市公安局: the lead, back office
HEALTH = "11150200MB0F001003"  # 包头市卫生健康委员会: back office
MEDICAL_SECURITY = "11150200MB0G00110N"  # 包头市医疗保障局: the fifth sector
GUARDIAN_ID = "150203199204150021"
BIRTH_APPLICATION: dict[str, Any] = {
    "matter_code": BIRTH,
    "applicant": {"name": "李娜", "id_number": GUARDIAN_ID, "phone": "13847100002"},
    "materials": [{"name": "出生医学证明"}, {"name": "父母居民身份证"}, {"name": "父母居民户口簿"}, {"name": "结婚证"}],
    "form": {"newborn_name": "李小满", "newborn_sex": "2", "birth_date": "2026-11-20",
             "guardian_id_number": GUARDIAN_ID, "join_medical_insurance": True, "apply_social_security_card": True},
}
# The medical-security system's own client credentials, held where the bundle's references point.
CLIENT_ID, CLIENT_SECRET = "ybj-gateway", "ybj-s3cret"


def test_the_bundle_serves_the_catalogues_medical_security_bureau(gateway: Gateway) -> None:
    """The credit code the bundle serves is the one the catalogue gives 包头市医疗保障局 in the birth matter,
    where it has no sector system yet."""
    matter = gateway.catalogue.published(BIRTH)
    assert matter is not None and matter.name == "新生儿出生登记一件事"
    assert ("包头市医疗保障局", MEDICAL_SECURITY, None) in [
        (d.name, d.credit_code, d.sector) for d in matter.co_departments]
    text = (BUNDLE / "bundle.yaml").read_text(encoding="utf-8")
    assert f"credit_code: {MEDICAL_SECURITY}" in text and f"departments: [{MEDICAL_SECURITY}]" in text


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def recorded() -> list[dict[str, Any]]:
    """What the medical-security system was sent, as its decision hook saw each application."""
    return []


@pytest.fixture
def ybj(recorded: list[dict[str, Any]]) -> Iterator[HousingFundSimulator]:
    def decide(fields: dict[str, Any]) -> tuple[bool, str]:
        recorded.append(fields)
        return housing_fund_decide(fields)

    with HousingFundSimulator(decision_delay_ms=50, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                              decide=decide) as sim:
        yield sim


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], ybj: HousingFundSimulator, simulator: SocialSecuritySimulator,
            monkeypatch: pytest.MonkeyPatch) -> Gateway:
    """The gateway as deployed: social security already joined; the medical-security system's address and
    credentials configured (as a deployment would), its bundle not yet registered."""
    monkeypatch.setenv("YIWANG_SECRET_YB_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("YIWANG_SECRET_YB_CLIENT_SECRET", CLIENT_SECRET)
    return make_gateway(sector_endpoints={"social_security": simulator.url, SECTOR: ybj.url})


@pytest.fixture
def api(gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(create_app(gateway)) as client:
        yield client


@pytest.fixture
def keys(gateway: Gateway) -> Keys:
    return Keys.issue(gateway)


def sector_admin(gateway: Gateway, sector: str) -> dict[str, str]:
    _, key = gateway.keys.issue(f"{sector} IT team", [Role.SECTOR_ADMIN], sector=sector)
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def admin(gateway: Gateway) -> dict[str, str]:
    return sector_admin(gateway, SECTOR)


@pytest.fixture
def stranger(gateway: Gateway) -> dict[str, str]:
    """The IT team of another sector."""
    return sector_admin(gateway, "housing_fund")


# --- helpers --------------------------------------------------------------------------------------


def variant(tmp_path: Path, name: str, **replacements: tuple[str, str]) -> Path:
    """A copy of the bundle with `old -> new` replaced in the named files (file name with '.' as '_')."""
    folder = tmp_path / name
    shutil.copytree(BUNDLE, folder)
    for file_key, (old, new) in replacements.items():
        path = folder / file_key.replace("__", ".")
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    return folder


def register(api: TestClient, headers: dict[str, str], folder: Path = BUNDLE) -> Any:
    return api.post(BUNDLES, content=pack_folder(folder), headers={**headers, **ZIP})


def activate(api: TestClient, headers: dict[str, str], version: str = VERSION) -> Any:
    """Test the version against the sector's test endpoint, then activate it, as the sector's IT team does."""
    api.post(f"/v1/adapters/{SECTOR}/versions/{version}/test", headers=headers)
    return api.post(f"/v1/adapters/{SECTOR}/versions/{version}/activate", headers=headers)


def assert_problem(answer: Any, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["type"] == PROBLEM_PREFIX + slug, body
    return body


def stored_versions(gateway: Gateway) -> int:
    with gateway.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(bundle_versions)
                                .where(bundle_versions.c.sector == SECTOR)).scalar_one())


def submit_birth(api: TestClient, keys: Keys) -> dict[str, Any]:
    answer = api.post("/v1/cases", json=BIRTH_APPLICATION, headers=keys.hall)
    assert answer.status_code == 201, answer.text
    case: dict[str, Any] = answer.json()
    assert case["state"] == "accepted"
    return case


def tasks_by_department(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {task["credit_code"]: task for task in case["tasks"]}


def outbox_sectors(gateway: Gateway, case_no: str) -> list[tuple[str, str]]:
    with gateway.engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.sector, t.outbox.c.operation)
                            .where(t.outbox.c.case_no == case_no).order_by(t.outbox.c.id))
        return [(r.sector, r.operation) for r in rows]


# --- the fifth sector joins -------------------------------------------------------------------------


def test_a_fifth_sector_joins_through_the_api_and_decides_its_task_in_its_own_system(
        api: TestClient, gateway: Gateway, keys: Keys, admin: dict[str, str], ybj: HousingFundSimulator,
        simulator: SocialSecuritySimulator, recorded: list[dict[str, Any]]) -> None:
    # Before: the bureau decides in the back office.
    before = tasks_by_department(submit_birth(api, keys))
    assert before[MEDICAL_SECURITY]["via"] == "back_office"

    registered = register(api, admin)
    assert registered.status_code == 201, registered.text
    version = registered.json()
    assert (version["sector"], version["version"], version["status"], version["kind"]) == (
        SECTOR, VERSION, "registered", "rest")
    assert version["summary"]["department"] == {"name": "包头市医疗保障局", "credit_code": MEDICAL_SECURITY}
    assert version["summary"]["serves"] == {"departments": [MEDICAL_SECURITY], "matters": []}
    assert version["registered_by"].startswith("identity:")
    # Registered is not active: nothing is routed to it yet.
    assert tasks_by_department(submit_birth(api, keys))[MEDICAL_SECURITY]["via"] == "back_office"

    activated = activate(api, admin)
    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "active"

    case = submit_birth(api, keys)
    case_no = case["case_no"]
    tasks = tasks_by_department(case)
    assert set(tasks) == {POLICE, HEALTH, MEDICAL_SECURITY, SOCIAL_SECURITY_AGENCY}
    assert [tasks[d]["via"] for d in (POLICE, HEALTH, MEDICAL_SECURITY, SOCIAL_SECURITY_AGENCY)] == [
        "back_office", "back_office", "sector_system", "sector_system"]
    medical_task = tasks[MEDICAL_SECURITY]["task_id"]

    def medical_decided() -> bool:
        task = gateway.service.get(case_no).task(medical_task)
        return task.state.concluded

    drain(gateway, medical_decided)

    after = api.get(f"/v1/cases/{case_no}", headers=keys.hall)
    assert after.status_code == 200, after.text
    done = tasks_by_department(after.json())
    medical = done[MEDICAL_SECURITY]
    assert medical["via"] == "sector_system"
    assert medical["state"] == "approved"
    assert medical["sector_ref"].startswith("GJJ")
    assert medical["opinion"] == "审核通过，款项将于3个工作日内到账"
    counters = ybj.counters
    assert counters["cases_created"] == 1  # exactly this case: the earlier two went to the back office
    assert counters["duplicate_submits"] == 0
    assert counters["tokens_issued"] >= 1 and counters["auth_failures"] == 0
    assert [(f["bizType"], f["applicationNo"], f["applicant"]["idCardNo"]) for f in recorded] == [
        (BIRTH, case_no, GUARDIAN_ID)]
    assert [a["title"] for a in recorded[0]["attachments"]] == [m["name"] for m in BIRTH_APPLICATION["materials"]]
    assert recorded[0]["formData"]["newborn_name"] == "李小满"
    accepted = next(e for e in api.get(f"/v1/cases/{case_no}/events", headers=keys.hall).json()["items"]
                    if e["to_state"] == "accepted")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert recorded[0]["acceptedAt"] == (datetime.fromisoformat(accepted["at"]) - epoch) // timedelta(milliseconds=1)
    # The back-office departments' tasks are untouched: nobody sent them anywhere or decided them.
    for department in (POLICE, HEALTH):
        assert (done[department]["via"], done[department]["state"], done[department]["sector_ref"],
                done[department]["opinion"]) == ("back_office", "pending", None, None)
    assert {sector for sector, _ in outbox_sectors(gateway, case_no)} <= {SECTOR, "social_security"}
    assert (SECTOR, "submit_case") in outbox_sectors(gateway, case_no)
    assert after.json()["state"] == "in_process"  # the lead (公安局) has not decided yet

    # Its health, as its own administrator sees it (one sector: its own).
    health = api.get("/v1/adapters", headers=admin)
    assert health.status_code == 200, health.text
    assert list(health.json()) == [SECTOR]
    mine = health.json()[SECTOR]
    assert mine["version"] == VERSION
    assert mine["breaker"] == "closed"
    assert mine["total_calls"] >= 2 and mine["total_failures"] == 0  # a submit and at least one poll
    assert mine["last_success_at"] is not None
    everyone = api.get("/v1/adapters", headers=keys.operator).json()
    assert set(everyone) == {"social_security", SECTOR}


# --- who may ---------------------------------------------------------------------------------------


def test_another_sectors_administrator_may_neither_register_nor_activate_it(
        api: TestClient, gateway: Gateway, admin: dict[str, str], stranger: dict[str, str]) -> None:
    assert_problem(register(api, stranger), 403, "forbidden")
    assert stored_versions(gateway) == 0

    assert register(api, admin).status_code == 201
    assert_problem(activate(api, stranger), 403, "forbidden")
    for path in (f"/v1/adapters/{SECTOR}/rollback", f"/v1/adapters/{SECTOR}/versions/{VERSION}/retire"):
        assert_problem(api.post(path, headers=stranger), 403, "forbidden")
    assert_problem(api.get(f"/v1/adapters/{SECTOR}/versions", headers=stranger), 403, "forbidden")
    versions = api.get(f"/v1/adapters/{SECTOR}/versions", headers=admin).json()["items"]
    assert [(v["version"], v["status"]) for v in versions] == [(VERSION, "registered")]
    assert SECTOR not in gateway.registry.sectors


def test_an_invalid_copy_is_refused_with_the_exact_problem_and_nothing_is_stored(
        api: TestClient, gateway: Gateway, admin: dict[str, str], tmp_path: Path) -> None:
    broken = variant(tmp_path, "medical_security",
                     submit_case__mapping__yaml=("fullName: {from: case.applicant.name}",
                                                 "fullName: {from: case.applicant.nme}"))
    lines = (broken / "submit_case.mapping.yaml").read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, start=1) if "case.applicant.nme" in text)

    body = assert_problem(register(api, admin, broken), 422, "invalid-bundle")
    assert body["errors"] == [{"msg": f"submit_case.mapping.yaml:{line}: request.applicant.fullName: "
                                      "'case.applicant.nme' is not in the canonical message"}]
    assert stored_versions(gateway) == 0
    assert api.get(f"/v1/adapters/{SECTOR}/versions", headers=admin).json()["items"] == []
    assert_problem(activate(api, admin), 404, "unknown-bundle")


def test_the_same_version_twice_is_a_conflict(api: TestClient, admin: dict[str, str], gateway: Gateway) -> None:
    assert register(api, admin).status_code == 201
    assert_problem(register(api, admin), 409, "bundle-conflict")
    assert stored_versions(gateway) == 1


# --- versions: roll back, retire -------------------------------------------------------------------


def test_rollback_and_retire(api: TestClient, gateway: Gateway, admin: dict[str, str], tmp_path: Path) -> None:
    v2 = "2026.12.2"
    second = variant(tmp_path, "medical_security", bundle__yaml=(f'version: "{VERSION}"', f'version: "{v2}"'))

    def statuses() -> dict[str, str]:
        listed = api.get(f"/v1/adapters/{SECTOR}/versions", headers=admin).json()["items"]
        return {v["version"]: v["status"] for v in listed}

    assert_problem(api.post(f"/v1/adapters/{SECTOR}/rollback", headers=admin), 409, "bundle-conflict")
    assert register(api, admin).status_code == 201
    assert activate(api, admin).status_code == 200
    # Nothing earlier to roll back to.
    assert_problem(api.post(f"/v1/adapters/{SECTOR}/rollback", headers=admin), 409, "bundle-conflict")
    assert register(api, admin, second).status_code == 201
    assert statuses() == {VERSION: "active", v2: "registered"}

    assert activate(api, admin, v2).json()["status"] == "active"
    assert statuses() == {VERSION: "inactive", v2: "active"}
    assert gateway.registry.get(SECTOR).version == v2
    assert activate(api, admin, v2).status_code == 200  # activating the active version again changes nothing
    assert statuses() == {VERSION: "inactive", v2: "active"}

    rolled = api.post(f"/v1/adapters/{SECTOR}/rollback", headers=admin)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == VERSION
    assert statuses() == {VERSION: "active", v2: "inactive"}
    assert gateway.registry.get(SECTOR).version == VERSION

    # The active version cannot be retired; the one rolled back from can, and then cannot come back.
    assert_problem(api.post(f"/v1/adapters/{SECTOR}/versions/{VERSION}/retire", headers=admin), 409,
                   "bundle-conflict")
    retired = api.post(f"/v1/adapters/{SECTOR}/versions/{v2}/retire", headers=admin)
    assert retired.status_code == 200, retired.text
    assert retired.json()["status"] == "retired"
    assert statuses() == {VERSION: "active", v2: "retired"}
    assert_problem(activate(api, admin, v2), 409, "bundle-conflict")
    assert_problem(api.post(f"/v1/adapters/{SECTOR}/rollback", headers=admin), 409, "bundle-conflict")
    assert_problem(api.post(f"/v1/adapters/{SECTOR}/versions/9.9/retire", headers=admin), 404, "unknown-bundle")
    assert gateway.registry.get(SECTOR).version == VERSION


# --- what a joining sector must not be able to do to the others ----------------------------------------


def submit_sectors(gateway: Gateway, case_no: str) -> dict[str, str]:
    """task id -> the sector its submit_case message was addressed to."""
    with gateway.engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.task_id, t.outbox.c.sector)
                            .where(t.outbox.c.case_no == case_no, t.outbox.c.operation == "submit_case"))
        return {r.task_id: r.sector for r in rows}


def test_a_sector_cannot_take_another_sectors_department(
        api: TestClient, gateway: Gateway, keys: Keys, admin: dict[str, str], ybj: HousingFundSimulator,
        tmp_path: Path) -> None:
    greedy = variant(tmp_path, "medical_security", bundle__yaml=(f"departments: [{MEDICAL_SECURITY}]",
                                                                 f"departments: [{SOCIAL_SECURITY_AGENCY}]"))
    # Refusing it (at registration or activation) would do; so would routing the agency's tasks as before.
    if register(api, admin, greedy).status_code == 201:
        activate(api, admin)
    case = submit_birth(api, keys)
    social_task = tasks_by_department(case)[SOCIAL_SECURITY_AGENCY]["task_id"]
    assert submit_sectors(gateway, case["case_no"]).get(social_task) == "social_security"
    drain(gateway, lambda: gateway.service.get(case["case_no"]).task(social_task).state.concluded)
    assert ybj.counters["cases_created"] == 0


def test_a_matters_only_bundle_takes_only_its_own_departments_tasks(
        api: TestClient, gateway: Gateway, keys: Keys, admin: dict[str, str], tmp_path: Path) -> None:
    by_matter = variant(tmp_path, "medical_security", bundle__yaml=(
        f"departments: [{MEDICAL_SECURITY}]\n  matters: []", f"departments: []\n  matters: [{BIRTH}]"))
    assert register(api, admin, by_matter).status_code == 201
    assert activate(api, admin).status_code == 200
    case = submit_birth(api, keys)
    tasks = tasks_by_department(case)
    assert [tasks[d]["via"] for d in (POLICE, HEALTH)] == ["back_office", "back_office"]
    sectors = submit_sectors(gateway, case["case_no"])
    assert sectors == {tasks[MEDICAL_SECURITY]["task_id"]: SECTOR,
                       tasks[SOCIAL_SECURITY_AGENCY]["task_id"]: "social_security"}


def test_a_bundle_that_cannot_be_built_here_breaks_only_its_own_sector(
        gateway: Gateway, keys: Keys, admin: dict[str, str], simulator: SocialSecuritySimulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YIWANG_SECRET_YB_CLIENT_SECRET")  # the deployment has not been given it yet
    with TestClient(create_app(gateway), raise_server_exceptions=False) as api:
        assert register(api, admin).status_code == 201
        activate(api, admin)  # refusing it would do too: the other sectors must carry on either way
        answer = api.post("/v1/cases", json=COMPLETE_APPLICATION, headers=keys.hall)  # a social-security matter
        assert answer.status_code == 201, answer.text
        case_no = answer.json()["case_no"]
        drain(gateway, lambda: gateway.service.get(case_no).state == "approved")
        assert api.get("/v1/adapters", headers=keys.operator).status_code == 200
