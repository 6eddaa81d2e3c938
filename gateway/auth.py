"""Who is calling, and may they? API keys → identities with roles; every endpoint declares its roles.

A route says `identity: Identity = Depends(require(Role.WINDOW, Role.HALL_CLIENT))`. A missing or
unknown key is a 401 problem, a known key without one of the roles a 403 problem, an identity over its
rate limit (`app.state.rate_limiter`, when configured) a 429 problem. Keys are looked up
through `app.state.keystore` (an object with `authenticate(raw_key) -> Identity | None`), which keeps
a cache so a request costs no database round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import Request


class Role(StrEnum):
    HALL_CLIENT = "hall_client"  # the online hall (PC, mobile) acting for applicants
    WINDOW = "window"  # a window or agency terminal: city/county window, township counter, village agent
    CLERK = "clerk"  # a back-office clerk of one department (`Identity.department`)
    ISSUING_WINDOW = "issuing_window"  # unified certificate issuing and delivery (统一出证、统一送达)
    CATALOGUE_ADMIN = "catalogue_admin"  # drafts, validates and publishes matter guides
    OPERATOR = "operator"  # dead letters, replay, health
    AUDITOR = "auditor"  # the audit administrator (审计管理员): reads the audit log, changes nothing
    SECTOR_ADMIN = "sector_admin"  # a sector's IT team (`Identity.sector`)
    SYSTEM_ADMIN = "system_admin"  # the system administrator (系统管理员): bundles of every sector, adapters
    SECURITY_ADMIN = "security_admin"  # the security administrator (安全管理员): identities, keys, certificates


ALL_ROLES = tuple(Role)

# Separation of duties (等保 三员分立): the system, security and audit administrators are three people.
# Operators replay and discard what the audit administrator checks, so operating counts as system
# administration. An identity's roles may belong to one duty at most; business roles belong to none.
DUTIES: dict[Role, str] = {
    Role.SYSTEM_ADMIN: "system administration",
    Role.OPERATOR: "system administration",
    Role.SECURITY_ADMIN: "security administration",
    Role.AUDITOR: "audit",
}


def separation_breach(roles: frozenset[Role]) -> str | None:
    """Why these roles may not be held together, or None when they may."""
    duties = {DUTIES[r] for r in roles if r in DUTIES}
    if len(duties) <= 1:
        return None
    held = ", ".join(sorted(r for r in roles if r in DUTIES))
    return (f"separation of duties: {held} span {' and '.join(sorted(duties))}, "
            "which one identity may not hold together")


@dataclass(frozen=True)
class Identity:
    id: str
    name: str
    roles: frozenset[Role]
    department: str | None = None  # a clerk's department: its unified social credit code
    sector: str | None = None  # a sector administrator's sector

    def has(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))


def acts_for_sector(identity: Identity, sector: str) -> bool:
    """Operators and system administrators act for every sector; a sector administrator for their own."""
    return identity.has(Role.OPERATOR, Role.SYSTEM_ADMIN) or (
        identity.has(Role.SECTOR_ADMIN) and identity.sector == sector)


def may_unmask(identity: Identity, sector: str) -> bool:
    """Who may read a sector exchange's personal data unmasked (each read audited): operators, who must
    diagnose what a sector refused, and that sector's own administrator, whose system holds the data anyway."""
    return identity.has(Role.OPERATOR) or (identity.has(Role.SECTOR_ADMIN) and identity.sector == sector)


class KeyStore(Protocol):
    def authenticate(self, raw_key: str) -> Identity | None: ...

    def authenticate_certificate(self, fingerprint: str) -> Identity | None: ...


class NotAuthenticated(Exception):
    """No key, or a key nobody holds (or one revoked)."""


class NotAllowed(Exception):
    """The identity holds none of the roles the endpoint admits, or acts outside its department/sector."""


class RateLimiter(Protocol):
    def wait_s(self, identity_id: str) -> float: ...


class RateLimited(Exception):
    """The identity has used up its requests for now (`gateway.rate_limits`)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many requests from this identity; retry after {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


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


def certificate_fingerprint(pem: bytes) -> str:
    """SHA-256 of the certificate's DER, hex; ValueError when it is no PEM certificate."""
    certificate = x509.load_pem_x509_certificate(pem)
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


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
            raise NotAuthenticated("a valid API key is required (Authorization: Bearer <key>)")
        # Every call of a known identity costs a token, refused ones too: probing is not free.
        limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
        if limiter is not None and (wait := limiter.wait_s(identity.id)) > 0:
            raise RateLimited(wait)
        if not identity.roles & admitted:
            raise NotAllowed(f"this endpoint admits {', '.join(sorted(admitted))}")
        request.state.identity = identity
        return identity

    dependency.admitted_roles = admitted  # type: ignore[attr-defined]  # read by the role-matrix test
    return dependency
