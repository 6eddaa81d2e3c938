"""/openapi.json as the hall's developers read it: who may call what, every refusal, the named queries of today.

FastAPI writes the document from the routes; `describe_api` finishes it, once per generated document:
- the security schemes: the API key as HTTP Bearer (`X-API-Key` is accepted too) and the client certificate
  the TLS terminator verifies (`mutualTLS`), so Swagger UI's "Authorize" takes a key and "try it out" sends
  `Authorization: Bearer …`. Each operation guarded by `require()` (gateway.http.callers) lists both as
  alternatives, and its description ends with the roles it admits, read from that same dependency;
  open operations (health, metrics, signed callbacks and links) list none;
- every guarded operation documents the refusals every guard can give (401, 403, 429) and 503 (the
  database unavailable); every error answer is `application/problem+json` with the `Problem` schema and a
  Chinese description of the status;
- the named synchronous queries: `POST /v1/queries/{name}` serves whatever the active bundles declare, so the
  document gets one path per query of the active bundles (`POST /v1/queries/housing_fund_balance`, …) with
  the parameters its mapping declares (`parameters:`: type, pattern, length, values), each with the sector
  field it fills, or, where none are declared, those its mapping reads (`from: query.<name>`). That part
  follows the live registry: the document is rebuilt when the set of active bundle versions changes, and
  served from a cache otherwise.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from adapters import QueryParameter, query_parameters
from gateway.domain.roles import ROLE_NAMES, Role
from gateway.http.problems import PROBLEM_MEDIA_TYPE, problem_entry
from gateway.sectors.live_registry import LiveRegistry, NoActiveAdapter

API_KEY = "apiKey"
CLIENT_CERTIFICATE = "clientCertificate"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    API_KEY: {
        "type": "http", "scheme": "bearer",
        "description": "身份的 API 密钥（由安全管理员用 `yiwang keys issue` 或 POST /v1/identities 签发）："
                       "`Authorization: Bearer <key>`；也可放在 `X-API-Key` 头。",
    },
    CLIENT_CERTIFICATE: {
        "type": "mutualTLS",
        "description": "绑定到身份的客户端证书：向网关前的 TLS 终结代理出示，由代理校验并转交证书"
                       "（YIWANG_CLIENT_CERT_HEADER），网关按证书的 SHA-256 指纹认出身份。未带 API 密钥时使用。",
    },
}
GUARDED: list[dict[str, list[str]]] = [{API_KEY: []}, {CLIENT_CERTIFICATE: []}]  # either one
GUARD_STATUSES = (401, 403, 429, 503)
SUCCESS = "成功"
QUERY_PATH = "/v1/queries/{name}"
QUERY_TAG = "named queries"
_METHODS = frozenset({"get", "put", "post", "delete", "patch"})


@dataclass(frozen=True)
class NamedQuery:
    """One named query of an active bundle, and the parameters its mapping reads."""

    name: str
    sector: str
    version: str
    parameters: Sequence[QueryParameter]
    declared: bool = False  # the bundle declares the contract (`parameters:`): nothing else is taken


QuerySource = Callable[[], Sequence[NamedQuery]]


def active_named_queries(registry: LiveRegistry) -> QuerySource:
    """The named queries of the bundle versions active now, as this process's live registry sees them."""

    def current() -> list[NamedQuery]:
        found = []
        for sector in registry.sectors:
            try:
                registered = registry.get(sector)
            except NoActiveAdapter:  # deactivated in between
                continue
            found += [NamedQuery(name, sector, registered.version, *(
                registered.queries.get(name) or (query_parameters(registered.mappings[name]), False)))
                for name in sorted(registered.bundle.queries)]
        return found

    return current


def describe_api(app: FastAPI, named_queries: QuerySource) -> None:
    """Finish the app's OpenAPI document as the module docstring says (after every router is included)."""
    generate = app.openapi
    lock = threading.Lock()
    state: dict[str, Any] = {"static": None, "key": None, "document": None, "roles": frozenset()}

    def openapi() -> dict[str, Any]:
        queries = tuple(named_queries())
        with lock:
            static = generate()  # FastAPI's cache: the same object until the routes change
            if state["static"] is not static:
                guarded = guarded_operations(app)
                secure(static, guarded)
                state.update(static=static, key=None, roles=guarded.get(("post", QUERY_PATH), frozenset()))
            if state["key"] != queries:
                state["document"] = with_named_queries(static, queries, state["roles"])
                state["key"] = queries
            return state["document"]  # type: ignore[no-any-return]

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document


def served_routes(app: FastAPI) -> Iterator[Any]:
    """The app's routes as served: FastAPI ≥ 0.165 keeps included routers nested."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes holds the included routes themselves
        yield from app.routes
    else:
        yield from iter_route_contexts(app.routes)


def guards(dependant: Any) -> Iterator[Any]:
    """Every `require()` among a route's dependencies, however deep."""
    for dependency in getattr(dependant, "dependencies", ()):
        if hasattr(dependency.call, "admitted_roles"):
            yield dependency.call
        yield from guards(dependency)


