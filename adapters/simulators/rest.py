"""The REST half of the simulators: a route table with path placeholders, JSON in and out, the
OpenAPI document served at ``/openapi.yaml`` with this instance's address, and the canned JSON
misbehaviour (truncated JSON, 100 000-deep nesting, 500 error, 429).

公积金 and 公安 differ in their envelopes (``{"code", "msg", "data"}`` vs ``{"ZT", "XX", ...}``);
``_error`` is where each says "this went wrong" in its own words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar, Final, NamedTuple

from adapters.simulators.base import (
    JSON_CONTENT_TYPE,
    RETRY_AFTER,
    Handler,
    Reply,
    Request,
    Route,
    SimulatorBase,
    json_reply,
)

__all__ = ["JSON_CONTENT_TYPE", "BadJson", "RestRoute", "RestSimulator", "json_reply", "read_json"]

OPENAPI_PATH: Final = "/openapi.yaml"
_OPENAPI_PLACEHOLDER_URL: Final = "http://127.0.0.1:0"  # the documents' servers[0].url, rewritten when served
HOSTILE_DEPTH: Final = 100_000


class RestRoute(NamedTuple):
    """``pattern`` is a path with ``{name}`` placeholders (one path segment each)."""

    method: str
    pattern: str
    handler: Handler
    faultable: bool = True


class BadJson(ValueError):
    """A request body that is not the JSON object the operation needs."""


def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object; deep nesting (RecursionError) counts as not JSON."""
    try:
        document = json.loads(request.body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise BadJson("请求体不是合法的JSON") from exc
    if not isinstance(document, dict):
        raise BadJson("请求体必须是JSON对象")
    return document


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern)))


class RestSimulator(SimulatorBase):
    """A JSON service with a route table; subclasses set ``openapi_file``, ``canned_success``
    and implement ``_routes`` and ``_error``."""

    openapi_file: ClassVar[Path]
    canned_success: ClassVar[dict[str, Any]]

    _openapi = b""
    _table: list[tuple[RestRoute, re.Pattern[str]]]

    @property
    def description_url(self) -> str:
        return f"{self.base_url}{OPENAPI_PATH}"

    def _on_started(self) -> None:
        text = self.openapi_file.read_text(encoding="utf-8")
        self._openapi = text.replace(_OPENAPI_PLACEHOLDER_URL, self.base_url).encode("utf-8")
        self._table = [(route, _compile(route.pattern)) for route in self._routes()]

    def _routes(self) -> list[RestRoute]:
        raise NotImplementedError

    def _error(self, status: int, code: int, message: str) -> Reply:
        """The sector's error document (``code`` is the business code where it has one)."""
        raise NotImplementedError

    # ----- routing

    def _route(self, method: str, path: str, query: str) -> Route | Reply:
        if method == "GET" and path == OPENAPI_PATH:
            return Reply(HTTPStatus.OK, "application/yaml; charset=utf-8", self._openapi)
        allowed = []
        for route, regex in self._table:
            match = regex.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return Route(self._with_params(route.handler, match.groupdict()), route.faultable)
            allowed.append(route.method)
        if allowed:
            reply = self._error(HTTPStatus.METHOD_NOT_ALLOWED, 405, "不支持的请求方法")
            return reply._replace(headers=(("Allow", ", ".join(allowed)),))
        return self._error(HTTPStatus.NOT_FOUND, 404, "接口不存在")

    @staticmethod
    def _with_params(handler: Handler, params: dict[str, str]) -> Handler:
        def bound(request: Request) -> Reply:
            return handler(replace(request, params=params))

        return bound

    def _json_handler(self, handler: Callable[[Request, dict[str, Any]], Reply]) -> Handler:
        """Wrap a handler that needs the body as a JSON object; anything else is a 400."""

        def parsed(request: Request) -> Reply:
            try:
                document = read_json(request)
            except BadJson as exc:
                return self._error(HTTPStatus.BAD_REQUEST, 400, str(exc))
            return handler(request, document)

        return parsed

    # ----- canned misbehaviour

    def _injected_reply(self, mode: str) -> Reply:
        if mode == "fault":
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, 500, "系统内部错误，请稍后重试（模拟故障）")
        if mode == "rate_limit":
            reply = self._error(HTTPStatus.TOO_MANY_REQUESTS, 429, "请求过于频繁，请稍后重试")
            return reply._replace(headers=RETRY_AFTER)
        document = json_reply(HTTPStatus.OK, self.canned_success).body
        if mode == "malformed":  # cut inside the document: never valid JSON
            return Reply(HTTPStatus.OK, JSON_CONTENT_TYPE, document[: len(document) * 2 // 3])
        if mode == "hostile":  # valid JSON no recursive parser survives
            deep = b"[" * HOSTILE_DEPTH + b"]" * HOSTILE_DEPTH
            return Reply(HTTPStatus.OK, JSON_CONTENT_TYPE, document[:-1] + b',"extra":' + deep + b"}")
        raise ValueError(f"no canned reply for fault mode {mode!r}")

    def _internal_error(self) -> Reply:
        return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, 500, "系统处理异常")
