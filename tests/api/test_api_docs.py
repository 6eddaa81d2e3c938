"""The API's self-description: /docs works with no internet, /openapi.json says how to authorise, who may call
what, every refusal, and the named queries of the bundles active now (issue 16, "The HTTP API").

Browser-free: the served page is parsed, every URL it names is fetched from the gateway itself, and nothing in
it points elsewhere (with the network cut, a page naming a CDN would stay blank)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.bootstrap.app import Gateway, create_app
from gateway.domain.roles import Role
from gateway.http.openapi import served_routes
from gateway.http.problems import PROBLEM_MEDIA_TYPE
from tests.support.gateways import activate_shipped
from tests.support.routes import admitted_roles

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class Page(HTMLParser):
    """The URLs a page makes the browser load, and its inline scripts."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name):
                self.urls.append(found[name] or "")
        self._in_inline_script = tag == "script" and not found.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway(bundles=())


@pytest.fixture
def anonymous(gateway: Gateway) -> TestClient:
    return TestClient(create_app(gateway))  # no key: the docs are open


# --- /docs with the network cut ------------------------------------------------------------------------------


def test_the_docs_page_loads_everything_from_the_gateway(anonymous: TestClient) -> None:
    page = anonymous.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not re.search(r"cdn|https?://", page.text, re.IGNORECASE)
    parsed = Page(page.text)
    assert len(parsed.urls) == 3  # the script, the stylesheet, the icon
    for url in parsed.urls:
        assert url.startswith("/") and not url.startswith("//"), url  # same origin
        asset = anonymous.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[url[url.rindex("."):]]), url
        assert len(asset.content) > 500, url
        assert "immutable" in asset.headers["cache-control"]  # the Swagger UI version is in the URL
        assert asset.headers["x-content-type-options"] == "nosniff"
    script = anonymous.get(next(u for u in parsed.urls if u.endswith(".js")))
    assert b"SwaggerUIBundle" in script.content and len(script.content) > 500_000
    assert "'/openapi.json'" in "".join(parsed.inline_scripts)  # the page reads our document


def test_the_docs_page_runs_under_a_policy_of_this_origin_only(anonymous: TestClient) -> None:
    page = anonymous.get("/docs")
    policy = dict(d.strip().split(" ", 1) for d in page.headers["content-security-policy"].split(";"))
    inline = Page(page.text).inline_scripts
    hashes = {f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline}
    assert set(policy["script-src"].split()) == {"'self'", *hashes}  # the initialiser admitted by its hash only
    assert policy["style-src"] == "'self'"
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert page.headers["cache-control"] == "no-cache"
    assert "validatorUrl" in inline[0] and '"validatorUrl": null' in inline[0]  # no badge from the internet


def test_the_docs_answer_get_only_and_nothing_else_of_the_package(anonymous: TestClient) -> None:
    asset = Page(anonymous.get("/docs").text).urls[0]
    assert anonymous.post("/docs").status_code == 405
    assert anonymous.post("/openapi.json").status_code == 405
    assert anonymous.get("/openapi.json").headers["cache-control"] == "no-cache"  # it follows the bundles
    assert anonymous.post(asset).status_code == 405
    folder = asset.rsplit("/", 1)[0]
    for elsewhere in (f"{folder}/index.html", f"{folder}/swagger-ui.js.map", f"{folder}/..%2F__init__.py",
                      "/docs/assets/0.0.1/swagger-ui.css", "/redoc", "/docs/oauth2-redirect"):
        answer = anonymous.get(elsewhere)
        assert answer.status_code == 404, elsewhere
        assert answer.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)


# --- how to authorise, and who may call what ------------------------------------------------------------------


def test_the_document_declares_the_key_and_the_client_certificate(anonymous: TestClient) -> None:
    schemes = anonymous.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["apiKey"]["type"] == "http" and schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["clientCertificate"]["type"] == "mutualTLS"


def test_each_guarded_operation_requires_a_credential_and_names_its_roles(gateway: Gateway,
                                                                          anonymous: TestClient) -> None:
    document = anonymous.get("/openapi.json").json()
    guarded = {}
    for route in _api_routes(anonymous.app):
        roles = frozenset().union(*admitted_roles(route.dependant))
        guarded |= {(m.lower(), route.path): roles for m in route.methods}
    assert len([r for r in guarded.values() if r]) >= 60
    for (method, path), roles in guarded.items():
        operation = document["paths"][path][method]
        if roles:
            assert operation["security"] == [{"apiKey": []}, {"clientCertificate": []}], (method, path)
            assert all(f"`{role.value}`" in operation["description"] for role in roles), (method, path)
            assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
        else:
            assert "security" not in operation, (method, path)
    for open_operation in (("get", "/healthz"), ("get", "/readyz"), ("post", "/callbacks/{sector}")):
        assert "security" not in document["paths"][open_operation[1]][open_operation[0]]
    submit = document["paths"]["/v1/cases"]["post"]
    assert f"`{Role.HALL_CLIENT.value}`" in submit["description"]


