"""What the simulator tests share: known people, waiting for a decision, each simulator's published
OpenAPI document."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml

from adapters.simulators.base import SimulatorBase
from adapters.simulators.civil_affairs import CivilAffairsSimulator
from adapters.simulators.e_licence import ELicenceSimulator
from adapters.simulators.employment import EmploymentSimulator
from adapters.simulators.housing_fund import HousingFundSimulator
from adapters.simulators.licence_library import LicenceLibrarySimulator
from adapters.simulators.public_security import PublicSecuritySimulator
from adapters.simulators.social_assistance import SocialAssistanceSimulator
from adapters.simulators.social_security import SocialSecuritySimulator
from tests.support.pki import E_LICENCE_OURS, E_LICENCE_SECTOR, sm2_pair


class ELicenceWithTestKeys(ELicenceSimulator):
    """The 电子证照 simulator with the test SM2 pairs `pki.shipped_credentials` gives the gateway (it has no
    default key: a sector's key is its own)."""

    def __init__(self, port: int = 0, decision_delay_ms: int = 200, **options: Any) -> None:
        ours, theirs = sm2_pair(E_LICENCE_OURS), sm2_pair(E_LICENCE_SECTOR)
        super().__init__(port, decision_delay_ms, client_certificate_pem=ours.cert_pem, key_pem=theirs.key_pem,
                         certificate_pem=theirs.cert_pem, **options)


SIMULATORS: dict[str, Callable[..., SimulatorBase]] = {
    "social_security": SocialSecuritySimulator,
    "housing_fund": HousingFundSimulator,
    "civil_affairs": CivilAffairsSimulator,
    "public_security": PublicSecuritySimulator,
    "employment": EmploymentSimulator,
    "e_licence": ELicenceWithTestKeys,
    "social_assistance": SocialAssistanceSimulator,
    "licence_library": LicenceLibrarySimulator,
}


KNOWN_ID = "150204199011201529"


# Where each one's business API takes a POST (relative to ``url``).
SUBMIT_PATH = {
    SocialSecuritySimulator: "",
    CivilAffairsSimulator: "",
    HousingFundSimulator: "/api/v2/applications",
    PublicSecuritySimulator: "/gaapi/hz/sqxx",
    EmploymentSimulator: "/jyapi/v1/applications",
    ELicenceWithTestKeys: "/dzzz/api/v1/issuance",
    SocialAssistanceSimulator: "/shjz/open/v1/apply",
    LicenceLibrarySimulator: "/dzzzk/api/v1/licences",
}


def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll until ``predicate`` holds (background work: a late "slow" request, a callback)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


class OpenApi:
    """An OpenAPI 3.0 document turned into JSON Schemas: ``$ref`` inlined, ``nullable`` made a
    JSON Schema type, and objects closed (``additionalProperties: false`` unless the document
    says otherwise) so an undocumented field in an answer fails the test."""

    def __init__(self, text: str) -> None:
        self.document: dict[str, Any] = yaml.safe_load(text)

    def operation(self, template: str, method: str) -> dict[str, Any]:
        path_item = self.document["paths"][template]
        return path_item[method.lower()]

    def response_schema(self, template: str, method: str, status: int) -> dict[str, Any]:
        response = self._resolve(self.operation(template, method)["responses"][str(status)])
        return self._json_schema(response["content"]["application/json"]["schema"])

    def request_schema(self, template: str, method: str) -> dict[str, Any]:
        body = self.operation(template, method)["requestBody"]
        return self._json_schema(body["content"]["application/json"]["schema"])

    def check_response(self, template: str, response: httpx.Response) -> None:
        schema = self.response_schema(template, response.request.method, response.status_code)
        jsonschema.validate(response.json(), schema)

    def check_request(self, template: str, method: str, body: object) -> None:
        jsonschema.validate(body, self.request_schema(template, method))

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def _json_schema(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self._json_schema(item) for item in node]
        if not isinstance(node, dict):
            return node
        schema = {key: self._json_schema(value) for key, value in self._resolve(node).items()}
        if schema.pop("nullable", False):
            schema["type"] = [schema["type"], "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        return schema


def fetch_openapi(sim: SimulatorBase) -> OpenApi:
    response = httpx.get(sim.description_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    api = OpenApi(response.text)
    assert api.document["openapi"].startswith("3.0")
    assert api.document["servers"] == [{"url": sim.url}]
    return api


def routes_match_document(sim: Any, api: OpenApi) -> None:
    """Every route the simulator serves is documented, and nothing else is."""
    served = {(route.method.lower(), route.pattern) for route in sim._routes()}
    documented = {
        (method, path)
        for path, item in api.document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert served == documented
    for method, path in documented:
        for status, response in api.operation(path, method)["responses"].items():
            content = api._resolve(response).get("content", {})
            assert content, f"{method} {path} {status} has no content"


def shipped_openapi_is_wellformed(path: Path) -> None:
    """Every component schema is a typed object with declared required properties that exist."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for name, schema in document["components"]["schemas"].items():
        assert schema.get("type") == "object", name
        properties = schema.get("properties", {})
        assert properties, name
        assert set(schema.get("required", [])) <= set(properties), name
        for prop_name, prop in properties.items():
            assert "$ref" in prop or "type" in prop, f"{name}.{prop_name} has no type"
