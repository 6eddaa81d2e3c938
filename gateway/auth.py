"""Who is calling, and may they? API keys → identities with roles; every endpoint declares its roles.

A route says `identity: Identity = Depends(require(Role.WINDOW, Role.HALL_CLIENT))`. A missing or
unknown key is a 401 problem, a known key without one of the roles a 403 problem. Keys are looked up
through `app.state.keystore` (an object with `authenticate(raw_key) -> Identity | None`), which keeps
a cache so a request costs no database round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from fastapi import Request


class Role(StrEnum):
    HALL_CLIENT = "hall_client"  # the online hall (PC, mobile) acting for applicants
    WINDOW = "window"  # a window or agency terminal: city/county window, township counter, village agent
    CLERK = "clerk"  # a back-office clerk of one department (`Identity.department`)
    ISSUING_WINDOW = "issuing_window"  # unified certificate issuing and delivery (统一出证、统一送达)
    CATALOGUE_ADMIN = "catalogue_admin"  # drafts, validates and publishes matter guides
    OPERATOR = "operator"  # dead letters, replay, health
    AUDITOR = "auditor"  # reads the audit log
    SECTOR_ADMIN = "sector_admin"  # a sector's IT team (`Identity.sector`)


ALL_ROLES = tuple(Role)


@dataclass(frozen=True)
class Identity:
    id: str
    name: str
    roles: frozenset[Role]
    department: str | None = None  # a clerk's department: its unified social credit code
    sector: str | None = None  # a sector administrator's sector

    def has(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))


class KeyStore(Protocol):
    def authenticate(self, raw_key: str) -> Identity | None: ...


class NotAuthenticated(Exception):
    """No key, or a key nobody holds (or one revoked)."""


class NotAllowed(Exception):
    """The identity holds none of the roles the endpoint admits, or acts outside its department/sector."""


def presented_key(request: Request) -> str | None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def require(*roles: Role) -> Callable[[Request], Identity]:
    """A FastAPI dependency admitting only identities with one of `roles`."""
    admitted = frozenset(roles)

    def dependency(request: Request) -> Identity:
        key = presented_key(request)
        store: KeyStore = request.app.state.keystore
        identity = store.authenticate(key) if key else None
        if identity is None:
            raise NotAuthenticated("a valid API key is required (Authorization: Bearer <key>)")
        if not identity.roles & admitted:
            raise NotAllowed(f"this endpoint admits {', '.join(sorted(admitted))}")
        request.state.identity = identity
        return identity

    dependency.admitted_roles = admitted  # type: ignore[attr-defined]  # read by the role-matrix test
    return dependency
