"""Signing in to the console and out of it: an identity's API key or client certificate for a session.

`IdentityProvider` is the seam: each way of proving who one is (`ApiKeyProvider`, `CertificateProvider`; the
province's unified identity, 统一身份认证, would be a third: an SSO callback route that asks the provider for
the identity its ticket names) answers the identity or None. Whichever proved it, the console then:
- refuses an address locked out by repeated failures (`ConsoleSessions.locked_until`), counting each failure;
- refuses roles the console is not for, with a page that says so, and opens no session for them;
- opens a NEW session (its id never one the browser had before: no fixation) and sets the cookie HttpOnly,
  SameSite=Strict, path /console, Secure when the browser came over TLS;
- writes an audit record of the sign-in, a failure or a lockout (who, from where, how), never the key.
The sign-in form itself carries a token of its own (double-submit: a cookie and a field that must match), so a
foreign page cannot sign a browser in under someone else's identity.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Protocol

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.domain.roles import Identity, KeyStore
from gateway.http.callers import ClientCertificates
from ops.console.web import (
    CONSOLE_ROLES,
    COOKIE,
    PREFIX,
    Csrf,
    client_address,
    console_user,
    is_tls,
    ledger_of,
    render,
    safe_next,
    sessions,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)
FORM_COOKIE = "yiwang_console_form"  # the sign-in form's own token (double-submit)


class IdentityProvider(Protocol):
    """One way of proving who one is at sign-in."""

    name: str

    def identify(self, request: Request, key: str) -> Identity | None: ...


class ApiKeyProvider:
    name = "key"

    def identify(self, request: Request, key: str) -> Identity | None:
        store: KeyStore = request.app.state.keystore
        return store.authenticate(key.strip()) if key.strip() else None


class CertificateProvider:
    """The client certificate the TLS terminator verified and passed on (YIWANG_CLIENT_CERT_HEADER)."""

    name = "certificate"

    def identify(self, request: Request, key: str) -> Identity | None:
        certificates: ClientCertificates | None = getattr(request.app.state, "client_certificates", None)
        fingerprint = certificates.fingerprint(request) if certificates is not None else None
        store: KeyStore = request.app.state.keystore
        return store.authenticate_certificate(fingerprint) if fingerprint else None


PROVIDERS: dict[str, IdentityProvider] = {p.name: p for p in (ApiKeyProvider(), CertificateProvider())}


def _audit(request: Request, who: str, action: str, outcome: str, identity: Identity | None = None) -> None:
    ledger_of(request).audit(who, action, "console", {"client": client_address(request),
                                                    "name": identity.name if identity else None},
                           identity.sector if identity else None, outcome=outcome)


def _form_page(request: Request, status_code: int = 200, problem: str | None = None,
               target: str | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    certificates = getattr(request.app.state, "client_certificates", None)
    page = render(request, "sign_in.html", status_code=status_code, form_token=token, problem=problem,
                  next=safe_next(target), certificates=certificates is not None)
    page.set_cookie(FORM_COOKIE, token, httponly=True, samesite="strict", secure=is_tls(request), path=PREFIX)
    return page


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002 - the query's name
    return _form_page(request, target=next)


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(request: Request, form_token: Annotated[str, Form(max_length=100)] = "",
            key: Annotated[str, Form(max_length=200)] = "", via: Annotated[str, Form(max_length=20)] = "key",
            next: Annotated[str, Form(max_length=2000)] = PREFIX) -> Response:  # noqa: A002
    expected = request.cookies.get(FORM_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), form_token.encode()):
        return _form_page(request, 403, "登录表单已过期或不是从本页提交的，请重新登录", next)
    console, client = sessions(request), client_address(request)
    if (until := console.locked_until(client)) is not None:
        _audit(request, "anonymous", "console sign-in refused", f"locked out until {until.isoformat()}")
        return _form_page(request, 429, "登录失败次数过多，该地址暂被锁定，请稍后再试", next)
    provider = PROVIDERS.get(via)
    identity = provider.identify(request, key) if provider is not None else None
    if identity is None or provider is None:
        locked = console.failed(client)
        _audit(request, "anonymous", "console sign-in failed",
               f"{via}: not recognised" + (f"; locked out until {locked.isoformat()}" if locked else ""))
        return _form_page(request, 401, "密钥或证书无效，或已被吊销", next)
    if not identity.roles & CONSOLE_ROLES:
        _audit(request, f"identity:{identity.id}", "console sign-in refused", "roles not admitted", identity)
        request.state.console_identity = identity
        return render(request, "not_for_you.html", status_code=403, page=None)
    raw_id, _ = console.open(identity.id, client, provider.name)
    request.state.identity = identity  # the audit middleware's `who` for this POST
    _audit(request, f"identity:{identity.id}", "console sign-in", f"signed in with {provider.name}", identity)
    answer = RedirectResponse(safe_next(next), status_code=303)
    answer.set_cookie(COOKIE, raw_id, httponly=True, samesite="strict", secure=is_tls(request), path=PREFIX,
                      max_age=int(console.policy.absolute.total_seconds()))
    answer.delete_cookie(FORM_COOKIE, path=PREFIX)
    return answer


@router.post("/sign-out")
def sign_out(request: Request, _: Csrf) -> Response:
    identity = console_user(request)
    sessions(request).end(request.cookies.get(COOKIE, ""))
    _audit(request, f"identity:{identity.id}", "console sign-out", "signed out", identity)
    answer = RedirectResponse(PREFIX + "/sign-in", status_code=303)
    answer.delete_cookie(COOKIE, path=PREFIX)
    return answer