def guarded_operations(app: FastAPI) -> dict[tuple[str, str], frozenset[Role]]:
    """(method, path) -> the roles admitted, for every route behind `require()`."""
    found: dict[tuple[str, str], frozenset[Role]] = {}
    for route in served_routes(app):
        roles = frozenset().union(*(g.admitted_roles for g in guards(getattr(route, "dependant", None))))
        if roles:
            found |= {(method.lower(), route.path): roles for method in getattr(route, "methods", ())}
    return found


def secure(document: dict[str, Any], guarded: Mapping[tuple[str, str], frozenset[Role]]) -> None:
    """Security schemes, each guarded operation's requirement, roles and refusals, and every answer described."""
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for (method, path), operation in _operations(document):
        responses = operation["responses"]
        roles = guarded.get((method, path))
        if roles:
            operation["security"] = GUARDED
            operation["description"] = (operation.get("description", "").rstrip() + "\n\n" + roles_text(roles)).lstrip()
            for status in GUARD_STATUSES:
                responses.setdefault(str(status), problem_entry(status))
        if "requestBody" in operation:
            responses.setdefault("413", problem_entry(413))  # every body has a size limit (middleware or its own)
        for status, response in responses.items():
            described(int(status), response)


def roles_text(roles: Iterable[Role]) -> str:
    names = "、".join(f"{ROLE_NAMES[r]}（`{r.value}`）" for r in sorted(roles))
    return f"**调用角色**：{names}。用 API 密钥（Bearer）或绑定的客户端证书认证。"


def described(status: int, response: dict[str, Any]) -> None:
    """An answer as it really leaves: an error as problem+json only (FastAPI adds JSON for a `model`), and a
    Chinese description where FastAPI wrote an HTTP reason phrase ("Not Found", "Successful Response")."""
    if status >= 400:
        content = response.setdefault("content", {})
        problem = content.get(PROBLEM_MEDIA_TYPE) or problem_entry(status)["content"][PROBLEM_MEDIA_TYPE]
        response["content"] = {PROBLEM_MEDIA_TYPE: problem}
    if response.get("description", "").isascii():
        response["description"] = problem_entry(status)["description"] if status >= 400 else SUCCESS


def with_named_queries(static: dict[str, Any], queries: Sequence[NamedQuery],
                       roles: frozenset[Role] = frozenset()) -> dict[str, Any]:
    """The document with one path per named query of the active bundles (the static one when there are none)."""
    if not queries or QUERY_PATH not in static.get("paths", {}):
        return static
    document = copy.copy(static)
    paths = dict(static["paths"])
    generic = paths[QUERY_PATH]["post"]
    for query in sorted(queries, key=lambda q: q.name):
        paths[QUERY_PATH.replace("{name}", query.name)] = {"post": query_operation(generic, query, roles)}
    document["paths"] = paths
    tags = [t for t in static.get("tags", []) if t.get("name") != QUERY_TAG]
    document["tags"] = [*tags, {"name": QUERY_TAG, "description": "同步查询：各部门已启用的适配包声明的查询，"
                                                                  "随适配包的启用与回退即时更新"}]
    return document


def query_operation(generic: Mapping[str, Any], query: NamedQuery, roles: frozenset[Role]) -> dict[str, Any]:
    """The generic query operation, for this one query: its path has no `{name}`, its body names the
    parameters the query's mapping reads."""
    operation = copy.deepcopy(dict(generic))
    operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("name") != "name"]
    operation["operationId"] = f"query_{query.name}"
    operation["tags"] = [QUERY_TAG]
    operation["summary"] = f"同步查询 {query.name}"
    listed = "".join(f"\n- `{p.name}`{'（必填）' if p.required else ''}：{p.description}" for p in query.parameters)
    operation["description"] = (
        f"向部门系统 `{query.sector}`（适配包版本 {query.version}）同步查询 `{query.name}`，即时返回结果，"
        f"不建办件；不改变任何数据，可放心重试。参数放在 `params` 中：{listed or '（无）'}"
        + (f"\n\n{roles_text(roles)}" if roles else ""))
    operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": query_body(query)}}}
    return operation


def query_body(query: NamedQuery) -> dict[str, Any]:
    properties = {p.name: {**parameter_schema(p), "description": p.description} for p in query.parameters}
    required = [p.name for p in query.parameters if p.required]
    params: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": not query.declared,
                              "description": "查询参数（文本按输入原样保留）"}
    if required:
        params["required"] = required
    return {"type": "object", "additionalProperties": False, "properties": {"params": params},
            **({"required": ["params"]} if required else {})}


def parameter_schema(parameter: QueryParameter) -> dict[str, Any]:
    """A parameter's JSON Schema: as declared (type, pattern, maxLength, enum), else by the shape its reads give."""
    if parameter.type is None:
        return dict(_PARAMETER_SHAPES[parameter.shape])
    schema: dict[str, Any] = ({"type": "string", "format": "date"} if parameter.type == "date"
                              else {"type": parameter.type})
    if parameter.regex is not None:
        schema["pattern"] = parameter.regex
    if parameter.max_length is not None:
        schema["maxLength"] = parameter.max_length
    if parameter.enum is not None:
        schema["enum"] = list(parameter.enum)
    return schema


_PARAMETER_SHAPES: Mapping[str, dict[str, Any]] = {
    "scalar": {"type": ["string", "number", "boolean"]},
    "object": {"type": "object"},
    "list": {"type": "array"},
}


def _operations(document: Mapping[str, Any]) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                yield (method, path), operation
