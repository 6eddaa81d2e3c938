"""What every page of the operators' console shares: templates, the signed-in identity, CSRF, the pages table.

The console's routers import this module (and services) only, never one another — FastAPI's "bigger
applications" shape, as the API's routers. A page handler takes:
- `who: Annotated[Identity, Depends(entered("dead-letters"))]`: the identity signed in to the console
  (`console_user`: a live session from the cookie, its identity re-read so a role changed or a key revoked
  counts at once), admitted to that page by `PAGES` — the role matrix as data. Not signed in: a GET goes to
  the sign-in page and comes back; anything else is 401. Signed in without the page's roles: 403 page.
- `_: Csrf` on every change: the session's synchronizer token, as form field `csrf` or header
  `X-CSRF-Token` (static/console.js adds it to htmx's requests), and a same-origin `Origin` when sent.
- `render(request, "page.html", **context)`: the template with the base context — `me`, `csrf`, `nav`
  (the pages `me` may enter), `current` — autoescaped, with the filters `beijing` (UTC → Beijing time text),
  `age` (seconds → 3 分 12 秒), `masked` (personal data masked as in the logs), `role_name` and `link` (an href
  taken from the context: a console path only). tests/unit/test_console_templates_escape.py renders every
  template with hostile text in every field.
Every change still goes through the services the API uses, which write its own audit record; the
`AuditTrail` middleware records each console POST too, as it does the API's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from gateway.audit.ledger import Ledger
from gateway.domain.clock import SHANGHAI, Clock, as_utc, duration_text
from gateway.domain.roles import ROLE_NAMES, Identity, Role
from gateway.observability.logs import mask_value
from gateway.security.api_keys import ApiKeyStore
from gateway.security.sessions import ConsoleSession, ConsoleSessions

__all__ = ["COOKIE", "CONSOLE_ROLES", "Csrf", "PAGES", "Page", "SignInNeeded", "NotForYou", "CsrfRefused",
           "age", "client_address", "console_user", "csrf_checked", "entered", "is_tls", "ledger_of", "render",
           "sessions", "time_now"]

HERE = Path(__file__).parent
COOKIE = "yiwang_console"  # the session id; HttpOnly, SameSite=Strict, Secure under TLS, path /console
PREFIX = "/console"
# Who may enter the console at all: those who run, administer or audit it. Everyone else: "not for you".
CONSOLE_ROLES = frozenset({Role.OPERATOR, Role.SECTOR_ADMIN, Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDITOR})


@dataclass(frozen=True)
class Page:
    """One page of the navigation: who may enter it is the roles of the API route it mirrors (`mirrors`), so
    the console never lets anyone do what the API would refuse (tests compare the two)."""

    name: str
    path: str
    title: str
    roles: frozenset[Role]
    mirrors: tuple[str, str] | None = None  # (method, API path)


_R = Role
PAGES: tuple[Page, ...] = (
    Page("overview", PREFIX, "概览", CONSOLE_ROLES),
    Page("dead-letters", PREFIX + "/dead-letters", "死信", frozenset({_R.OPERATOR, _R.SECTOR_ADMIN}),
         ("GET", "/v1/ops/dead-letters")),
    Page("replays", PREFIX + "/replays", "批量重放", frozenset({_R.OPERATOR, _R.SECTOR_ADMIN}),
         ("GET", "/v1/ops/replays")),
    Page("journey", PREFIX + "/cases", "办件轨迹", frozenset({_R.OPERATOR, _R.SECTOR_ADMIN}),
         ("GET", "/v1/ops/cases/{case_no}/journey")),
    Page("adapters", PREFIX + "/adapters", "适配器", frozenset({_R.OPERATOR, _R.SYSTEM_ADMIN, _R.SECTOR_ADMIN}),
         ("GET", "/v1/adapters")),
    Page("approvals", PREFIX + "/approvals", "审批", frozenset({_R.SECTOR_ADMIN, _R.OPERATOR, _R.SYSTEM_ADMIN,
                                                                 _R.CATALOGUE_ADMIN}), ("GET", "/v1/approvals")),
    Page("certificates", PREFIX + "/certificates", "证书", frozenset({_R.SECURITY_ADMIN, _R.SECTOR_ADMIN}),
         ("GET", "/v1/certificates")),
    Page("audit", PREFIX + "/audit", "审计日志", frozenset({_R.AUDITOR}), ("GET", "/v1/audit")),
    Page("ferry", PREFIX + "/ferry", "摆渡通道", frozenset({_R.OPERATOR, _R.SECTOR_ADMIN}),
         ("GET", "/v1/ops/ferry/channels")),
)
_BY_NAME = {page.name: page for page in PAGES}


class SignInNeeded(Exception):
    """No live console session: sign in (again)."""


class NotForYou(Exception):
    """Signed in, but the identity's roles do not admit it here (or to the console at all)."""

    def __init__(self, identity: Identity, page: Page | None) -> None:
        super().__init__(page.title if page else "控制台")
        self.identity, self.page = identity, page


class CsrfRefused(Exception):
    """A change without the session's CSRF token, or from another origin."""


# --- templates ---------------------------------------------------------------------------------------------


