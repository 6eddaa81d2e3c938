"""The catalogue endpoints: every role reads published guides; catalogue administrators draft and publish.

The request body of a draft is a matter document in the catalogue file format, parsed by the same
code as files (`matter_from_document`), so a file and a request get the same readable errors.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from gateway.catalogue.matters import (
    Catalogue,
    CatalogueError,
    InvalidMatter,
    MatterNotFound,
    VersionConflict,
    matter_from_document,
    matter_to_document,
)
from gateway.domain.matter import BodyNature, HandlingForm, Level, Matter, MatterType, ServiceObject, TimeUnit
from gateway.domain.roles import ALL_ROLES, Identity, Role
from gateway.http.approval_holds import HELD_DOC, held_for_approval
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import install_problems, problem_doc, problem_response
from gateway.http.schemas import BeijingTime
from gateway.persistence.catalogue_tables import DRAFT
from gateway.persistence.keyset import Keyset
from gateway.persistence.tables import MAX_ROW_ID
from gateway.security.approvals import Action

router = APIRouter(prefix="/v1", tags=["catalogue"], route_class=JsonBodyRoute)
# The catalogue by matter code, a matter's versions by number: both held in memory (hundreds, a few).
MATTERS, MATTER_VERSIONS = Keyset("matters", (str,)), Keyset("matter-versions", (int,))
Reader = Annotated[Identity, Depends(require(*ALL_ROLES))]
Admin = Annotated[Identity, Depends(require(Role.CATALOGUE_ADMIN))]
DepartmentQuery = Annotated[str | None, Query(description="lead or co-department: part of its name, or credit code")]
# Bounded so that an absurd number is a 422, not an integer the database cannot hold (a 500).
VersionNo = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="the guide's version number")]


# --- response models: the guide as the OpenAPI document describes it --------------------------------


class DepartmentOut(BaseModel):
    name: str
    credit_code: str = Field(description="统一社会信用代码 (GB 32100)")
    sector: str | None = Field(description="the sector system taking this department's task; null: back office")
    nature: BodyNature = Field(description="实施主体性质: 1 statutory, 2 authorised, 3 entrusted, 9 other")


class RequiredMaterialOut(BaseModel):
    name: str
    mandatory: bool
    originals: int
    copies: int
    issuer: str
    notes: str


class TimeLimitOut(BaseModel):
    value: int = Field(description="0 means on the spot (即办)")
    unit: TimeUnit
    note: str


class FeeOut(BaseModel):
    charged: bool
    basis: str
    standard: str


class FaqOut(BaseModel):
    question: str
    answer: str


class MatterSummary(BaseModel):
    """One line of the catalogue listing."""

    implementation_code: str = Field(description="实施编码 (31)")
    basic_code: str = Field(description="基本编码 (12)")
    name: str
    type: MatterType = Field(description="事项类型 (GB/T 39046)")
    level: Level = Field(description="行使层级: 1 national … 6 village")
    version: int
    implementing_body: DepartmentOut
    co_departments: list[DepartmentOut] = Field(description="共同实施部门: a parallel matter when not empty")
    promised_limit: TimeLimitOut
    service_objects: list[ServiceObject]
    handling_forms: list[HandlingForm]


class MatterGuide(MatterSummary):
    """A matter's complete guide (办事指南), one version: the one-time notification (一次性告知) of its materials."""

    handling_item_code: str
    local_code: str
    handling_office: str
    legal_basis: str
    acceptance_conditions: str
    procedure: list[str]
    quantity_limits: str
    statutory_limit: TimeLimitOut
    materials: list[RequiredMaterialOut]
    fee: FeeOut
    result_name: str
    result_sample: str
    booking: bool
    online_payment: bool
    express_delivery: bool
    fully_online: bool
    cross_region_scope: str
    place: str
    hours: str
    enquiry_phone: str
    complaint_phone: str
    faq: list[FaqOut]
    form_schema: dict[str, Any] = Field(description="JSON Schema (2020-12) of the matter's one application form")
    auto_accept: bool
    auto_issue_electronic: bool = Field(
        default=False, description="the gateway issues the electronic certificate its sector issued, once fetched")


class VersionOut(BaseModel):
    version: int
    status: str = Field(description="draft | published | retired")
    created_at: BeijingTime
    created_by: str
    published_at: BeijingTime | None
    published_by: str | None
    retired_at: BeijingTime | None
    retired_by: str | None


class ProblemsOut(BaseModel):
    problems: list[str] = Field(description="one sentence per problem, naming the field; empty when publishable")


class DraftOut(ProblemsOut):
    code: str
    version: int
    status: str


# The request body is parsed by `matter_from_document`; this documents it as the guide's shape.
_DRAFT_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/MatterGuide"}}}}}


def _catalogue(request: Request) -> Catalogue:
    return cast(Catalogue, request.app.state.catalogue)  # set by gateway.bootstrap.app


def _guide(matter: Matter | None, code: str) -> dict[str, Any]:
    if matter is None:
        raise MatterNotFound(f"没有编码为 {code} 的已发布事项")
    return matter_to_document(matter)


# --- reads: every role ---------------------------------------------------------------------------------


@router.get("/matters", response_model=Page[MatterSummary], responses=problem_doc(401, 403, 422),
            summary="检索事项目录")
