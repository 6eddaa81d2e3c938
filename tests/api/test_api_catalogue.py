"""The catalogue endpoints, through TestClient on an app assembled here (the real app is wired elsewhere)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse

from gateway.catalogue.matters import Catalogue, matter_to_document
from gateway.domain.matter import Material, Matter
from gateway.domain.roles import ALL_ROLES, Identity, NotAllowed, NotAuthenticated, Role
from gateway.http.problems import problem_response
from gateway.http.routers.catalogue import MatterGuide, install_catalogue_error_handlers, router
from tests.support.catalogue import (  # noqa: F401 - fixtures
    PENSION_TRANSFER,
    SHIPPED,
    UNEMPLOYMENT,
    catalogue,
    engine,
    new_matter,
    shipped,
)

HALL, ADMIN, CLERK = "hall-key", "admin-key", "clerk-key"


class DictKeyStore:
    """The key store's contract over a dict (the real one, with hashing and revocation, lives elsewhere)."""

    def __init__(self, identities: dict[str, Identity]) -> None:
        self._identities = identities

    def authenticate(self, raw_key: str) -> Identity | None:
        return self._identities.get(raw_key)


def _identity(name: str, *roles: Role) -> Identity:
    return Identity(id=name, name=name, roles=frozenset(roles))


@pytest.fixture
def client(catalogue: Catalogue) -> Iterator[TestClient]:  # noqa: F811 - the imported fixture
    app = FastAPI()
    app.include_router(router)
    install_catalogue_error_handlers(app)

    async def unauthenticated(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(401, "unauthenticated", "需要有效的 API 密钥", str(exc), request.url.path)

    async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(403, "forbidden", "无权执行此操作", str(exc), request.url.path)

    app.add_exception_handler(NotAuthenticated, unauthenticated)
    app.add_exception_handler(NotAllowed, not_allowed)
    app.state.catalogue = catalogue
    app.state.keystore = DictKeyStore({
        HALL: _identity("online-hall", Role.HALL_CLIENT),
        ADMIN: _identity("catalogue-admin", Role.CATALOGUE_ADMIN),
        CLERK: _identity("clerk", Role.CLERK),
    })
    with TestClient(app) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:yiwang:problem:{slug}" and body["status"] == status
    return body


# --- reads -----------------------------------------------------------------------------------------------


def test_every_role_reads_the_published_guide(client: TestClient) -> None:
    for key in (HALL, ADMIN, CLERK):
        answer = client.get(f"/v1/matters/{UNEMPLOYMENT}", headers=auth(key))
        assert answer.status_code == 200
        assert answer.json() == matter_to_document(shipped(UNEMPLOYMENT))


def test_the_listing_filters(client: TestClient) -> None:
    everything = client.get("/v1/matters", headers=auth(HALL)).json()["items"]
    assert len(everything) == len(SHIPPED)
    assert set(everything[0]) == set(MatterGuide.model_fields) & set(everything[0])  # a summary of the guide
    queries = {
        "department=住房公积金管理中心&type=20&level=3": 4,
        "service_object=2": 1,
        "q=解除或终止劳动合同证明": 2,  # 失业保险金申领, 失业登记
        "department=12150200MB1A00010L&level=4": 1,
    }
    for query, count in queries.items():
        assert len(client.get(f"/v1/matters?{query}", headers=auth(HALL)).json()["items"]) == count, query
    assert client.get("/v1/matters?level=9", headers=auth(HALL)).status_code == 422


def test_an_unknown_matter_is_a_404_problem(client: TestClient) -> None:
    assert_problem(client.get("/v1/matters/NOSUCHCODE", headers=auth(HALL)), 404, "unknown-matter")
    assert_problem(client.get("/v1/matters/NOSUCHCODE/versions", headers=auth(HALL)), 404, "unknown-matter")
    assert_problem(client.get(f"/v1/matters/{UNEMPLOYMENT}/versions/9", headers=auth(HALL)), 404, "unknown-matter")


def test_versions_are_listed_and_each_stays_readable(client: TestClient, catalogue: Catalogue) -> None:  # noqa: F811
    catalogue.draft(replace(shipped(UNEMPLOYMENT), hours="全天"), "admin")
    versions = client.get(f"/v1/matters/{UNEMPLOYMENT}/versions", headers=auth(HALL)).json()["items"]
    assert [(v["version"], v["status"], v["created_by"]) for v in versions] == [(1, "published", "seed"),
                                                                                 (2, "draft", "admin")]
    second = client.get(f"/v1/matters/{UNEMPLOYMENT}/versions/2", headers=auth(HALL)).json()
    assert (second["version"], second["hours"]) == (2, "全天")


# --- roles -----------------------------------------------------------------------------------------------


def test_a_hall_client_may_read_but_not_administer(client: TestClient) -> None:
    document = matter_to_document(new_matter("7"))
    assert_problem(client.post("/v1/catalogue/drafts", json=document, headers=auth(HALL)), 403, "forbidden")
    for action in ("validate", "publish"):
        url = f"/v1/catalogue/matters/{UNEMPLOYMENT}/versions/1/{action}"
        assert_problem(client.post(url, headers=auth(HALL)), 403, "forbidden")


def test_no_key_or_an_unknown_key_is_a_401(client: TestClient) -> None:
    assert_problem(client.get("/v1/matters"), 401, "unauthenticated")
    assert_problem(client.get("/v1/matters", headers=auth("nobody")), 401, "unauthenticated")
    assert_problem(client.post("/v1/catalogue/drafts", json={}), 401, "unauthenticated")


def test_every_route_declares_its_roles() -> None:
    for route in router.routes:
        assert isinstance(route, APIRoute)
        admitted = [d.call.admitted_roles for d in route.dependant.dependencies  # type: ignore[union-attr]
                    if hasattr(d.call, "admitted_roles")]
        assert len(admitted) == 1, route.path
        expected = frozenset(ALL_ROLES) if route.methods == {"GET"} else frozenset({Role.CATALOGUE_ADMIN})
        assert admitted[0] == expected, route.path


# --- administration --------------------------------------------------------------------------------------


def test_draft_validate_publish(client: TestClient) -> None:
    changed = replace(shipped(PENSION_TRANSFER), promised_limit=replace(shipped(PENSION_TRANSFER).promised_limit,
                                                                         value=10))
    created = client.post("/v1/catalogue/drafts", json=matter_to_document(changed), headers=auth(ADMIN))
    assert created.status_code == 201
    assert created.json() == {"code": PENSION_TRANSFER, "version": 2, "status": "draft", "problems": []}
    assert created.headers["location"] == f"/v1/matters/{PENSION_TRANSFER}/versions/2"

    base = f"/v1/catalogue/matters/{PENSION_TRANSFER}/versions/2"
    assert client.post(f"{base}/validate", headers=auth(ADMIN)).json() == {"problems": []}
    published = client.post(f"{base}/publish", headers=auth(ADMIN))
    assert published.status_code == 200
    assert published.json() == matter_to_document(replace(changed, version=2))
    assert client.get(f"/v1/matters/{PENSION_TRANSFER}", headers=auth(HALL)).json()["promised_limit"]["value"] == 10

    conflict = assert_problem(client.post(f"{base}/publish", headers=auth(ADMIN)), 409, "version-conflict")
    assert "只有草稿（draft）可以发布" in conflict["detail"]
    retired = client.post(f"/v1/catalogue/matters/{PENSION_TRANSFER}/versions/1/publish", headers=auth(ADMIN))
    assert_problem(retired, 409, "version-conflict")


def test_an_invalid_draft_is_stored_with_its_problems_and_refused_publication(client: TestClient) -> None:
    broken = replace(new_matter("7"), materials=(Material("身份证等"),), legal_basis="")
    created = client.post("/v1/catalogue/drafts", json=matter_to_document(broken), headers=auth(ADMIN))
    problems = ["materials[0].name '身份证等' is a catch-all (contains 等); name each material exactly",
                "legal_basis must not be empty"]
    assert created.status_code == 201 and created.json()["problems"] == problems

    base = f"/v1/catalogue/matters/{broken.implementation_code}/versions/1"
    assert client.post(f"{base}/validate", headers=auth(ADMIN)).json() == {"problems": problems}
    refused = assert_problem(client.post(f"{base}/publish", headers=auth(ADMIN)), 422, "invalid-matter")
    assert refused["errors"] == [{"msg": p} for p in problems]
    assert_problem(client.get(f"/v1/matters/{broken.implementation_code}", headers=auth(HALL)), 404, "unknown-matter")


def test_an_unreadable_document_is_a_422_naming_the_field(client: TestClient) -> None:
    document = matter_to_document(new_matter("7"))
    document["level"] = "city"
    refused = assert_problem(client.post("/v1/catalogue/drafts", json=document, headers=auth(ADMIN)), 422,
                             "invalid-matter")
    assert refused["errors"] == [{"msg": "request body: level: expected one of 1, 2, 3, 4, 5, 6, got str 'city'"}]
    short = {**matter_to_document(new_matter("7")), "implementation_code": "123"}
    refused = assert_problem(client.post("/v1/catalogue/drafts", json=short, headers=auth(ADMIN)), 422,
                             "invalid-matter")
    assert "must have 31 characters" in refused["errors"][0]["msg"]


def test_administering_an_unknown_version_is_a_404(client: TestClient) -> None:
    for action in ("validate", "publish"):
        url = f"/v1/catalogue/matters/{UNEMPLOYMENT}/versions/5/{action}"
        assert_problem(client.post(url, headers=auth(ADMIN)), 404, "unknown-matter")


# --- the OpenAPI document --------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_guide_and_the_problems(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    guide = spec["components"]["schemas"]["MatterGuide"]["properties"]
    assert {"materials", "implementing_body", "co_departments", "form_schema", "promised_limit"} <= set(guide)
    publish = spec["paths"]["/v1/catalogue/matters/{code}/versions/{version}/publish"]["post"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(publish["responses"])
    draft_body = spec["paths"]["/v1/catalogue/drafts"]["post"]["requestBody"]["content"]["application/json"]
    assert draft_body["schema"]["$ref"] == "#/components/schemas/MatterGuide"


def test_the_guide_model_covers_every_matter_field() -> None:
    assert set(MatterGuide.model_fields) == {f.name for f in dataclasses.fields(Matter)}