def beijing(value: datetime | str | None) -> str:
    """A stored instant as people read it: Beijing time, to the second. Text that is no time (a sector's own
    words in a time field) is shown as it is — escaped like every value — never an error page."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "—"
    if isinstance(value, datetime):
        instant = value
    else:
        try:
            instant = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return str(value)
    if instant.tzinfo is None:  # naive: stored in UTC (DESIGN invariant 10)
        instant = as_utc(instant)
    return instant.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | str | None) -> str:
    """A duration as people read it: 45 秒, 3 分 12 秒, 2 小时 05 分, 3 天 04 小时; — when it never happened.
    Anything that is no number is shown as it is (escaped), never an error page."""
    if seconds is None:
        return "—"
    if not isinstance(seconds, int | float):
        return str(seconds)
    return duration_text(seconds, (" 天", " 小时", " 分", " 秒"))


def role_name(role: Role | str) -> str:
    """A role as people call it (运维人员), not its code."""
    try:
        return ROLE_NAMES[Role(role)]
    except ValueError:  # not a role of ours: shown as it is (escaped)
        return str(role)


def link(target: object) -> str:
    """An href the page takes from its context (a count's filter, the next page, the navigation): only a path
    of the console itself; anything else (a `javascript:` URL, another site) links to the overview. Links
    holding data are built by the template from a fixed path instead: `/console/dead-letters/{{ id }}`."""
    return safe_next(target if isinstance(target, str) else None)


_environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_environment.filters.update(beijing=beijing, masked=mask_value, age=age, role_name=role_name, link=link)
TEMPLATES = Jinja2Templates(env=_environment)


def render(request: Request, template: str, /, status_code: int = 200, **context: Any) -> HTMLResponse:
    me: Identity | None = getattr(request.state, "console_identity", None)
    session: ConsoleSession | None = getattr(request.state, "console_session", None)
    base = {"me": me, "csrf": session.csrf_token if session else "", "current": context.pop("current", None),
            "nav": [page for page in PAGES if me is not None and me.roles & page.roles]}
    return TEMPLATES.TemplateResponse(request, template, {**base, **context}, status_code=status_code)


# --- who is signed in --------------------------------------------------------------------------------------


def sessions(request: Request) -> ConsoleSessions:
    return cast(ConsoleSessions, request.app.state.console_sessions)  # set by ops.console.install_console


def ledger_of(request: Request) -> Ledger:
    """The audit and message logs, which every console change writes to."""
    return cast(Ledger, request.app.state.ledger)  # set by gateway.bootstrap.app


def time_now(request: Request) -> datetime:
    """The gateway's clock's now (a test's pinned clock included)."""
    return cast(Clock, request.app.state.clock).now()  # set by gateway.bootstrap.app


def is_tls(request: Request) -> bool:
    """Whether the browser reached us over TLS: our own scheme, or the terminator's word — believed only from
    its addresses (YIWANG_TLS_PROXIES)."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    return peer in request.app.state.tls_proxies and request.headers.get("x-forwarded-proto", "").lower() == "https"


def client_address(request: Request) -> str:
    """The browser's address: the terminator's X-Forwarded-For (its last hop) only from the terminator."""
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and peer in request.app.state.tls_proxies:
        return forwarded.split(",")[-1].strip()[:64] or peer
    return peer


def console_user(request: Request) -> Identity:
    """The identity of the request's live session, as it is now (roles changed, key revoked: at once)."""
    session = sessions(request).find(request.cookies.get(COOKIE))
    keys: ApiKeyStore = request.app.state.keystore
    issued = keys.get(session.identity_id) if session is not None else None
    if session is None or issued is None or not issued.active:
        raise SignInNeeded()
    request.state.console_session = session
    request.state.console_identity = request.state.identity = issued.identity  # the audit middleware's `who`
    if not issued.identity.roles & CONSOLE_ROLES:
        raise NotForYou(issued.identity, None)
    return issued.identity


def entered(page_name: str) -> Callable[[Request], Identity]:
    """A dependency admitting the signed-in identities whose roles the page admits."""
    page = _BY_NAME[page_name]

    def dependency(request: Request) -> Identity:
        identity = console_user(request)
        if not identity.roles & page.roles:
            raise NotForYou(identity, page)
        request.state.console_page = page
        return identity

    return dependency


async def csrf_checked(request: Request) -> None:
    """Every change carries the session's token and, when the browser says where it comes from, our origin."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", request.url.netloc):
        raise CsrfRefused("请求来自其他来源")
    session: ConsoleSession | None = getattr(request.state, "console_session", None)
    if session is None:  # dependencies run in order: the page's `entered` first
        console_user(request)
        session = request.state.console_session
    presented = request.headers.get("x-csrf-token")
    if presented is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        field = (await request.form()).get("csrf")
        presented = field if isinstance(field, str) else None
    if not session.csrf_matches(presented):
        raise CsrfRefused("缺少或错误的 CSRF 令牌：请刷新页面后重试")


Csrf = Annotated[None, Depends(csrf_checked)]


def sign_in_target(request: Request) -> str:
    """Where a GET that needs a session goes: the sign-in page, then back here."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{PREFIX}/sign-in?next={quote(here, safe='')}"


def safe_next(target: str | None) -> str:
    """Only a path of the console itself: never another site (an open redirect)."""
    if target and target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target:
        split = urlsplit(target)
        if not split.scheme and not split.netloc:
            return target
    return PREFIX
