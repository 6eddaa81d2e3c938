"""Adding an adapter kind is one folder and one entry in `KINDS`: a toy kind registered from the test suite
(`tests/support/toy_kind.py`, entered in `adapters.kinds.KINDS` for one test) has its bundles validated by
the real bundle validation, and a case routed to it delivered through the real delivery path.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.bundle import BundleError, load_bundle, preview, schema, validate_bundle
from adapters.kinds import KINDS
from gateway.bootstrap.app import Gateway, create_app
from gateway.sectors.bundle_records import pack_folder
from tests.support.gateways import Keys, drain
from tests.support.toy_kind import ToyKind, ToyOptions

BUNDLE = Path(__file__).parents[1] / "data" / "bundles" / "toy_medical_security"
REST_BUNDLE = Path(__file__).parents[1] / "data" / "bundles" / "medical_security"
SECTOR = "toy_medical_security"
MEDICAL_SECURITY = "11150200MB0G00110N"  # 包头市医疗保障局, a co-department of the birth matter
BIRTH_APPLICATION: dict[str, Any] = {
    "matter_code": "11150200MB0E0007023000114004000",  # 新生儿出生登记一件事
    "applicant": {"name": "李娜", "id_number": "150203199204150021", "phone": "13847100002"},
    "materials": [{"name": "出生医学证明"}, {"name": "父母居民身份证"}, {"name": "父母居民户口簿"}, {"name": "结婚证"}],
    "form": {"newborn_name": "李小满", "newborn_sex": "2", "birth_date": "2026-11-20",
             "guardian_id_number": "150203199204150021", "join_medical_insurance": True,
             "apply_social_security_card": True},
}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> ToyKind:
    """The toy kind, registered for this test only (monkeypatch takes it out again)."""
    kind = ToyKind()
    monkeypatch.setitem(KINDS, kind.name, kind)
    return kind


def variant(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    descriptor = folder / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8")
    assert text.count(old) == 1
    descriptor.write_text(text.replace(old, new), encoding="utf-8")
    return folder


def test_an_unregistered_kind_is_refused() -> None:
    with pytest.raises(BundleError, match=r"bundle.yaml:\d+: kind: unknown adapter kind 'toy' \(known: soap, rest, ferry\)"):
        load_bundle(BUNDLE)


def test_a_registered_kind_is_in_the_schema_and_its_bundle_validates(toy: ToyKind) -> None:
    assert schema()["properties"]["kind"]["enum"] == ["soap", "rest", "ferry", "toy"]
    assert "toy_prefix" in schema()["properties"]
    assert [str(p) for p in validate_bundle(BUNDLE)] == []
    bundle = load_bundle(BUNDLE)
    assert (bundle.kind, bundle.options) == ("toy", ToyOptions("YB-TOY-"))
    shown = preview(bundle, "submit_case", {"case": {"case_no": "C1", "applicant": {"id_number": "X"}}})
    assert shown == {"kind": "toy", "operation": "submit", "endpoint": "http://127.0.0.1:9",
                     "request": {"case_no": "C1", "id_number": "X"}}


def test_the_kinds_rules_apply_to_its_bundles_and_to_the_others(toy: ToyKind, tmp_path: Path) -> None:
    # Its auth forms: bearer and none, not hmac.
    hmac = variant(tmp_path / "a", BUNDLE, "auth: {type: none}", "auth: {type: hmac, secret: {secret: env:X}}")
    with pytest.raises(BundleError, match=r"auth.type: unknown auth type 'hmac' for toy \(known: bearer, none\)"):
        load_bundle(hmac)
    # Its own option is refused in another kind's bundle, and another kind's option in its bundle.
    rest = variant(tmp_path / "b", REST_BUNDLE, "kind: rest\n", "kind: rest\ntoy_prefix: X-\n")
    with pytest.raises(BundleError, match=r"bundle.yaml:\d+: toy_prefix: toy bundles only"):
        load_bundle(rest)
    soapish = variant(tmp_path / "c", BUNDLE, "toy_prefix: YB-TOY-\n", "toy_prefix: YB-TOY-\nsoap_version: \"1.1\"\n")
    with pytest.raises(BundleError, match=r"bundle.yaml:\d+: soap_version: soap bundles only"):
        load_bundle(soapish)
    # Its service description check: a mapping naming an operation the toy sector does not offer.
    mapping = tmp_path / "d"
    shutil.copytree(BUNDLE, mapping)
    (mapping / "toy.json").write_text('{"operations": ["submit"]}', encoding="utf-8")
    assert [str(p) for p in validate_bundle(mapping)] == [
        "query_status.mapping.yaml:1: operation: toy.json offers no operation 'status'"]


def test_a_case_routed_to_the_toy_kind_is_delivered(toy: ToyKind, make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(bundles=())  # every other department decides through the back office
    gateway.bundles.register(pack_folder(BUNDLE), "test")
    gateway.bundles.activate(SECTOR, "1", "test", force=True)
    with TestClient(create_app(gateway)) as api:
        keys = Keys.issue(gateway)
        answer = api.post("/v1/cases", json=BIRTH_APPLICATION, headers=keys.hall)
        assert answer.status_code == 201, answer.text
        case_no = answer.json()["case_no"]
        task = next(t for t in answer.json()["tasks"] if t["credit_code"] == MEDICAL_SECURITY)
        assert task["via"] == "sector_system"

        drain(gateway, lambda: gateway.service.get(case_no).task(task["task_id"]).state.concluded)

        done = next(t for t in api.get(f"/v1/cases/{case_no}", headers=keys.hall).json()["tasks"]
                    if t["credit_code"] == MEDICAL_SECURITY)
    assert (done["state"], done["sector_ref"], done["opinion"]) == ("approved", "YB-TOY-1", "toy approves")
    assert toy.sent[0] == ("submit", {"case_no": case_no, "id_number": "150203199204150021", "prefix": "YB-TOY-"})
    assert [operation for operation, _ in toy.sent[1:]] == ["status"] * (len(toy.sent) - 1)


def test_registration_is_undone_after_the_test() -> None:
    """Runs after the tests above (file order): the toy kind they registered is gone, and so is its schema."""
    assert list(KINDS) == ["soap", "rest", "ferry"]
    assert schema()["properties"]["kind"]["enum"] == ["soap", "rest", "ferry"]

