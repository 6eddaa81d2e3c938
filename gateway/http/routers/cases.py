"""The unified case endpoints. Routes translate HTTP to service calls and back; each declares its roles."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal, cast

import structlog
from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator
from starlette.responses import Response

from gateway.cases.service import (
    CaseService,
    Correction,
    NotYourCase,
    SubmitCase,
)
from gateway.cases.views import case_view, document, event_view, personal_data_view
from gateway.domain.case import (
    Actor,
    ActorKind,
    Agent,
    Applicant,
    Case,
    CaseEvent,
    CaseRuleViolation,
    Certificate,
    Delivery,
    Evaluation,
    SubmittedMaterial,
    TaskState,
)
from gateway.domain.roles import Identity, NotAllowed, Role
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import problem_doc
from gateway.http.schemas import EventOut
from gateway.http.text_fields import typed
from gateway.observability.correlation import bind_case_no
from gateway.persistence.keyset import Key, Keyset
from gateway.persistence.repository import APPLICANT_CASES

log = structlog.get_logger("yiwang.api")


async def _name_the_case(request: Request) -> None:
    """Every log line of a request about one case names it, the request's own line too (an async
    dependency runs in the request's task, so what it binds is still bound when the middleware logs)."""
    if case_no := request.path_params.get("case_no"):
        bind_case_no(case_no)


router = APIRouter(prefix="/v1", tags=["cases"], dependencies=[Depends(_name_the_case)], route_class=JsonBodyRoute)
Channel = Literal["online_pc", "mobile", "city_window", "county_window", "township_counter", "village_agency"]
ONLINE_CHANNELS = frozenset({"online_pc", "mobile"})
READERS = (Role.HALL_CLIENT, Role.WINDOW, Role.CLERK, Role.ISSUING_WINDOW, Role.OPERATOR)
# Who must see ID and phone numbers whole: the window checking the applicant in person, the department's
# clerk deciding, the issuing window delivering. The hall and operators see them masked.
UNMASKED_READERS = (Role.WINDOW, Role.CLERK, Role.ISSUING_WINDOW)
ERRORS = problem_doc(401, 403, 404, 409, 422)
TIMELINE = Keyset("case-events", (int,))  # a case's events, oldest first; held in memory with the case


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Texts a person typed are kept as `gateway.domain.text` says (NFC, trimmed, nothing undeliverable): `typed`.
class ApplicantIn(Strict):
    name: Annotated[str, typed("申请人姓名")] = Field(min_length=1, max_length=64)
    id_type: str = Field(default="111", pattern=r"^\d{3}$", description="GA/T 2000.156 code; 111 resident ID card")
    id_number: Annotated[str, typed("申请人证件号码")] = Field(min_length=1, max_length=40)
    phone: Annotated[str | None, typed("联系电话", blank=None)] = Field(default=None, pattern=r"^\+?\d{5,20}$")
    address: Annotated[str | None, typed("住址", blank=None)] = Field(default=None, max_length=200)
    legal_representative: Annotated[str | None, typed("法定代表人", blank=None)] = Field(default=None, max_length=64)


# Each applicant field's validator as ApplicantIn declares it, built once (a correction checks fields one by one).
# The Annotated type is built at run time from the field's own annotation, which mypy cannot follow: the ignore.
APPLICANT_FIELDS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]
    for name, info in ApplicantIn.model_fields.items()}


class AgentIn(Strict):
    name: Annotated[str, typed("代办员姓名")] = Field(min_length=1, max_length=64)
    id_number: Annotated[str, typed("代办员身份证号码")] = Field(min_length=18, max_length=18)
    agency_point: Annotated[str, typed("代办点", blank="")] = Field(default="", max_length=100)


class LicenceCitationIn(Strict):
    number: Annotated[str, typed("证照编号")] = Field(
        min_length=1, max_length=64, pattern=r"^[0-9A-Za-z._-]+$",
        description="the licence's number in the electronic licence library")


