"""RFC 9457 problem details: every error the API answers, with a stable `type` per kind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

PROBLEM_TYPE_PREFIX = "urn:yiwang:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_ERRORS = 20  # a problem lists at most this many errors: a hostile body must not make a huge answer


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(default=None, description=f"at most {MAX_ERRORS}, the first found")
    errors_total: int | None = Field(default=None, description="how many errors there were; only when `errors` "
                                                               "was cut")
    errors_truncated: bool | None = Field(default=None, description="true when `errors` shows only the first "
                                                                    f"{MAX_ERRORS} of `errors_total`")


def problem_response(status: int, slug: str, title: str, detail: str | None = None,
                     instance: str | None = None, **extra: Any) -> JSONResponse:
    errors = extra.get("errors")
    if errors is not None and len(errors) > MAX_ERRORS:
        extra |= {"errors": errors[:MAX_ERRORS], "errors_total": len(errors), "errors_truncated": True}
    body = Problem(type=PROBLEM_TYPE_PREFIX + slug, title=title, status=status, detail=detail, instance=instance,
                   **extra)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_MEDIA_TYPE)


PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
# What each error status means, as the document says it; an operation's own description names its problem `type`s.
STATUS_TEXTS: Mapping[int, str] = {
    400: "请求体无法读取：不是合法的 JSON，或有重复的键",
    401: "未认证：缺少或无效的 API 密钥或客户端证书（部门回调：签名无效）",
    403: "无权：身份没有所需角色，或对象不属于其部门、部门系统或范围",
    404: "所指的对象不存在",
    409: "冲突：对象当前的状态不允许此操作",
    413: "请求体超过上限",
    415: "媒体类型不受支持（JSON 须为 UTF-8 的 application/json）",
    422: "请求内容不符合要求（`errors` 逐项说明）",
    429: "调用过于频繁：按 Retry-After 秒数后再试",
    502: "部门系统的应答无法使用（拒绝了网关的凭证，或无法识别）",
    503: "暂不可用（数据库或部门系统），按 Retry-After 秒数后重试；带 Idempotency-Key 的重试不会重复办理",
    504: "部门系统响应超时",
}


def problem_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers an operation gives besides its guard's (401, 403, 429 and 503 are
    added to every guarded operation by gateway.http.openapi): problem+json, the `Problem` schema."""
    return {s: problem_entry(s) for s in statuses}


def problem_entry(status: int) -> dict[str, Any]:
    """One error answer in the OpenAPI document: what the status means here, problem+json, `Problem`."""
    return {"description": STATUS_TEXTS.get(status, "问题详情（problem+json）"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}}}


def document_validation_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what FastAPI's own validation answers have become.

    FastAPI documents a 422 `HTTPValidationError` in JSON on every route taking parameters or a body,
    but our handler answers those with a 422 problem, and an unparsable JSON body with a 400 problem.
    Done on the generated document so that every router's routes are covered, present and future.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            document.setdefault("components", {}).setdefault("schemas", {}).setdefault(
                "Problem", Problem.model_json_schema())
            for operation in _operations(document):
                _document_validation(operation)
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document


def _operations(document: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for path_item in document.get("paths", {}).values():
        yield from (op for method, op in path_item.items() if method in _METHODS)


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _document_validation(operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    if "HTTPValidationError" in str(responses.get("422", {})):
        responses["422"] = problem_entry(422)
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        responses.setdefault("400", problem_entry(400))  # the body is not JSON at all: `invalid-json`, `duplicate-key`
        responses.setdefault("415", problem_entry(415))  # not declared JSON, or in a charset other than UTF-8


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def problem_handler(status: int, slug: str, title: str) -> Handler:
    """An exception handler answering with the exception's own message as `detail` (our messages only:
    they never echo what the caller sent)."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(status, slug, title, str(exc) or None, request.url.path)

    return handle


def install_problems(app: FastAPI, table: Iterable[tuple[type[Exception], int, str, str]]) -> None:
    """Register a problem answer per exception type: (type, status, slug, title)."""
    for exc_type, status, slug, title in table:
        app.add_exception_handler(exc_type, problem_handler(status, slug, title))
