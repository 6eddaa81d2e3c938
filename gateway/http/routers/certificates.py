"""`/v1/certificates`: the certificate store over HTTP, for security administrators (every entry) and sector
administrators (their own sector's entries only; another sector's is a 403, as for bundles).

Private keys go in (PEM or PKCS#12) and never come out: listings and details show subject, issuer,
validity, SHA-256 and SM3 fingerprints and status. A CSR's key is generated here and stays here.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from certstore import (
    KEY_ALGORITHMS,
    MAX_OVERLAP_DAYS,
    CertConflict,
    CertificateError,
    CertStore,
    SealedValueUnavailable,
    StoredVersion,
    Subject,
    UnknownEntry,
)
from gateway.domain.clock import instants_as_beijing_text
from gateway.domain.roles import Identity, NotAllowed, Role
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import install_problems, problem_doc
from gateway.persistence.keyset import Keyset
from gateway.persistence.tables import MAX_ROW_ID

router = APIRouter(prefix="/v1/certificates", tags=["certificates"], route_class=JsonBodyRoute)
ENTRIES = Keyset("certificates", (str,))  # by name; held in memory (tens of entries)
ADMINS = require(Role.SECURITY_ADMIN, Role.SECTOR_ADMIN)


class ImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    certificate_pem: str | None = Field(default=None, description="the certificate, then its chain (PEM)")
    private_key_pem: str | None = Field(default=None, description="its private key (PEM; may be encrypted)")
    pkcs12_base64: str | None = Field(default=None, description="instead of PEM: a PKCS#12 file, base64")
    password: str | None = Field(default=None, description="of an encrypted PEM key or of the PKCS#12 file")
    sector: str | None = Field(default=None, description="the owner (security administrators; default: the gateway)")


class SubjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    common_name: str = Field(min_length=1, max_length=64)
    organization: str | None = None
    organizational_unit: str | None = None
    country: str = "CN"
    sans: list[str] = Field(default_factory=list, description="DNS names or IP addresses")


class CsrIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: SubjectIn
    algorithm: str = Field(default="rsa-2048", description=" | ".join(KEY_ALGORITHMS))
    sector: str | None = None


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_days: float | None = Field(default=None, ge=0, le=MAX_OVERLAP_DAYS, allow_inf_nan=False,
                                       description="default: YIWANG_CERT_OVERLAP_DAYS")


class RetireIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(default=None, ge=1, le=MAX_ROW_ID, description="one version; none: the whole name")


def _store(request: Request) -> CertStore:
    return cast(CertStore, request.app.state.certs)  # set by gateway.bootstrap.app


def _actor(identity: Identity) -> str:
    return f"identity:{identity.id}"


def _may_see(identity: Identity, sector: str | None) -> bool:
    return identity.has(Role.SECURITY_ADMIN) or (sector is not None and identity.sector == sector)


def _owned(identity: Identity, store: CertStore, name: str) -> str | None:
    """The owner of an existing name, if this identity may act on it (else 403)."""
    sector = store.owner(name)
    if not _may_see(identity, sector):
        raise NotAllowed(f"不是证书 {name} 所属部门的管理员")
    return sector


def _target_sector(identity: Identity, store: CertStore, name: str, requested: str | None) -> str | None:
    """Whose entry an import or CSR makes: a sector administrator's is always their own sector's."""
    try:
        _owned(identity, store, name)
    except UnknownEntry:
        pass
    if identity.has(Role.SECURITY_ADMIN):
        return requested
    if requested not in (None, identity.sector):
        raise NotAllowed(f"不是部门 {requested} 的管理员")
    return identity.sector


def _shown(version: StoredVersion) -> dict[str, Any]:
    """A version as listed; its instants (the store keeps them in UTC) in Beijing time."""
    shown: dict[str, Any] = instants_as_beijing_text(version.public())
    return shown


def _entry(versions: list[StoredVersion]) -> dict[str, Any]:
    first = versions[0]
    shown = []
    for v in versions:
        public = _shown(v)
        if v.status == "pending":
            public["csr_pem"] = v.csr_pem  # to hand over again; the key never leaves
        shown.append(public)
    return {"name": first.name, "sector": first.sector, "kind": first.kind, "versions": shown}


@router.get("", response_model=Page[dict[str, Any]], responses=problem_doc(401, 403, 422), summary="列出证书与密钥")
def list_entries(request: Request, identity: Annotated[Identity, Depends(ADMINS)], paging: Paged) -> dict[str, Any]:
    """调用方可见的全部证书和密钥条目（部门系统管理员只看到本部门的），只列版本和有效期，从不返回私钥。只读。"""
    by_name: dict[str, list[StoredVersion]] = {}
    for version in _store(request).versions():
        if _may_see(identity, version.sector):
            by_name.setdefault(version.name, []).append(version)
    entries = list(by_name.values())
    page = ENTRIES.seek(entries, lambda versions: (versions[0].name,), paging.after(ENTRIES), paging.limit)
    return answer(ENTRIES, page, _entry, len(entries))


@router.get("/{name}", responses=problem_doc(401, 403, 404), summary="查看证书条目")
def show_entry(name: str, request: Request, identity: Annotated[Identity, Depends(ADMINS)]) -> dict[str, Any]:
    """一个条目的各个版本、有效期和状态，从不返回私钥。只读。"""
    _owned(identity, _store(request), name)
    return _entry(_store(request).versions(name))


@router.post("/{name}/import", status_code=201, responses=problem_doc(401, 403, 409, 422),
             summary="导入证书")
def import_certificate(name: str, body: ImportIn, request: Request,
                       identity: Annotated[Identity, Depends(ADMINS)]) -> dict[str, Any]:
    """导入一份证书（PEM，可带私钥；或 PKCS#12），作为该名称的新版本暂存，私钥加密保存。
    与已有版本冲突为 409，证书无法读取为 422。返回 201 和条目。"""
    store = _store(request)
    sector = _target_sector(identity, store, name, body.sector)
    password = body.password.encode() if body.password is not None else None
    if (body.pkcs12_base64 is None) == (body.certificate_pem is None):
        raise CertificateError("请给出 certificate_pem（可附 private_key_pem）或 pkcs12_base64，二者选一")
    if body.pkcs12_base64 is not None:
        stored = store.import_pkcs12(name, _unbase64(body.pkcs12_base64), password, sector=sector,
                                     actor=_actor(identity))
    else:
        key = body.private_key_pem.encode() if body.private_key_pem else None
        stored = store.import_pem(name, (body.certificate_pem or "").encode(), key, password=password, sector=sector,
                                  actor=_actor(identity))
    return _shown(stored)


@router.post("/{name}/csr", status_code=201, responses=problem_doc(401, 403, 409, 422),
             summary="生成密钥和证书签名请求")
def request_csr(name: str, body: CsrIn, request: Request,
                identity: Annotated[Identity, Depends(ADMINS)]) -> dict[str, Any]:
    """在网关内生成密钥对（私钥不出网关）和证书签名请求（CSR），用于部门接入时申请证书。返回 201 和 CSR。"""
    store = _store(request)
    sector = _target_sector(identity, store, name, body.sector)
    subject = Subject(body.subject.common_name, body.subject.organization, body.subject.organizational_unit,
                      body.subject.country, tuple(body.subject.sans))
    stored, csr = store.request(name, subject, body.algorithm, sector=sector, actor=_actor(identity))
    return {**_shown(stored), "csr_pem": csr.decode()}


@router.post("/{name}/rotate", responses=problem_doc(401, 403, 404, 409),
             summary="轮换证书")
def rotate(name: str, body: RotateIn, request: Request,
           identity: Annotated[Identity, Depends(ADMINS)]) -> dict[str, Any]:
    """让最新暂存的版本成为当前版本；上一版本在重叠期内仍被信任，期满后停用。没有可轮换的版本为 409。"""
    store = _store(request)
    _owned(identity, store, name)
    overlap = timedelta(days=body.overlap_days) if body.overlap_days is not None else None
    return _shown(store.rotate(name, _actor(identity), overlap))


@router.post("/{name}/retire", responses=problem_doc(401, 403, 404, 409),
             summary="停用证书")
def retire(name: str, body: RetireIn, request: Request,
           identity: Annotated[Identity, Depends(ADMINS)]) -> dict[str, Any]:
    """停用一个版本（不能是当前版本），或停用整个名称。状态不允许时为 409。"""
    store = _store(request)
    _owned(identity, store, name)
    return _entry(store.retire(name, _actor(identity), body.version))


def _unbase64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateError("pkcs12_base64 is not valid base64") from exc


def install_cert_error_handlers(app: FastAPI) -> None:
    install_problems(app, [
        (CertificateError, 422, "invalid-certificate", "证书或密钥无效"),
        (CertConflict, 409, "certificate-conflict", "证书状态不允许此操作"),
        (UnknownEntry, 404, "unknown-certificate", "没有该证书"),
        (SealedValueUnavailable, 500, "master-key-unavailable", "主密钥无法解开已加密的密钥"),
    ])
