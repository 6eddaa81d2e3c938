"""The four-eyes rule (YIWANG_FOUR_EYES=1): activating a bundle version and publishing a guide wait for a
second identity's approval; the requester never approves their own request; the CLI refuses and says why."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapters.registry import default_bundles_dir
from adapters.simulators.housing_fund import HousingFundSimulator
from gateway.bootstrap.app import Gateway, create_app
from gateway.catalogue.matters import matter_to_document
from gateway.cli.adapters import make_adapters_app
from gateway.cli.catalogue import make_catalogue_app
from gateway.cli.common import REFUSED
from gateway.domain.roles import Role
from gateway.sectors.bundle_records import pack_folder, unpacked
from tests.support.gateways import Keys

SECTOR = "housing_fund"
PENSION_TRANSFER = "12150200MB1A00010L3000805002000"  # 职工基本养老保险关系转移接续


def problem(answer: Any, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["type"] == f"urn:yiwang:problem:{slug}", body
    return body


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Iterator[Gateway]:
    """Four-eyes on; the housing-fund bundle registered and tested against its sector, not yet active."""
    with HousingFundSimulator() as housing_fund:
        gateway = make_gateway(bundles=("social_security",), four_eyes=True,
                               sector_endpoints={SECTOR: housing_fund.url})
        registered = gateway.bundles.register(pack_folder(default_bundles_dir() / SECTOR), "test")
        assert gateway.sector_calls.test_version(SECTOR, registered.version).test_outcome == "accepted"
        yield gateway


@pytest.fixture
def version(gateway: Gateway) -> str:
    return gateway.bundles.versions(SECTOR)[0].version


@pytest.fixture
def as_() -> Callable[..., TestClient]:
    return lambda gateway, *roles, **scope: TestClient(create_app(gateway), headers=Keys.of(gateway, *roles, **scope))


def status_of(gateway: Gateway, version: str) -> str:
    return gateway.bundles.get(SECTOR, version).status


def test_activation_waits_for_a_second_identity(gateway: Gateway, version: str, as_: Any) -> None:
    first = as_(gateway, Role.SECTOR_ADMIN, sector=SECTOR)
    second = as_(gateway, Role.SECTOR_ADMIN, sector=SECTOR)
    path = f"/v1/adapters/{SECTOR}/versions/{version}/activate"

    held = first.post(path)
    assert held.status_code == 202, held.text
    approval = held.json()
    assert held.headers["Location"] == f"/v1/approvals/{approval['id']}"
    assert (approval["action"], approval["status"], approval["sector"]) == ("activate_bundle", "pending", SECTOR)
    assert status_of(gateway, version) == "registered"  # nothing happened yet
    assert first.post(path).json()["id"] == approval["id"]  # asking again finds the same request

    problem(first.post(f"/v1/approvals/{approval['id']}/approve"), 403, "own-request")
    assert status_of(gateway, version) == "registered"
    assert [a["id"] for a in second.get("/v1/approvals").json()["items"]] == [approval["id"]]

    approved = second.post(f"/v1/approvals/{approval['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["approval"]["status"] == "approved"
    assert approved.json()["result"]["status"] == "active"
    assert status_of(gateway, version) == "active"
    requester, approver = approval["requested_by"], approved.json()["approval"]["decided_by"]
    assert requester != approver
    assert gateway.bundles.versions(SECTOR)[0].public()["activated_at"] is not None

    problem(second.post(f"/v1/approvals/{approval['id']}/approve"), 409, "already-decided")
    assert second.get("/v1/approvals").json()["items"] == []  # nothing pending any more
    decided = second.get("/v1/approvals", params={"status": "approved"}).json()["items"]
    assert [(a["requested_by"], a["decided_by"]) for a in decided] == [(requester, approver)]


def test_only_an_identity_that_may_activate_may_approve(gateway: Gateway, version: str, as_: Any) -> None:
    requester = as_(gateway, Role.SECTOR_ADMIN, sector=SECTOR)
    approval = requester.post(f"/v1/adapters/{SECTOR}/versions/{version}/activate").json()
    other_sector = as_(gateway, Role.SECTOR_ADMIN, sector="social_security")
    catalogue_admin = as_(gateway, Role.CATALOGUE_ADMIN)
    for outsider in (other_sector, catalogue_admin):
        problem(outsider.post(f"/v1/approvals/{approval['id']}/approve"), 403, "forbidden")
        problem(outsider.post(f"/v1/approvals/{approval['id']}/reject", json={}), 403, "forbidden")
        problem(outsider.get(f"/v1/approvals/{approval['id']}"), 403, "forbidden")
        assert outsider.get("/v1/approvals").json()["items"] == []  # sector A's admin does not see sector B's request
    problem(as_(gateway, Role.AUDITOR).get("/v1/approvals"), 403, "forbidden")
    assert status_of(gateway, version) == "registered"

    system_admin = as_(gateway, Role.SYSTEM_ADMIN)  # any sector's bundles: may approve
    assert system_admin.post(f"/v1/approvals/{approval['id']}/approve").status_code == 200
    assert status_of(gateway, version) == "active"


def test_a_rejected_request_changes_nothing(gateway: Gateway, version: str, as_: Any) -> None:
    requester = as_(gateway, Role.OPERATOR)
    approval = requester.post(f"/v1/adapters/{SECTOR}/versions/{version}/activate").json()
    withdrawn = requester.post(f"/v1/approvals/{approval['id']}/reject", json={"reason": "wrong version"})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "rejected"
    assert withdrawn.json()["note"] == "wrong version"
    problem(as_(gateway, Role.OPERATOR).post(f"/v1/approvals/{approval['id']}/approve"), 409, "already-decided")
    assert status_of(gateway, version) == "registered"


def test_an_impossible_request_is_refused_at_once(gateway: Gateway, version: str, as_: Any) -> None:
    operator = as_(gateway, Role.OPERATOR)
    problem(operator.post(f"/v1/adapters/{SECTOR}/versions/9.9.9/activate"), 404, "unknown-bundle")
    gateway.bundles.retire(SECTOR, version, "test")
    problem(operator.post(f"/v1/adapters/{SECTOR}/versions/{version}/activate"), 409, "bundle-conflict")
    assert operator.get("/v1/approvals").json()["items"] == []
    problem(operator.post("/v1/approvals/ap_nobody/approve"), 404, "unknown-approval")


def test_an_action_that_fails_on_approval_marks_the_approval_failed(gateway: Gateway, version: str,
                                                                    as_: Any) -> None:
    approval = as_(gateway, Role.OPERATOR).post(f"/v1/adapters/{SECTOR}/versions/{version}/activate").json()
    gateway.bundles.retire(SECTOR, version, "test")  # meanwhile
    approver = as_(gateway, Role.OPERATOR)
    problem(approver.post(f"/v1/approvals/{approval['id']}/approve"), 409, "bundle-conflict")
    failed = approver.get(f"/v1/approvals/{approval['id']}").json()
    assert failed["status"] == "failed" and "已退役" in failed["note"]


def test_publication_waits_for_a_second_catalogue_administrator(gateway: Gateway, as_: Any) -> None:
    author, reviewer = as_(gateway, Role.CATALOGUE_ADMIN), as_(gateway, Role.CATALOGUE_ADMIN)
    shipped = gateway.catalogue.published(PENSION_TRANSFER)
    assert shipped is not None
    changed = replace(shipped, promised_limit=replace(shipped.promised_limit, value=10))
    assert author.post("/v1/catalogue/drafts", json=matter_to_document(changed)).status_code == 201
    path = f"/v1/catalogue/matters/{PENSION_TRANSFER}/versions/2/publish"

    held = author.post(path)
    assert held.status_code == 202 and held.json()["action"] == "publish_matter", held.text
    assert gateway.catalogue.published(PENSION_TRANSFER).version == 1  # type: ignore[union-attr]
    problem(author.post(f"/v1/approvals/{held.json()['id']}/approve"), 403, "own-request")
    problem(as_(gateway, Role.OPERATOR).post(f"/v1/approvals/{held.json()['id']}/approve"), 403, "forbidden")

    approved = reviewer.post(f"/v1/approvals/{held.json()['id']}/approve")
    assert approved.status_code == 200 and approved.json()["result"]["version"] == 2, approved.text
    versions = gateway.catalogue.versions(PENSION_TRANSFER)
    assert [v["status"] for v in versions] == ["retired", "published"]
    assert versions[1]["published_by"] == f"identity:{held.json()['requested_by']} approved by " \
                                          f"identity:{approved.json()['approval']['decided_by']}"
    problem(author.post("/v1/catalogue/matters/NOPE/versions/1/publish"), 404, "unknown-matter")


def test_the_cli_refuses_guarded_actions_when_four_eyes_is_on(gateway: Gateway, version: str,
                                                               tmp_path: Any) -> None:
    runner = CliRunner()
    adapters = make_adapters_app(lambda: gateway.bundles, lambda: gateway.sector_calls, lambda: True)
    refused = runner.invoke(adapters, ["activate", SECTOR, version])
    assert refused.exit_code == REFUSED and "four-eyes is on" in refused.output and "Traceback" not in refused.output
    assert f"POST /v1/adapters/{SECTOR}/versions/{version}/activate" in refused.output
    assert status_of(gateway, version) == "registered"

    catalogue_file = tmp_path / "one.yaml"
    shipped = gateway.catalogue.published(PENSION_TRANSFER)
    catalogue_file.write_text(yaml.safe_dump({"matters": [matter_to_document(shipped)]}, allow_unicode=True))
    catalogue_cli = make_catalogue_app(lambda: gateway.catalogue, lambda: True)
    refused = runner.invoke(catalogue_cli, ["import", str(catalogue_file)])
    assert refused.exit_code == REFUSED and "four-eyes is on" in refused.output
    assert len(gateway.catalogue.versions(PENSION_TRANSFER)) == 1
    drafted = runner.invoke(catalogue_cli, ["import", "--draft", str(catalogue_file)])
    assert drafted.exit_code == 0, drafted.output
    assert [v["status"] for v in gateway.catalogue.versions(PENSION_TRANSFER)] == ["published", "draft"]


def test_with_four_eyes_off_activation_is_immediate(make_gateway: Callable[..., Gateway], as_: Any) -> None:
    gateway = make_gateway(bundles=())
    archive = pack_folder(default_bundles_dir() / SECTOR)
    gateway.bundles.register(archive, "test")
    with unpacked(archive) as bundle:
        version = bundle.version
    # Never tested (no housing-fund system here): only a forced activation goes through.
    answer = as_(gateway, Role.SECTOR_ADMIN, sector=SECTOR).post(f"/v1/adapters/{SECTOR}/versions/{version}/activate",
                                                                 json={"force": True})
    assert answer.status_code == 200 and answer.json()["status"] == "active"
