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
from gateway.http.approval_holds import held_for_approval
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.problems import install_problems, problem_doc, problem_response
from gateway.http.schemas import BeijingTime
from gateway.persistence.catalogue_tables import DRAFT
from gateway.persistence.tables import MAX_ROW_ID
from gateway.security.approvals import Action

router = APIRouter(prefix="/v1", tags=["catalogue"], route_class=JsonBodyRoute)
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


@router.get("/matters", response_model=list[MatterSummary], responses=problem_doc(401, 403, 422),
            summary="The published catalogue, filtered")
def list_matters(
    request: Request,
    _: Reader,
    department: DepartmentQuery = None,
    level: Level | None = None,
    matter_type: Annotated[MatterType | None, Query(alias="type")] = None,
    service_object: ServiceObject | None = None,
    q: Annotated[str | None, Query(description="text in the name, the codes or the materials")] = None,
) -> Any:
    found = _catalogue(request).search(department=department, level=level, type=matter_type,
                                       service_object=service_object, text=q)
    return [matter_to_document(m) for m in found]


@router.get("/matters/{code}", response_model=MatterGuide, responses=problem_doc(401, 403, 404),
            summary="One matter's published guide: the one-time notification (一次性告知) of its materials")
def get_matter(code: str, request: Request, _: Reader) -> Any:
    return _guide(_catalogue(request).published(code), code)


@router.get("/matters/{code}/versions", response_model=list[VersionOut], responses=problem_doc(401, 403, 404),
            summary="Every version of a matter's guide, with its status")
def list_versions(code: str, request: Request, _: Reader) -> Any:
    versions = _catalogue(request).versions(code)
    if not versions:
        raise MatterNotFound(f"没有编码为 {code} 的事项")
    return versions


@router.get("/matters/{code}/versions/{version}", response_model=MatterGuide,
            responses=problem_doc(401, 403, 404), summary="One version of a guide (a case keeps its version)")
def get_version(code: str, version: VersionNo, request: Request, _: Reader) -> Any:
    matter = _catalogue(request).version(code, version)
    if matter is None:
        raise MatterNotFound(f"事项 {code} 没有第 {version} 版")
    return matter_to_document(matter)


# --- administration: catalogue administrators only ------------------------------------------------


@router.post("/catalogue/drafts", status_code=201, response_model=DraftOut, openapi_extra=_DRAFT_BODY,
             responses=problem_doc(401, 403, 422), summary="Store a matter document as the next version, a draft")
def create_draft(document: Annotated[dict[str, Any], Body()], request: Request, response: Response,
                 identity: Admin) -> Any:
    matter = matter_from_document(document, "request body")
    stored = _catalogue(request).draft(matter, identity.id)
    code = stored.implementation_code
    response.headers["Location"] = f"/v1/matters/{code}/versions/{stored.version}"
    return {"code": code, "version": stored.version, "status": DRAFT,
            "problems": _catalogue(request).validate(code, stored.version)}


@router.post("/catalogue/matters/{code}/versions/{version}/validate", response_model=ProblemsOut,
             responses=problem_doc(401, 403, 404), summary="The problems that would stop publication")
def validate_version(code: str, version: VersionNo, request: Request, _: Admin) -> Any:
    return {"problems": _catalogue(request).validate(code, version)}


@router.post("/catalogue/matters/{code}/versions/{version}/publish", response_model=MatterGuide,
             responses=problem_doc(401, 403, 404, 409, 422),
             summary="Publish a draft; the previously published version retires. With four-eyes on, "
                     "202 and a pending approval instead")
def publish_version(code: str, version: VersionNo, request: Request, identity: Admin) -> Any:
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
