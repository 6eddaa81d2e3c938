"""The unified endpoints the online hall calls. Routes translate HTTP to service calls and back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.domain.case import Applicant, SubmittedMaterial
from gateway.problems import problem_doc, problem_response
from gateway.services import (
    CaseNotFound,
    CaseService,
    IdempotencyConflict,
    InvalidApplication,
    SubmitCase,
    UnknownMatter,
)
from gateway.views import case_view, event_view

router = APIRouter(prefix="/v1")
Channel = Literal["online_pc", "mobile", "city_window", "county_window", "township_counter", "village_agency"]


class ApplicantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    id_type: str = Field(default="111", pattern=r"^\d{3}$", description="GA/T 2000.156 code; 111 resident ID card")
    id_number: str = Field(min_length=1, max_length=40)
    phone: str | None = Field(default=None, pattern=r"^\+?\d{5,20}$")


class MaterialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    file_ref: str | None = Field(default=None, max_length=200)


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matter_code: str = Field(pattern=r"^[0-9A-Z]{31}$", description="实施编码 of a published matter")
    applicant: ApplicantIn
    materials: list[MaterialIn] = Field(default_factory=list, max_length=50)
    form: dict[str, Any] = Field(default_factory=dict)
    channel: Channel = "online_pc"

    def to_command(self) -> SubmitCase:
        return SubmitCase(
            matter_code=self.matter_code,
            applicant=Applicant(**self.applicant.model_dump()),
            materials=tuple(SubmittedMaterial(**m.model_dump()) for m in self.materials),
            form=self.form,
            channel=self.channel,
        )


class ApplicantOut(BaseModel):
    name: str
    id_type: str
    id_number: str = Field(description="masked")
    phone: str | None = Field(description="masked")


class CaseOut(BaseModel):
    case_no: str
    matter_code: str
    state: str
    state_label: str
    applicant: ApplicantOut
    materials: list[str]
    receipt_no: str | None
    promised_by: str | None
    missing_materials: list[str]
    sector_ref: str | None
    opinion: str | None
    version: int


class EventOut(BaseModel):
    seq: int
    at: str
    trigger: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    data: dict[str, Any]


class MaterialOut(BaseModel):
    name: str
    mandatory: bool


class MatterOut(BaseModel):
    implementation_code: str
    name: str
    type: str
    department: str
    promised_working_days: int
    materials: list[MaterialOut]


def _service(request: Request) -> CaseService:
    return request.app.state.case_service  # type: ignore[no-any-return]


@router.post("/cases", status_code=201, response_model=CaseOut,
             responses=problem_doc(400, 404, 413, 422), summary="Submit an application (申请)")
def submit_case(
    body: CaseIn,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    outcome = _service(request).submit(body.to_command(), idempotency_key)
    response.headers["Location"] = f"/v1/cases/{outcome.case['case_no']}"
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return outcome.case


@router.get("/cases/{case_no}", response_model=CaseOut, responses=problem_doc(404))
def get_case(case_no: str, request: Request) -> Any:
    return case_view(_service(request).get(case_no))


@router.get("/cases/{case_no}/events", response_model=list[EventOut], responses=problem_doc(404))
def get_case_events(case_no: str, request: Request) -> Any:
    return [event_view(e) for e in _service(request).events(case_no)]


@router.get("/matters", response_model=list[MatterOut])
def list_matters(request: Request) -> Any:
    return [_matter_out(m) for m in _service(request).catalogue]


@router.get("/matters/{code}", response_model=MatterOut, responses=problem_doc(404),
            summary="One matter's guide: the one-time notification (一次性告知) of its materials")
def get_matter(code: str, request: Request) -> Any:
    matter = _service(request).catalogue.get(code)
    if matter is None:
        raise UnknownMatter(code)
    return _matter_out(matter)


def _matter_out(m: Any) -> dict[str, Any]:
    return {
        "implementation_code": m.implementation_code,
        "name": m.name,
        "type": str(m.type),
        "department": m.department,
        "promised_working_days": m.promised_working_days,
        "materials": [{"name": x.name, "mandatory": x.mandatory} for x in m.materials],
    }


def install_error_handlers(app: FastAPI) -> None:
    """Every failure leaves as problem+json; nothing the caller sent is echoed back (it may be personal)."""

    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(400, "invalid-json", "请求体不是合法的 JSON", instance=request.url.path)
        return problem_response(422, "invalid-request", "请求内容不符合要求", instance=request.url.path,
                                errors=errors)

    def handler(status: int, slug: str, title: str) -> Any:
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            return problem_response(status, slug, title, str(exc) or None, request.url.path)

        return handle

    app.add_exception_handler(RequestValidationError, validation)  # type: ignore[arg-type]
    app.add_exception_handler(UnknownMatter, handler(404, "unknown-matter", "事项不存在或未发布"))
    app.add_exception_handler(CaseNotFound, handler(404, "case-not-found", "办件不存在"))
    app.add_exception_handler(InvalidApplication, handler(422, "invalid-application", "申请不符合事项要求"))
    app.add_exception_handler(
        IdempotencyConflict, handler(422, "idempotency-key-reused", "同一 Idempotency-Key 已用于不同的请求")
    )


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413 before any of them is parsed (chunked ones too)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, "payload-too-large", "请求体过大", f"上限 {self.max_bytes} 字节",
                                    scope.get("path"))
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
