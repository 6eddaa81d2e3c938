"""The role model: who may do what, as data. Plain Python (DESIGN.md: the domain core imports no I/O).

Roles, the duties that separation of duties (三员分立) keeps apart, the identity a key or certificate stands
for, the sector and unmasking rules, and the ports the HTTP layer authenticates and rate-limits through
(`KeyStore`, `RateLimiter`) with the refusals they raise. The FastAPI dependency that applies them to a
request is `gateway.http.callers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


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

# Each role as people in a service hall call it: the API's reference and the operators' console show these.
ROLE_NAMES: dict[Role, str] = {
    Role.HALL_CLIENT: "网上大厅",
    Role.WINDOW: "窗口终端",
    Role.CLERK: "部门后台经办人",
    Role.ISSUING_WINDOW: "统一出证送达窗口",
    Role.CATALOGUE_ADMIN: "事项目录管理员",
    Role.OPERATOR: "运维人员",
    Role.AUDITOR: "审计管理员",
    Role.SECTOR_ADMIN: "部门系统管理员",
    Role.SYSTEM_ADMIN: "系统管理员",
    Role.SECURITY_ADMIN: "安全管理员",
}

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
    held = "、".join(sorted(r for r in roles if r in DUTIES))
    return f"违反三员分立：{held} 分属不同职责（{'、'.join(sorted(duties))}），同一身份不能兼任"


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


UNMASKED_ONLY = "个人信息只对运维人员和本部门的管理员以明文显示"


class RateLimiter(Protocol):
    def wait_s(self, identity_id: str) -> float: ...


class RateLimited(Exception):
    """The identity has used up its requests for now (`gateway.security.rate_limits`)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"该身份的请求过于频繁，请 {retry_after_s:.1f} 秒后重试")
        self.retry_after_s = retry_after_s