class MaterialIn(Strict):
    """A material: an upload (`file_ref`), or a licence cited from the electronic licence library (`licence`),
    confirmed there at once (valid, held by the applicant) and kept with its provenance (docs/hall.md)."""

    name: Annotated[str, typed("材料名称")] = Field(min_length=1, max_length=100)
    file_ref: str | None = Field(default=None, max_length=40, description="a reference from POST /v1/materials")
    licence: LicenceCitationIn | None = Field(
        default=None, description="cite a licence from the electronic licence library instead of uploading")

    @model_validator(mode="after")
    def _one_source(self) -> MaterialIn:
        if self.file_ref is not None and self.licence is not None:
            raise ValueError("一份材料要么上传文件（file_ref），要么引用证照（licence），不能两者都有")
        return self

    def to_domain(self) -> SubmittedMaterial:
        return SubmittedMaterial(self.name, self.file_ref, None if self.licence is None else self.licence.number)


class CaseIn(Strict):
    matter_code: str = Field(pattern=r"^[0-9A-Z]{31}$", description="实施编码 of a published matter")
    applicant: ApplicantIn
    materials: list[MaterialIn] = Field(default_factory=list, max_length=50)
    form: dict[str, Any] = Field(default_factory=dict, description="the matter's one form (its JSON Schema)")
    channel: Channel = "online_pc"
    region_code: str = Field(default="150200", pattern=r"^\d{6}$", description="行政区划代码")
    agent: AgentIn | None = Field(default=None, description="代办员 acting for the applicant")
    green_channel: list[Literal["disabled", "pregnant", "high_level_talent"]] = Field(
        default_factory=list, description="grounds claimed; age 60+ is read from the ID number")

    def to_command(self) -> SubmitCase:
        return SubmitCase(
            matter_code=self.matter_code,
            applicant=Applicant(**self.applicant.model_dump()),
            materials=tuple(m.to_domain() for m in self.materials),
            form=self.form,
            channel=self.channel,
            region_code=self.region_code,
            agent=Agent(**self.agent.model_dump()) if self.agent else None,
            green_channel_claims=tuple(self.green_channel),
        )


class CorrectionIn(Strict):
    """更正: what to correct, by name. Only the fields given change; each is checked as at submission."""

    reason: Annotated[str, typed("更正原因", multiline=True)] = Field(
        min_length=1, max_length=500, description="why (更正原因); shown in the case's events")
    applicant: dict[str, str | None] = Field(
        default_factory=dict, max_length=6,
        description="applicant fields to correct: name, id_type, id_number, phone, address, legal_representative "
                    "(null clears an optional one)")
    form: dict[str, Any] = Field(default_factory=dict, max_length=50,
                                 description="form fields to correct (null removes one); the form is checked again")
    materials: list[MaterialIn] | None = Field(default=None, max_length=50,
                                               description="the whole list of materials, when it changes")

    @field_validator("applicant")
    @classmethod
    def _applicant_fields(cls, given: dict[str, str | None]) -> dict[str, str | None]:
        """Each value as ApplicantIn declares that field (one definition of what an applicant field may hold:
        null only where its type admits it)."""
        unknown = sorted(set(given) - set(APPLICANT_FIELDS))
        if unknown:
            raise ValueError(f"不能更正申请人字段：{', '.join(unknown)}；可更正 {', '.join(APPLICANT_FIELDS)}")
        return {name: APPLICANT_FIELDS[name].validate_python(value) for name, value in given.items()}

    def to_correction(self) -> Correction:
        named = {**{f"applicant.{k}": v for k, v in self.applicant.items()},
                 **{f"form.{k}": v for k, v in self.form.items()}}
        materials = None if self.materials is None else tuple(m.to_domain() for m in self.materials)
        return Correction(self.reason, named, materials)


class LookupIn(Strict):
    id_number: Annotated[str, typed("证件号码")] = Field(min_length=1, max_length=40)


class SupplementIn(Strict):
    materials: list[MaterialIn] = Field(min_length=1, max_length=50)


Reason = Annotated[str, typed("理由", multiline=True, blank="")]


class ReasonIn(Strict):
    reason: Reason = Field(default="", max_length=500)


class SupplementRequestIn(Strict):
    missing: list[Annotated[str, typed("补正材料名称")]] = Field(min_length=1, max_length=50)
    reason: Reason = Field(default="", max_length=500)


