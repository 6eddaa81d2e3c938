"""The operators' console at /console: server-rendered pages (Jinja2) with htmx for partial updates, in Chinese.

`install_console(app, sessions=…, tls_proxies=…)` mounts it on the gateway's app (gateway/bootstrap/app.py):
its routers (`ROUTERS`, one per area, each importing only `ops.console.web` and services), its own static
files (static/; htmx is fetched at install into static/vendor/, pinned by version and checksum, never
committed), security headers on every console answer (a Content-Security-Policy allowing only the gateway's
own scripts and styles, no framing, no referrer beyond the console's own origin, no caching; error pages too,
a 500's included), and error pages: every problem the app's problem tables answer as problem+json is shown on
a console path as an HTML page with the same type, title and detail (inside the page's alert region for an
htmx request).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.security.sessions import ConsoleSessions
from ops.console import adapters, approvals, audit, certificates, dead_letters, ferry, journey, overview, signin
from ops.console.web import HERE, PREFIX, CsrfRefused, NotForYou, SignInNeeded, render, sign_in_target

__all__ = ["CSP", "ROUTERS", "install_console"]

ROUTERS: tuple[APIRouter, ...] = (signin.router, overview.router, dead_letters.router, journey.router,
                                  adapters.router, certificates.router, audit.router, approvals.router, ferry.router)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with every form POST,
           # which the CSRF check (web.csrf_checked) rightly refuses
           (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store")]
Handler = Callable[[Request, Exception], Response | Awaitable[Response]]


class ConsoleHeaders:
    """ASGI middleware: the console's security headers on every answer under /console."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in HEADERS if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _problem_page(request: Request, status_code: int, problem: dict[str, Any]) -> Response:
    """A problem as a page, or (htmx) as the fragment for the page's alert region."""
    return render(request, "_problem.html" if _htmx(request) else "problem.html", status_code=status_code,
                  problem=problem)


def _sign_in_needed(request: Request, _: Exception) -> Response:
    if request.method == "GET" and not _htmx(request):
        return RedirectResponse(sign_in_target(request), status_code=303)
    answer = _problem_page(request, 401, {"type": "urn:yiwang:problem:console-session-ended", "title": "会话已结束",
                                          "status": 401, "detail": "请重新登录控制台"})
    answer.headers["HX-Redirect"] = PREFIX + "/sign-in"
    return answer


def _not_for_you(request: Request, refused: Exception) -> Response:
    page = refused.page if isinstance(refused, NotForYou) else None
    return render(request, "not_for_you.html", status_code=403, page=page)


def _csrf_refused(request: Request, refused: Exception) -> Response:
    return _problem_page(request, 403, {"type": "urn:yiwang:problem:csrf", "title": "请求被拒绝", "status": 403,
                                        "detail": str(refused)})


def _as_page(handler: Handler) -> Handler:
    """The app's problem+json answer, shown as a page on a console path."""
    async def handle(request: Request, exc: Exception) -> Response:
        answer = handler(request, exc)
        answer = await answer if isinstance(answer, Awaitable) else answer
        if not request.url.path.startswith(PREFIX) or not isinstance(answer, Response):
            return answer
        try:
            problem: dict[str, Any] = json.loads(bytes(answer.body))
        except ValueError:
            return answer
        return _secured(_problem_page(request, answer.status_code, problem))

    return handle


def _secured(answer: Response) -> Response:
    """The security headers on the answer itself: an unexpected error's page (500) leaves through Starlette's
    outermost error middleware, past ConsoleHeaders."""
    for name, value in HEADERS:
        answer.headers[name.decode()] = value.decode()
    return answer


def install_console(app: FastAPI, *, sessions: ConsoleSessions, tls_proxies: frozenset[str]) -> None:
    """Mount the console; call it after every problem table is installed (it wraps their handlers)."""
    app.state.console_sessions = sessions
    app.state.tls_proxies = tls_proxies
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _as_page(handler)
    app.add_exception_handler(SignInNeeded, _sign_in_needed)
    app.add_exception_handler(NotForYou, _not_for_you)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    for router in ROUTERS:
        app.include_router(router)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_middleware(ConsoleHeaders)
