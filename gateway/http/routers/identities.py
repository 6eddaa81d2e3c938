"""Identity management over HTTP, for the security administrator (安全管理员) only.

Issue (the raw key is in the answer, this once), list, read, change roles, revoke. The rules are the
key store's (`gateway.security.api_keys`): separation of duties holds for every identity, and the security
administrator may not change their own identity — nobody grants themselves a role.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from gateway.domain.clock import beijing_text
from gateway.domain.roles import Identity, NotAllowed, RateLimited, Role
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import install_problems, problem_doc, problem_response
from gateway.persistence.keyset import Keyset
from gateway.security.api_keys import (
    AlreadyRevoked,
    ApiKeyStore,
    IdentityError,
    IssuedIdentity,
    SeparationOfDuties,
    UnknownIdentity,
    parse_role,
)
from gateway.security.rate_limits import retry_after_header

router = APIRouter(prefix="/v1", tags=["identities"], route_class=JsonBodyRoute)
IDENTITIES = Keyset("identities", (datetime, str))  # oldest first; a few hundred at most: held in memory
SecurityAdmin = Annotated[Identity, Depends(require(Role.SECURITY_ADMIN))]


class RolesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field(min_length=1, max_length=len(Role), description="role values, e.g. window")
    department: str | None = Field(default=None, max_length=18, description="a clerk's department (credit code)")
    sector: str | None = Field(default=None, max_length=64, description="a sector administrator's sector")


class IdentityIn(RolesIn):
    name: str = Field(min_length=1, max_length=128, description="who holds the key")


def _keys(request: Request) -> ApiKeyStore:
    return cast(ApiKeyStore, request.app.state.keystore)  # set by gateway.bootstrap.app


def _issued(request: Request, identity_id: str) -> IssuedIdentity:
    issued = _keys(request).get(identity_id)
    if issued is None:
        raise UnknownIdentity(f"没有身份 {identity_id}")
    return issued


def identity_view(issued: IssuedIdentity) -> dict[str, Any]:
    """An identity as administrators see it: never the key or its hash."""
    i = issued.identity
    return {"id": i.id, "name": i.name, "roles": sorted(i.roles), "department": i.department, "sector": i.sector,
            "key_prefix": issued.key_prefix, "created_at": beijing_text(issued.created_at),
            "revoked_at": beijing_text(issued.revoked_at) if issued.revoked_at else None, "active": issued.active}


@router.post("/identities", status_code=201, responses=problem_doc(401, 403, 422),
             summary="签发身份和 API 密钥")
def issue_identity(body: IdentityIn, request: Request, _: SecurityAdmin) -> dict[str, Any]:
    """新建一个调用方身份（名称、角色、部门或部门系统范围）并签发其 API 密钥。
    密钥只在这次应答中出现，网关只保存其摘要：请立即交给调用方妥善保管。
    角色须符合三员分立（系统、安全、审计管理员不能集于一身），否则 422。不是幂等操作：每次都签发新的身份。
    返回 201 和身份（含 `key`）。"""
    roles = [parse_role(r) for r in body.roles]
    identity, raw_key = _keys(request).issue(body.name, roles, department=body.department, sector=body.sector)
    return {**identity_view(_issued(request, identity.id)), "key": raw_key}


@router.get("/identities", response_model=Page[dict[str, Any]], responses=problem_doc(401, 403, 422),
            summary="列出身份")
def list_identities(request: Request, _: SecurityAdmin, paging: Paged) -> dict[str, Any]:
    """全部身份，包括已吊销的（不含密钥）。只读。"""
    issued = _keys(request).list()
    page = IDENTITIES.seek(issued, lambda i: (i.created_at, i.identity.id), paging.after(IDENTITIES), paging.limit)
    return answer(IDENTITIES, page, identity_view, len(issued))


@router.get("/identities/{identity_id}", summary="查看身份", responses=problem_doc(401, 403, 404))
def get_identity(identity_id: str, request: Request, _: SecurityAdmin) -> dict[str, Any]:
    """一个身份的名称、角色、范围和状态（不含密钥）。只读。"""
    return identity_view(_issued(request, identity_id))


@router.put("/identities/{identity_id}/roles", responses=problem_doc(401, 403, 404, 409, 422),
            summary="更改身份的角色")
def change_roles(identity_id: str, body: RolesIn, request: Request, admin: SecurityAdmin) -> dict[str, Any]:
    """替换一个身份的角色和范围，密钥不变；各网关进程数秒内生效。
    幂等：同样的角色重复设置结果相同。已吊销的身份为 409；违反三员分立为 422。"""
    if identity_id == admin.id:
        raise NotAllowed("不能修改自己的角色：须由另一位安全管理员修改")
    roles = [parse_role(r) for r in body.roles]
    _keys(request).change(identity_id, roles, department=body.department, sector=body.sector)
    return identity_view(_issued(request, identity_id))


@router.post("/identities/{identity_id}/revoke", responses=problem_doc(401, 403, 404, 409),
             summary="吊销身份")
def revoke_identity(identity_id: str, request: Request, _: SecurityAdmin) -> dict[str, Any]:
    """吊销一个身份的密钥，各网关进程数秒内拒绝它。不可撤销；已吊销的再吊销为 409。"""
    _keys(request).revoke(identity_id)
    return identity_view(_issued(request, identity_id))


def install_access_error_handlers(app: FastAPI) -> None:
    async def rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
        response = problem_response(429, "rate-limited", "请求过于频繁", str(exc), request.url.path)
        response.headers["Retry-After"] = retry_after_header(exc.retry_after_s)
        return response

    # Starlette types a handler as taking any Exception; ours takes the class it handles: hence the ignore.
    app.add_exception_handler(RateLimited, rate_limited)  # type: ignore[arg-type]
    install_problems(app, [  # the most specific class wins, whatever the order
        (IdentityError, 422, "invalid-identity", "身份不符合规则"),
        (SeparationOfDuties, 422, "separation-of-duties", "违反三员分立"),
        (UnknownIdentity, 404, "unknown-identity", "没有该身份"),
        (AlreadyRevoked, 409, "identity-revoked", "该身份已吊销"),
    ])
