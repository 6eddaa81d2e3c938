"""Every failure leaves as problem+json: the app-wide exception handlers and the case service's problem table.

Nothing the caller sent is echoed back (it may be personal). A guarded route refuses an anonymous caller
with 401 before it says anything about the body.
"""

from __future__ import annotations

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
        errors = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            return await unreadable_body(request)
        return problem_response(422, "invalid-request", "请求内容不符合要求", instance=request.url.path,
                                errors=errors)

    async def unreadable_body(request: Request, refused: BodyRefused | None = None) -> JSONResponse:
        # FastAPI parses a JSON body before it runs the route's `require()`: an anonymous caller must
        # still hear 401 first, not learn what we think of its body.
        if _guarded(request) and _anonymous(request):
            return await not_authenticated(request, NotAuthenticated("a valid API key is required"))
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
    ])


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