class DecisionIn(Strict):
    decision: Literal["approved", "denied", "returned"]
    opinion: Annotated[str, typed("办理意见", multiline=True, blank="")] = Field(
        default="", max_length=1000, description="required to deny or return (退件)")


class SuspendIn(Strict):
    procedure: Literal["hearing", "expert_review", "extension", "inspection", "other"]
    reason: Annotated[str, typed("特别程序理由", multiline=True)] = Field(min_length=1, max_length=500)


class CertificateIn(Strict):
    name: Annotated[str, typed("证照名称")] = Field(min_length=1, max_length=100)
    number: Annotated[str, typed("证照编号")] = Field(min_length=1, max_length=64)
    issuer: Annotated[str, typed("发证机关")] = Field(min_length=1, max_length=100)
    valid_until: date | None = None


class DeliveryIn(Strict):
    method: Literal["pickup", "express"]
    tracking_no: Annotated[str | None, typed("快递单号", blank=None)] = Field(default=None, max_length=40)
    received_by: Annotated[str | None, typed("签收人", blank=None)] = Field(default=None, max_length=64)


class EvaluationIn(Strict):
    level: Literal["very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied"]
    channel: Literal["pc", "mobile", "qr_code", "hall_tablet", "hall_terminal", "phone", "sms"]
    text: Annotated[str, typed("评价内容", multiline=True, blank="")] = Field(default="", max_length=500)


class CaseOut(BaseModel):
    """A case as it stands (ID and phone numbers masked)."""

    case_no: str
    matter_code: str
    matter_version: int
    state: str
    state_label: str
    channel: str
    region_code: str
    applicant: dict[str, Any]
    agent: dict[str, Any] | None
    green_channel: list[str]
    materials: list[dict[str, Any]]
    receipt_no: str | None
    deadline: dict[str, Any] | None
    promised_by: str | None
    missing_materials: list[str]
    supplement_rounds: int
    tasks: list[dict[str, Any]]
    opinion: str | None
    certificate: dict[str, Any] | None
    certificate_draft: dict[str, Any] | None = Field(
        description="待出证: the certificate its sector issued, fetched and prefilled for unified issuing, with its "
                    "source (sector, task_id, fetched_at)")
    delivery: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    completion: str | None
    version: int


class PersonalDataOut(BaseModel):
    """The applicant's and agent's personal data, unmasked."""

    case_no: str
    applicant: dict[str, Any]
    agent: dict[str, Any] | None


IfMatch = Annotated[str | None, Header(description='the version you saw, e.g. "3": a stale one gets 409')]


def _service(request: Request) -> CaseService:
    return cast(CaseService, request.app.state.case_service)  # set by gateway.bootstrap.app


def _version(if_match: str | None) -> int | None:
    if not if_match:
        return None
    text = if_match.removeprefix("W/").strip('" ')
    if not text.isdigit():
        raise CaseRuleViolation('If-Match 应为办件的版本号，如 "3"')
    return int(text)


def _person(identity: Identity, agent: bool = False) -> Actor:
    return Actor(ActorKind.AGENT if agent else ActorKind.APPLICANT, identity.id)


def _answer(response: Response, case: Case) -> dict[str, Any]:
    response.headers["ETag"] = f'"{case.version}"'
    return case_view(case)


def _readable(identity: Identity, case: Case) -> Case:
    """A clerk sees only cases that have a task of their department."""
    if identity.roles == {Role.CLERK} and all(t.credit_code != identity.department for t in case.tasks):
        raise NotYourCase(f"办件 {case.case_no} 不涉及本部门")
    return case


@router.post("/cases", status_code=201, response_model=CaseOut, responses=problem_doc(400, 401, 403, 404, 413, 422),
             summary="提交办件")