def list_matters(
    request: Request,
    _: Reader,
    paging: Paged,
    department: DepartmentQuery = None,
    level: Level | None = None,
    matter_type: Annotated[MatterType | None, Query(alias="type")] = None,
    service_object: ServiceObject | None = None,
    q: Annotated[str | None, Query(description="text in the name, the codes or the materials")] = None,
) -> Any:
    """已发布的事项目录，可按实施部门、层级、事项类型、服务对象和关键词（名称、编码、材料）筛选。
    只读，可重复调用。返回事项摘要列表。"""
    found = _catalogue(request).search(department=department, level=level, type=matter_type,
                                       service_object=service_object, text=q)
    page = MATTERS.seek(found, lambda m: (m.implementation_code,), paging.after(MATTERS), paging.limit)
    return answer(MATTERS, page, matter_to_document, len(found))


@router.get("/matters/{code}", response_model=MatterGuide, responses=problem_doc(401, 403, 404),
            summary="查看事项办事指南")
def get_matter(code: str, request: Request, _: Reader) -> Any:
    """一个事项已发布的办事指南：申请材料（一次性告知）、实施主体、联办部门、申请表单结构、承诺时限等。
    提交办件前用它准备材料和表单。未发布或不存在为 404。只读，可重复调用。"""
    return _guide(_catalogue(request).published(code), code)


@router.get("/matters/{code}/versions", response_model=Page[VersionOut], responses=problem_doc(401, 403, 404, 422),
            summary="事项的各个版本")
def list_versions(code: str, request: Request, _: Reader, paging: Paged) -> Any:
    """一个事项办事指南的全部版本及其状态（草稿、已发布、已停用）。只读，可重复调用。"""
    versions = _catalogue(request).versions(code)
    if not versions:
        raise MatterNotFound(f"没有编码为 {code} 的事项")
    order = MATTER_VERSIONS.of(code)
    page = order.seek(versions, lambda v: (v["version"],), paging.after(order), paging.limit)
    return answer(order, page, dict, len(versions))


@router.get("/matters/{code}/versions/{version}", response_model=MatterGuide,
            responses=problem_doc(401, 403, 404), summary="查看事项的某个版本")
def get_version(code: str, version: VersionNo, request: Request, _: Reader) -> Any:
    """办事指南的某一版本；办件始终按提交时的版本办理，用它查看当时的要求。只读，可重复调用。"""
    matter = _catalogue(request).version(code, version)
    if matter is None:
        raise MatterNotFound(f"事项 {code} 没有第 {version} 版")
    return matter_to_document(matter)


# --- administration: catalogue administrators only ------------------------------------------------


@router.post("/catalogue/drafts", status_code=201, response_model=DraftOut, openapi_extra=_DRAFT_BODY,
             responses=problem_doc(401, 403, 422), summary="保存事项草稿")
def create_draft(document: Annotated[dict[str, Any], Body()], request: Request, response: Response,
                 identity: Admin) -> Any:
    """把一份事项文档（办事指南）存为该事项的下一个版本，状态为草稿，并返回发布前须解决的问题。
    不是幂等操作：每次调用都新增一个版本。文档不符合目录规范为 422 `invalid-matter`。
    返回 201，`Location` 指向新版本。"""
    matter = matter_from_document(document, "request body")
    stored = _catalogue(request).draft(matter, identity.id)
    code = stored.implementation_code
    response.headers["Location"] = f"/v1/matters/{code}/versions/{stored.version}"
    return {"code": code, "version": stored.version, "status": DRAFT,
            "problems": _catalogue(request).validate(code, stored.version)}


@router.post("/catalogue/matters/{code}/versions/{version}/validate", response_model=ProblemsOut,
             responses=problem_doc(401, 403, 404), summary="校验事项版本")
def validate_version(code: str, version: VersionNo, request: Request, _: Admin) -> Any:
    """列出会阻止该版本发布的问题（空列表表示可以发布）。不改变任何数据，可重复调用。"""
    return {"problems": _catalogue(request).validate(code, version)}


@router.post("/catalogue/matters/{code}/versions/{version}/publish", response_model=MatterGuide,
             responses={**problem_doc(401, 403, 404, 409, 422), **HELD_DOC},
             summary="发布事项版本")
def publish_version(code: str, version: VersionNo, request: Request, identity: Admin) -> Any:
    """发布一个草稿版本，原已发布的版本随之停用；新办件按新版本办理。
    开启四眼原则（YIWANG_FOUR_EYES）时返回 202 和一条待审批记录，由另一位管理员批准后才发布。
    版本状态不允许发布为 409 `version-conflict`；重复发布同一版本同样为 409。"""
    _catalogue(request).check_publishable(code, version)  # a request for the impossible is refused now
    held = held_for_approval(request, identity, Action.PUBLISH_MATTER, {"code": code, "version": version},
                             f"{code} v{version}")
    return held or matter_to_document(_catalogue(request).publish(code, version, identity.id))


# --- errors ----------------------------------------------------------------------------------------


def install_catalogue_error_handlers(app: FastAPI) -> None:
    install_problems(app, [(MatterNotFound, 404, "unknown-matter", "事项不存在或未发布"),
                           (VersionConflict, 409, "version-conflict", "事项版本的状态不允许此操作")])
    app.add_exception_handler(CatalogueError, _invalid_matter)  # InvalidMatter too: the most specific wins


async def _invalid_matter(request: Request, exc: Exception) -> JSONResponse:
    problems = exc.problems if isinstance(exc, InvalidMatter) else [str(exc)]
    detail = exc.summary if isinstance(exc, InvalidMatter) else "无法读取事项文档"
    return problem_response(422, "invalid-matter", "事项不符合目录规范", detail, request.url.path,
                            errors=[{"msg": p} for p in problems])
