"""Every failure leaves as problem+json: the app-wide exception handlers and the case service's problem table.

Nothing the caller sent is echoed back (it may be personal). A guarded route refuses an anonymous caller
with 401 before it says anything about the body. What a person reads is Chinese — `title`, `detail` (the
exceptions' own messages) and each `errors[].msg` (pydantic's, from PYDANTIC_MESSAGES); what a program
matches on stays English: the problem `type` and each `errors[].type`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from gateway.cases.service import CaseNotFound, IdempotencyConflict, InvalidApplication, NotYourCase, UnknownMatter
from gateway.cases.views import DocumentNotAvailable
from gateway.domain.case import CaseRuleViolation, ForbiddenTransition
from gateway.domain.provenance import LicenceRefused
from gateway.domain.roles import NotAllowed, NotAuthenticated
from gateway.http.callers import caller
from gateway.http.json_bodies import BodyRefused
from gateway.http.openapi import guards, served_routes
from gateway.http.problems import document_validation_problems, install_problems, problem_response
from gateway.persistence.repository import StaleCase

log = structlog.get_logger("yiwang.api")


def install_error_handlers(app: FastAPI) -> None:
    """Every failure leaves as problem+json; nothing the caller sent is echoed back (it may be personal)."""

    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "type": e["type"], "msg": chinese_message(e)} for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            return await unreadable_body(request)
        return problem_response(422, "invalid-request", "请求内容不符合要求", instance=request.url.path,
                                errors=errors)

    async def unreadable_body(request: Request, refused: BodyRefused | None = None) -> JSONResponse:
        # FastAPI parses a JSON body before it runs the route's `require()`: an anonymous caller must
        # still hear 401 first, not learn what we think of its body.
        if _guarded(request) and _anonymous(request):
            return await not_authenticated(request, NotAuthenticated("请提供有效的 API 密钥"))
        if refused is not None:  # its media type, charset, or JSON the strict reader refuses
            return problem_response(refused.status_code, refused.slug, refused.title, refused.detail,
                                    request.url.path)
        return problem_response(400, "invalid-json", "请求体不是合法的 JSON", instance=request.url.path)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own refusals: no such path or method, and a body FastAPI could not parse at all
        (JSON nested too deep for the parser: a RecursionError it reports as a bare 400)."""
        if isinstance(exc, BodyRefused) or exc.status_code == 400:
            return await unreadable_body(request, exc if isinstance(exc, BodyRefused) else None)
        slug, title = _HTTP_PROBLEMS.get(exc.status_code, ("http-error", "请求无法处理"))
        response = problem_response(exc.status_code, slug, title, instance=request.url.path)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the methods of the first route on the path only
            response.headers["Allow"] = ", ".join(sorted(_methods_served(request)))
        return response

    async def invalid_application(request: Request, exc: InvalidApplication) -> JSONResponse:
        return problem_response(422, "invalid-application", "申请不符合事项要求", str(exc), request.url.path,
                                errors=exc.errors)

    async def not_authenticated(request: Request, exc: NotAuthenticated) -> JSONResponse:
        response = problem_response(401, "not-authenticated", "需要有效的 API 密钥", str(exc), request.url.path)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    async def database_unavailable(request: Request, exc: OperationalError | InterfaceError) -> JSONResponse:
        # The connection was lost (a restart, a failover, a terminated backend): the transaction rolled
        # back whole, so the caller may retry — with its Idempotency-Key, it cannot make a second case.
        log.warning("database unavailable", error=type(exc.orig).__name__, path=request.url.path)
        response = problem_response(503, "database-unavailable", "数据库暂不可用，请稍后重试",
                                    instance=request.url.path)
        response.headers["Retry-After"] = "1"
        return response

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", path=request.url.path)
        return problem_response(500, "internal-error", "服务器内部错误", instance=request.url.path)

    # Starlette types a handler as taking any Exception; ours take the class they handle: hence the ignores.
    app.add_exception_handler(RequestValidationError, validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    document_validation_problems(app)
    app.add_exception_handler(OperationalError, database_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(InterfaceError, database_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(InvalidApplication, invalid_application)  # type: ignore[arg-type]
    app.add_exception_handler(NotAuthenticated, not_authenticated)  # type: ignore[arg-type]
    install_problems(app, [
        (NotAllowed, 403, "forbidden", "无权执行此操作"),
        (NotYourCase, 403, "not-your-case", "不属于本部门的办件"),
        (UnknownMatter, 404, "unknown-matter", "事项不存在或未发布"),
        (CaseNotFound, 404, "case-not-found", "办件不存在"),
        (DocumentNotAvailable, 404, "document-not-available", "该办件没有此文书"),
        (ForbiddenTransition, 409, "transition-not-allowed", "办件当前状态不允许此操作"),
        (StaleCase, 409, "stale-version", "办件已被他人修改，请刷新后重试"),
        (CaseRuleViolation, 422, "case-rule-violated", "操作不符合办件规则"),
        (IdempotencyConflict, 422, "idempotency-key-reused", "同一 Idempotency-Key 已用于不同的请求"),
        (LicenceRefused, 422, "licence-refused", "引用的证照不能作为申请材料"),
    ])


# `errors[].msg` is read by a person: pydantic's error types in Chinese, by `type` (which stays pydantic's
# English slug, for programs). `{name}` is filled from the error's context: limits, patterns and choices the
# API declares, never the value the caller sent (it may be personal). Custom types (`text_refused`) bring a
# Chinese message of their own; anything else gets FALLBACK_MESSAGE.
PYDANTIC_MESSAGES: dict[str, str] = {
    "missing": "缺少此字段",
    "extra_forbidden": "不接受此字段",
    "json_type": "应为 JSON 文本",
    "json_invalid": "不是合法的 JSON",
    "model_type": "应为 JSON 对象",
    "model_attributes_type": "应为 JSON 对象",
    "dataclass_type": "应为 JSON 对象",
    "dict_type": "应为 JSON 对象",
    "mapping_type": "应为 JSON 对象",
    "invalid_key": "对象的键应为字符串",
    "list_type": "应为数组",
    "tuple_type": "应为数组",
    "set_type": "应为数组",
    "frozen_set_type": "应为数组",
    "iterable_type": "应为数组",
    "set_item_not_hashable": "数组中的项不能用作集合元素",
    "none_required": "应为 null",
    "string_type": "应为字符串",
    "string_unicode": "应为合法的 Unicode 字符串",
    "string_too_short": "长度至少为 {min_length}",
    "string_too_long": "长度超过上限 {max_length}",
    "string_pattern_mismatch": "格式不符合要求（应匹配 {pattern}）",
    "string_not_ascii": "只能包含 ASCII 字符",
    "too_short": "至少应有 {min_length} 项",
    "too_long": "最多 {max_length} 项",
    "bool_type": "应为布尔值（true 或 false）",
    "bool_parsing": "应为布尔值（true 或 false）",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_parsing_size": "整数位数过多",
    "int_from_float": "应为整数，不能有小数部分",
    "float_type": "应为数值",
    "float_parsing": "应为数值",
    "finite_number": "应为有限的数值",
    "decimal_type": "应为数值",
    "decimal_parsing": "应为数值",
    "decimal_max_digits": "数字位数不能超过 {max_digits}",
    "decimal_max_places": "小数位数不能超过 {decimal_places}",
    "decimal_whole_digits": "整数部分位数不能超过 {whole_digits}",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应大于或等于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应小于或等于 {le}",
    "multiple_of": "应为 {multiple_of} 的倍数",
    "literal_error": "应为以下取值之一：{expected}",
    "enum": "应为以下取值之一：{expected}",
    "bytes_type": "应为字节串",
    "bytes_too_short": "长度至少为 {min_length} 字节",
    "bytes_too_long": "长度超过上限 {max_length} 字节",
    "date_type": "应为日期（如 2026-11-24）",
    "date_parsing": "应为日期（如 2026-11-24）",
    "date_from_datetime_parsing": "应为日期（如 2026-11-24）",
    "date_from_datetime_inexact": "应为日期，不能带时刻",
    "date_past": "应为过去的日期",
    "date_future": "应为将来的日期",
    "time_type": "应为时刻（如 10:00:00）",
    "time_parsing": "应为时刻（如 10:00:00）",
    "datetime_type": "应为时间（RFC 3339，如 2026-11-24T10:00:00+08:00）",
    "datetime_parsing": "应为时间（RFC 3339，如 2026-11-24T10:00:00+08:00）",
    "datetime_from_date_parsing": "应为时间（RFC 3339，如 2026-11-24T10:00:00+08:00）",
    "datetime_object_invalid": "应为时间（RFC 3339，如 2026-11-24T10:00:00+08:00）",
    "datetime_past": "应为过去的时间",
    "datetime_future": "应为将来的时间",
    "timezone_naive": "不能带时区",
    "timezone_aware": "应带时区（如 +08:00）",
    "timezone_offset": "时区应为 {tz_expected} 秒的偏移",
    "time_delta_type": "应为时长",
    "time_delta_parsing": "应为时长",
    "url_type": "应为 URL",
    "url_parsing": "不是合法的 URL",
    "url_syntax_violation": "不是合法的 URL",
    "url_too_long": "URL 长度超过上限 {max_length}",
    "url_scheme": "URL 协议应为 {expected_schemes}",
    "uuid_type": "应为 UUID",
    "uuid_parsing": "应为 UUID",
    "uuid_version": "应为第 {expected_version} 版 UUID",
    "union_tag_invalid": "{discriminator} 的取值应为以下之一：{expected_tags}",
    "union_tag_not_found": "缺少用于区分类型的字段 {discriminator}",
    "recursion_loop": "数据嵌套成环",
    "recursion_depth_exceeded": "数据嵌套过深",
    "value_error": "取值无效：{error}",
    "assertion_error": "取值无效：{error}",
}
FALLBACK_MESSAGE = "取值不符合要求"


def chinese_message(error: Mapping[str, Any]) -> str:
    """An error's `msg` in Chinese: from the table by its type, or its own when that is Chinese already
    (a custom type, a validator of ours), else FALLBACK_MESSAGE. A context value that is not Chinese or
    not one of the API's own limits (an exception's English words) is left out rather than shown."""
    template = PYDANTIC_MESSAGES.get(error["type"])
    if template is None:
        return error["msg"] if has_chinese(error.get("msg", "")) else FALLBACK_MESSAGE
    context = {key: str(value) for key, value in (error.get("ctx") or {}).items()}
    if quoted := re.findall(r"'([^']*)'", context.get("expected", "")):  # pydantic's "'a', 'b' or 'c'"
        context["expected"] = "、".join(quoted)
    if error["type"] in ("value_error", "assertion_error"):  # the words of a validator of ours, when Chinese
        said = context.get("error", "")
        return template.format(error=said) if has_chinese(said) else FALLBACK_MESSAGE
    try:
        return template.format(**context)
    except (KeyError, IndexError):  # pydantic gave no such context: say it without the number
        return template.split("{", 1)[0].rstrip("（： ") or FALLBACK_MESSAGE


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


_HTTP_PROBLEMS: dict[int, tuple[str, str]] = {
    404: ("not-found", "没有这个地址"),
    405: ("method-not-allowed", "该地址不接受此方法"),
}


def _methods_served(request: Request) -> set[str]:
    """Every method some route serves at the request's path (each route matches it partially)."""
    scope = {**request.scope, "method": ""}  # no route serves "": every route on the path matches partially
    return {method for route in served_routes(request.app)
            if route.matches(scope)[0] is not Match.NONE for method in route.methods or ()}


def _guarded(request: Request) -> bool:
    """Whether the route that took this request admits callers by API key (`require()`)."""
    return any(guards(getattr(request.scope.get("route"), "dependant", None)))


def _anonymous(request: Request) -> bool:
    return caller(request) is None