def submit_case(
    body: CaseIn,
    request: Request,
    response: Response,
    identity: Annotated[Identity, Depends(require(Role.HALL_CLIENT, Role.WINDOW))],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """为一个已发布的事项提交申请，建立办件并按事项分派给各部门系统。
    网上大厅用线上渠道提交，窗口用窗口渠道提交；即办事项当场受理，其余等待窗口受理。

    幂等：带 `Idempotency-Key` 头重试（网络中断、超时后）返回同一办件，响应头 `Idempotent-Replayed: true`；
    同一键用于不同内容返回 422 `idempotency-key-reused`。
    返回 201 和办件（`Location` 指向它，`ETag` 为版本号）；事项不存在或未发布为 404，申请不符合事项要求为 422。"""
    if (body.channel in ONLINE_CHANNELS) != identity.has(Role.HALL_CLIENT):
        raise NotAllowed("网上大厅只能经网上渠道（online_pc、mobile）提交，窗口只能经窗口渠道提交")
    outcome = _service(request).submit(body.to_command(), _person(identity, body.agent is not None), idempotency_key)
    bind_case_no(outcome.case["case_no"])
    log.info("case submitted", matter_code=body.matter_code, channel=body.channel, replayed=outcome.replayed)
    response.headers["Location"] = f"/v1/cases/{outcome.case['case_no']}"
    response.headers["ETag"] = f'"{outcome.case["version"]}"'
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return outcome.case


@router.post("/cases/lookup", response_model=Page[CaseOut], responses=problem_doc(401, 403, 422),
             summary="查询申请人的办件（我的办件）")
def lookup_cases(body: LookupIn, request: Request, paging: Paged,
                 _: Annotated[Identity, Depends(require(Role.HALL_CLIENT, Role.WINDOW))]) -> Any:
    """按申请人证件号码查出其办件（我的办件），最新的在前，分页。证件号码放在请求体中，不进入 URL 和日志。
    只读，可重复调用。返回办件列表（证件号码、电话已脱敏）。"""
    service = _service(request)
    found = service.for_applicant(body.id_number, paging.after(APPLICANT_CASES), paging.limit + 1)
    page = APPLICANT_CASES.cut(found, paging.limit, lambda keyed: keyed[0])
    return answer(APPLICANT_CASES, page, lambda keyed: case_view(keyed[1]), service.count_for_applicant(body.id_number))


@router.get("/cases/{case_no}", summary="查看办件", response_model=CaseOut, responses=problem_doc(401, 403, 404))
def get_case(case_no: str, request: Request, response: Response,
             identity: Annotated[Identity, Depends(require(*READERS))]) -> Any:
    """一个办件的当前情况：状态、期限、材料、各部门任务、结果与送达。证件号码、电话已脱敏。
    部门经办人只能看到涉及本部门的办件（否则 403 `not-your-case`）。
    只读。响应头 `ETag` 为办件版本号，办理动作可用 `If-Match` 带回以防覆盖他人修改。"""
    return _answer(response, _readable(identity, _service(request).get(case_no)))


@router.get("/cases/{case_no}/events", summary="办件时间线", response_model=Page[EventOut],
            responses=problem_doc(401, 403, 404, 422))
def get_case_events(case_no: str, request: Request, paging: Paged,
                    identity: Annotated[Identity, Depends(require(*READERS))]) -> Any:
    """办件的全部事件（时间、操作人、原因），按发生先后排列，分页：办件的每次变化都在这里。
    只读；部门经办人只能看到涉及本部门的办件。"""
    events, timeline = _readable(identity, _service(request).get(case_no)).events, TIMELINE.of(case_no)
    page = timeline.seek(events, _event_key, paging.after(timeline), paging.limit)
    return answer(timeline, page, event_view, len(events))


def _event_key(event: CaseEvent) -> Key:
    return (event.seq,)


@router.get("/cases/{case_no}/personal-data", response_model=PersonalDataOut, responses=problem_doc(401, 403, 404),
            summary="查看未脱敏的个人信息")
def get_personal_data(case_no: str, request: Request,
                      identity: Annotated[Identity, Depends(require(*UNMASKED_READERS))]) -> Any:
    """申请人和代理人的证件号码、电话原文，供当面核验、办理决定和送达的人使用。
    每次读取先记入审计日志，审计日志无法记录时不返回任何内容。只读。"""
    case = _readable(identity, _service(request).get(case_no))
    # Audited before it is answered: when the audit log cannot take the record, nothing is shown.
    request.app.state.ledger.audit(f"identity:{identity.id}", "read unmasked personal data", f"case:{case_no}",
                                   {"name": identity.name, "fields": ["applicant", "agent"]}, outcome="shown",
                                   case_no=case_no)
    return personal_data_view(case)


@router.get("/cases/{case_no}/documents/{kind}", responses=problem_doc(401, 403, 404),
            summary="获取办件文书")
def get_case_document(case_no: str, kind: str, request: Request,
                      _: Annotated[Identity, Depends(require(Role.HALL_CLIENT, Role.WINDOW,
                                                             Role.ISSUING_WINDOW))]) -> dict[str, Any]:
    """办件的文书，结构化 JSON：`kind` 为受理凭证、补齐补正告知书、不予受理通知书或送达回证。
    办件尚无该文书时返回 404 `document-not-available`。只读。"""
    service = _service(request)
    case = service.get(case_no)
    return document(case, service.matter_of(case), kind)


REPEATED = "不是幂等操作：同一动作重复调用时办件状态已变，返回 409 `transition-not-allowed`。"
# What every case action's description ends with: they all take If-Match and answer the case.
ACTION_TERMS = ('带 `If-Match`（办件版本，如 "3"）时，办件已被他人改动则返回 409 `stale-version`。\n'
                "返回办理后的办件（`ETag` 为新版本号）。")


def _action(path: str, summary: str, *roles: Role,
            repeated: str = REPEATED) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a case action: POST, answers the case, admits `roles`. Its description is the endpoint's
    docstring, then what a repeated call does (`repeated`), then the terms every action shares."""
    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        description = "\n".join((inspect.cleandoc(endpoint.__doc__ or ""), repeated, ACTION_TERMS))
        return router.post(f"/cases/{{case_no}}/{path}", response_model=CaseOut, responses=ERRORS,
                           summary=summary, description=description,
                           dependencies=[Depends(require(*roles))])(endpoint)
    return register


def _who(request: Request) -> Identity:
    return request.state.identity  # type: ignore[no-any-return]  # set by require()


@_action("supplement", "补齐补正材料", Role.HALL_CLIENT, Role.WINDOW)
def supplement(case_no: str, body: SupplementIn, request: Request, response: Response,
               if_match: IfMatch = None) -> Any:
    """申请人按一次性告知提交所缺材料（补齐补正），办件回到受理流程。"""
    materials = tuple(m.to_domain() for m in body.materials)
    case = _service(request).supplement(case_no, materials, _person(_who(request)), _version(if_match))
    return _answer(response, case)


@_action("withdraw", "撤回申请", Role.HALL_CLIENT, Role.WINDOW)
def withdraw(case_no: str, body: ReasonIn, request: Request, response: Response, if_match: IfMatch = None) -> Any:
    """申请人撤回申请，需写明原因；已办结的办件不能撤回。"""
    case = _service(request).withdraw(case_no, _person(_who(request)), body.reason, _version(if_match))
    return _answer(response, case)


@_action("accept", "受理", Role.WINDOW)
def accept(case_no: str, request: Request, response: Response, if_match: IfMatch = None) -> Any:
    """窗口受理需要人工审查的事项的申请；受理后开始计算承诺期限，并分派给各部门。"""
    actor = Actor(ActorKind.WINDOW, _who(request).id)
    return _answer(response, _service(request).accept(case_no, actor, _version(if_match)))


@_action("not-accept", "不予受理", Role.WINDOW)
def not_accept(case_no: str, body: ReasonIn, request: Request, response: Response, if_match: IfMatch = None) -> Any:
    """窗口决定不予受理，写明理由；办件结束，并生成不予受理通知书。"""
    actor = Actor(ActorKind.WINDOW, _who(request).id)
    return _answer(response, _service(request).not_accept(case_no, actor, body.reason, _version(if_match)))


@_action("supplement-request", "一次性告知补正", Role.WINDOW)
def request_supplement(case_no: str, body: SupplementRequestIn, request: Request, response: Response,
                       if_match: IfMatch = None) -> Any:
    """窗口一次性告知申请人需补齐补正的全部材料，期限暂停，直到材料补齐。"""
    actor = Actor(ActorKind.WINDOW, _who(request).id)
    case = _service(request).request_supplement(case_no, body.missing, actor, body.reason, _version(if_match))
    return _answer(response, case)


@_action("correction", "更正办件", Role.WINDOW, repeated="不是幂等操作：每次更正都是新的一轮。")
def correct(case_no: str, body: CorrectionIn, request: Request, response: Response, if_match: IfMatch = None) -> Any:
    """窗口更正已受理办件的指定字段；各部门系统会收到更正后的办件（新一轮，幂等键各自独立）。"""
    actor = Actor(ActorKind.WINDOW, _who(request).id)
    return _answer(response, _service(request).correct(case_no, body.to_correction(), actor, _version(if_match)))


@_action("tasks/{task_id}/decision", "部门办理决定", Role.CLERK)
def decide_task(case_no: str, task_id: str, body: DecisionIn, request: Request, response: Response,
                if_match: IfMatch = None) -> Any:
    """部门后台经办人对本部门的任务作出办理决定（通过或不通过）并写明意见；只能决定本部门的任务。
    所有任务办结后办件办结。"""
    clerk = _who(request)
    case = _service(request).decide_task(case_no, task_id, TaskState(body.decision), body.opinion,
                                         Actor(ActorKind.DEPARTMENT, clerk.id), clerk.department, _version(if_match))
    return _answer(response, case)


@_action("suspend", "启动特别程序", Role.CLERK)
def suspend(case_no: str, body: SuspendIn, request: Request, response: Response, if_match: IfMatch = None) -> Any:
    """部门经办人启动特别程序（如鉴定、公告），期限停止计算，直到结束特别程序。"""
    clerk = _who(request)
    case = _service(request).suspend(case_no, body.procedure, body.reason, Actor(ActorKind.DEPARTMENT, clerk.id),
                                     clerk.department, _version(if_match))
    return _answer(response, case)


@_action("resume", "结束特别程序", Role.CLERK)
def resume(case_no: str, body: ReasonIn, request: Request, response: Response, if_match: IfMatch = None) -> Any:
    """部门经办人结束特别程序，期限恢复计算。"""
    clerk = _who(request)
    case = _service(request).resume(case_no, body.reason, Actor(ActorKind.DEPARTMENT, clerk.id), clerk.department,
                                    _version(if_match))
    return _answer(response, case)


@_action("certificate", "统一出证", Role.ISSUING_WINDOW)
def issue_certificate(case_no: str, request: Request, response: Response, body: CertificateIn | None = None,
                      if_match: IfMatch = None) -> Any:
    """统一出证窗口登记办件的结果证照（名称、编号、发证机关、有效期）。部门业务系统已签发并已获取的证照（待出证，
    见 `certificate_draft`）可不填请求体直接出证；填写时证照编号须与部门签发的一致。"""
    certificate = None if body is None else Certificate(body.name, body.number, body.issuer, body.valid_until)
    actor = Actor(ActorKind.ISSUING_WINDOW, _who(request).id)
    return _answer(response, _service(request).issue_certificate(case_no, certificate, actor, _version(if_match)))


@_action("delivery", "统一送达", Role.ISSUING_WINDOW)
def deliver(case_no: str, body: DeliveryIn, request: Request, response: Response, if_match: IfMatch = None) -> Any:
    """统一送达窗口登记结果的送达：现场领取或邮寄（运单号），并生成送达回证。"""
    delivery = Delivery(body.method, body.tracking_no, body.received_by)
    actor = Actor(ActorKind.ISSUING_WINDOW, _who(request).id)
    return _answer(response, _service(request).deliver(case_no, delivery, actor, _version(if_match)))


@_action("evaluation", "好差评", Role.HALL_CLIENT, Role.WINDOW)
def evaluate(case_no: str, body: EvaluationIn, request: Request, response: Response,
             if_match: IfMatch = None) -> Any:
    """申请人对办事服务作出评价（好差评），每个办件评价一次。"""
    evaluation = Evaluation(body.level, body.channel, body.text)
    return _answer(response, _service(request).evaluate(case_no, evaluation, _person(_who(request)),
                                                        _version(if_match)))
