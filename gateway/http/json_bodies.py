"""What a route taking a JSON body accepts, before FastAPI validates any of it (issue 14).

`JsonBodyRoute` is the route class of every router whose routes take JSON. On a route whose body FastAPI
parses as JSON, a non-empty body must be:

- declared `application/json` (or `application/*+json`): else 415 `unsupported-media-type` (FastAPI would
  validate the raw bytes and answer a puzzling 422);
- in UTF-8, the one charset of JSON: a declared other one (`charset=gbk`) is 415 `unsupported-charset`
  (the body would be read as UTF-8 anyway, GBK bytes often decoding into other characters);
- JSON as `mappings.strict_json` reads it: a key twice in one object is 400 `duplicate-key` (the detail
  names line and column, never the key: it may be personal data), bytes that are not UTF-8 are 400
  `invalid-json`, NaN, Infinity and numbers out of range are 422 `number-out-of-range`.

A refusal is a `BodyRefused`, a Starlette HTTPException: FastAPI lets it through untouched, and the API's
handler for those (gateway/http/routers/cases.py) answers an anonymous caller 401 first, as for any unreadable body.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import params
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mappings import strict_json

DUPLICATE_KEY = ("duplicate-key", "JSON 对象中有重复的键")
UNSUPPORTED_MEDIA_TYPE = ("unsupported-media-type", "请求体的媒体类型不受支持")
UTF8_NAMES = frozenset({"utf-8", "utf8"})


class BodyRefused(HTTPException):
    """A body refused before validation: the problem's status, `type` slug, title and detail."""

    def __init__(self, status: int, slug: str, title: str, detail: str) -> None:
        super().__init__(status, detail)
        self.slug, self.title = slug, title


def media_type(content_type: str | None) -> str:
    """`type/subtype` of a Content-Type header, lower case, without parameters ("" when there is none)."""
    return _parsed(content_type).get_content_type() if content_type else ""


def _is_json(content_type: str | None) -> bool:
    """FastAPI's own test for a body it parses as JSON: application/json or application/*+json."""
    maintype, _, subtype = media_type(content_type).partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def accepts_only(media: str) -> str:
    """The detail of a 415: what this address takes."""
    return f"此地址只接受 {media} 请求体（Content-Type: {media}）"


def _parsed(content_type: str | None) -> email.message.Message:
    message = email.message.Message()
    if content_type:
        message["content-type"] = content_type
    return message


def _refuse_unless_json(content_type: str | None) -> None:
    """415 unless `content_type` declares JSON in UTF-8 (or in no charset: UTF-8 is JSON's only one)."""
    if not _is_json(content_type):
        raise BodyRefused(415, *UNSUPPORTED_MEDIA_TYPE, accepts_only("application/json"))
    charset = _parsed(content_type).get_param("charset")
    if charset is not None and str(charset).strip().lower() not in UTF8_NAMES:
        raise BodyRefused(415, "unsupported-charset", "请求体须为 UTF-8 编码",
                          "Content-Type 声明的字符集不是 UTF-8；JSON 请求体只接受 UTF-8（charset=utf-8 或不声明）")


def _read_json(body: bytes) -> Any:
    """The body as JSON by `mappings.strict_json`; `BodyRefused` for what it refuses (malformed JSON
    still raises `json.JSONDecodeError`, which FastAPI reports as it always has)."""
    try:
        return strict_json.loads(body)
    except strict_json.DuplicateKey as exc:
        raise BodyRefused(400, *DUPLICATE_KEY, f"第 {exc.line} 行第 {exc.column} 列的键在同一对象中已出现过；"
                                               "每个键只能出现一次") from None
    except strict_json.NotUtf8:
        raise BodyRefused(400, "invalid-json", "请求体不是合法的 JSON", "请求体须为 UTF-8 编码的 JSON") from None
    except strict_json.NumberOutOfRange:
        raise BodyRefused(422, "number-out-of-range", "数值超出范围",
                          "JSON 中的数超出可表示的范围（NaN、Infinity 不是 JSON 的数）") from None


class _JsonBodyRequest(Request):
    """The request a JSON-body route's handler reads: FastAPI calls `body()`, then `json()`."""

    async def body(self) -> bytes:
        body = await super().body()
        if body:  # an empty body is "missing" to FastAPI, whatever its type says
            _refuse_unless_json(self.headers.get("content-type"))
        return body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = _read_json(await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    """A route whose JSON body (if it takes one) is read by the rules above; other routes unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if self.body_field is None or isinstance(self.body_field.field_info, params.Form):
            return handle

        async def handle_json(request: Request) -> Response:
            return await handle(_JsonBodyRequest(request.scope, request.receive))

        return handle_json
