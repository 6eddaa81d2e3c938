"""Who is calling, and may they? API keys → identities with roles; every endpoint declares its roles.

A route says `identity: Identity = Depends(require(Role.WINDOW, Role.HALL_CLIENT))`. A missing or
unknown key is a 401 problem, a known key without one of the roles a 403 problem, an identity over its
rate limit (`app.state.rate_limiter`, when configured) a 429 problem. Keys are looked up
through `app.state.keystore` (an object with `authenticate(raw_key) -> Identity | None`), which keeps
a cache so a request costs no database round trip. The role model itself (roles, duties, identities, the
refusals) is plain Python in `gateway.domain.roles`; this module only applies it to a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from fastapi import Request

from gateway.domain.roles import Identity, KeyStore, NotAllowed, NotAuthenticated, RateLimited, RateLimiter, Role
from gateway.security.api_keys import certificate_fingerprint


def presented_key(request: Request) -> str | None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


@dataclass(frozen=True)
class ClientCertificates:
    """mTLS client certificates as a TLS terminator in front of the gateway passes them on: the PEM,
    URL-escaped (nginx `$ssl_client_escaped_cert`), in `header`, believed only from `proxies`. The
    terminator verifies the certificate against the CA; the gateway maps its SHA-256 to an identity."""

    header: str
    proxies: frozenset[str]

    def fingerprint(self, request: Request) -> str | None:
        escaped = request.headers.get(self.header)
        if not escaped or request.client is None or request.client.host not in self.proxies:
            return None  # a header from anyone else is a claim, not a certificate
        try:
            return certificate_fingerprint(unquote(escaped).encode())
        except ValueError:
            return None


def caller(request: Request) -> Identity | None:
    """Who is calling: by API key, else (when configured) by a client certificate bound to an identity."""
    store: KeyStore = request.app.state.keystore
    key = presented_key(request)
    if key:
        return store.authenticate(key)
    certificates: ClientCertificates | None = getattr(request.app.state, "client_certificates", None)
    fingerprint = certificates.fingerprint(request) if certificates is not None else None
    return store.authenticate_certificate(fingerprint) if fingerprint else None


def require(*roles: Role) -> Callable[[Request], Identity]:
    """A FastAPI dependency admitting only identities with one of `roles`."""
    admitted = frozenset(roles)

    def dependency(request: Request) -> Identity:
        identity = caller(request)
        if identity is None:
            raise NotAuthenticated("请在 Authorization 头中提供有效的 API 密钥（Authorization: Bearer <密钥>）")
        # Every call of a known identity costs a token, refused ones too: probing is not free.
        limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
        if limiter is not None and (wait := limiter.wait_s(identity.id)) > 0:
            raise RateLimited(wait)
        if not identity.roles & admitted:
            raise NotAllowed(f"此接口只对以下角色开放：{'、'.join(sorted(admitted))}")
        request.state.identity = identity
        return identity

    dependency.admitted_roles = admitted  # type: ignore[attr-defined]  # read by the role-matrix test
    return dependency