def test_a_key_authorises_as_the_document_says(gateway: Gateway, anonymous: TestClient) -> None:
    """What Swagger UI's "try it out" sends after "Authorize" with a key: `Authorization: Bearer <key>`."""
    _, key = gateway.keys.issue("docs", frozenset({Role.HALL_CLIENT}))
    assert anonymous.get("/v1/matters").status_code == 401
    assert anonymous.get("/v1/matters", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_every_operation_is_described_in_its_users_words(anonymous: TestClient) -> None:
    for (method, path), operation in _operations(anonymous.get("/openapi.json").json()):
        assert _chinese(operation.get("summary", "")), (method, path, operation.get("summary"))
        assert len(operation["summary"]) <= 30, (method, path)
        assert _chinese(operation.get("description", "")), (method, path)


def test_every_answer_is_described_and_every_error_is_problem_json(anonymous: TestClient) -> None:
    document = anonymous.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for (method, path), operation in _operations(document):
        for status, response in operation["responses"].items():
            assert _chinese(response["description"]), (method, path, status)
            if int(status) >= 400:
                assert list(response["content"]) == [PROBLEM_MEDIA_TYPE], (method, path, status)
                schema = schemas[response["content"][PROBLEM_MEDIA_TYPE]["schema"]["$ref"].rsplit("/", 1)[1]]
                assert {"type", "title", "status", "detail"} <= set(schema["properties"]), (method, path, status)
        if "requestBody" in operation:
            assert "413" in operation["responses"], (method, path)  # every body has a size limit


# --- the named queries of the active bundles --------------------------------------------------------------------


def test_the_named_queries_of_the_active_bundles_appear_with_their_parameters(gateway: Gateway,
                                                                              anonymous: TestClient) -> None:
    before = anonymous.get("/openapi.json").json()["paths"]
    assert "/v1/queries/housing_fund_balance" not in before

    activate_shipped(gateway.bundles, "housing_fund")  # a sector team registers and activates its bundle
    after = anonymous.get("/openapi.json").json()
    query = after["paths"]["/v1/queries/housing_fund_balance"]["post"]
    assert "housing_fund" in query["description"] and "named queries" in query["tags"]
    assert query["security"] == [{"apiKey": []}, {"clientCertificate": []}]
    body = query["requestBody"]["content"]["application/json"]["schema"]
    params = body["properties"]["params"]
    assert params["required"] == ["id_number"]
    assert "idCardNo" in params["properties"]["id_number"]["description"]  # where the sector takes it
    assert "id_number" in query["description"]
    assert {"401", "403", "404", "422", "502", "503", "504"} <= set(query["responses"])
    assert "/v1/queries/housing_fund_deposits" in after["paths"]
    assert "/v1/queries/{name}" in after["paths"]  # the one route serving them all

    activate_shipped(gateway.bundles, "social_security")  # the document follows the registry, not a stale cache
    again = anonymous.get("/openapi.json").json()["paths"]
    params = _params(again["/v1/queries/social_insurance_contributions"]["post"])
    assert set(params["properties"]) == {"id_number"}
    assert "zjhm" in params["properties"]["id_number"]["description"]


def test_a_documented_query_is_served_as_documented(gateway: Gateway, anonymous: TestClient) -> None:
    activate_shipped(gateway.bundles, "housing_fund")
    _, key = gateway.keys.issue("docs", frozenset({Role.HALL_CLIENT}))
    refused = anonymous.post("/v1/queries/housing_fund_balance", json={"params": {}},
                             headers={"Authorization": f"Bearer {key}"})
    documented = anonymous.get("/openapi.json").json()["paths"]["/v1/queries/housing_fund_balance"]["post"]
    assert refused.status_code == 422, refused.text  # the required parameter is missing: nothing was sent
    assert str(refused.status_code) in documented["responses"]


def _params(operation: dict[str, Any]) -> dict[str, Any]:
    return operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["params"]  # type: ignore[no-any-return]


def _operations(document: dict[str, Any]) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    return [((method, path), operation) for path, item in document["paths"].items()
            for method, operation in item.items()]


def _chinese(text: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", text))


def _api_routes(app: Any) -> list[Any]:
    return [r for r in served_routes(app) if getattr(r, "methods", None) and r.path in
            app.openapi()["paths"]]
