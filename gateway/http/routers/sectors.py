"""Endpoints of the sector side: bundle registration (sector administrators), adapter health,
synchronous queries for the hall, and the callbacks sectors make with their decisions."""

from __future__ import annotations

import math
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from adapters import DeliveryError, FailureClass, UnsendableRequest
from gateway.domain.answers import AnswerMismatch
from gateway.domain.clock import instants_as_beijing_text
from gateway.domain.roles import Identity, NotAllowed, Role, acts_for_sector
from gateway.http.approval_holds import HELD_DOC, activate_recorded, held_for_approval
from gateway.http.callers import require
from gateway.http.json_bodies import (
    DUPLICATE_KEY,
    UNSUPPORTED_MEDIA_TYPE,
    BodyRefused,
    JsonBodyRoute,
    accepts_only,
    media_type,
)
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import install_problems, problem_doc, problem_response
from gateway.http.text_fields import typed_json
from gateway.persistence.keyset import Keyset
from gateway.sectors.bundle_records import (
    BundleConflict,
    BundleInvalid,
    BundleStore,
    BundleVersion,
    UnknownBundle,
    VersionUntested,
)
from gateway.sectors.calls import (
    CallbackDuplicateKey,
    CallbackRejected,
    CallbackUnreadable,
    InvalidQueryParameters,
    NoSynchronousPath,
    PreviewFailed,
    SectorCalls,
)
from gateway.sectors.live_registry import LiveRegistry, NoActiveAdapter
from gateway.sectors.rehearsals import NoRehearsal
from gateway.security.approvals import Action

router = APIRouter(prefix="/v1", tags=["adapters"], route_class=JsonBodyRoute)
# A sector's bundle versions in the order registered; held in memory (tens per sector).
BUNDLE_VERSIONS = Keyset("bundle-versions", (int,))
callbacks = APIRouter(tags=["callbacks"])
ADMINS = (Role.SECTOR_ADMIN, Role.OPERATOR, Role.SYSTEM_ADMIN)
MAX_BUNDLE_BYTES = 20 * 1024 * 1024
ZIP = "application/zip"
ZIP_TYPES = frozenset({ZIP, "application/x-zip-compressed", "application/octet-stream"})  # what clients send


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: Annotated[dict[str, Any], typed_json("查询参数")] = Field(
        default_factory=dict, description="the query's parameters, e.g. id_number (texts kept as typed texts are)")


class ActivateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: bool = Field(default=False,
                        description="启用最近一次测试未通过（或从未测试）的版本；审计日志记录此次强制启用")


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: str = Field(description="submit_case, query_status, cancel_case, or a named query")
    case_no: str | None = Field(default=None, description="render for this case (submit/query/cancel)")
    params: dict[str, Any] = Field(default_factory=dict, description="a named query's parameters")


def _store(request: Request) -> BundleStore:
    return cast(BundleStore, request.app.state.bundles)  # set by gateway.bootstrap.app


def _calls(request: Request) -> SectorCalls:
    return cast(SectorCalls, request.app.state.sector_calls)  # set by gateway.bootstrap.app


def _own_sector(identity: Identity, sector: str) -> None:
    """A sector administrator acts on their own sector only; operators and system administrators on any."""
    if not acts_for_sector(identity, sector):
        raise NotAllowed(f"不是部门 {sector} 的管理员")


@router.post("/adapters/bundles", status_code=201, responses=problem_doc(401, 403, 409, 413, 415, 422),
             summary="注册适配包版本",
             openapi_extra={"requestBody": {"required": True, "content": {
                 ZIP: {"schema": {"type": "string", "format": "binary"}}}}})
async def register_bundle(request: Request,
                          identity: Annotated[Identity, Depends(require(*ADMINS))]) -> dict[str, Any]:
    """部门系统团队上传适配包（zip：描述文件、WSDL 或 OpenAPI、映射），网关校验后存为新版本，尚未启用。
    校验不通过为 422 `invalid-bundle`（逐项列出问题）；同一版本号已存在为 409；超过 20 MB 为 413。
    部门系统管理员只能注册本部门的。返回 201 和版本记录。"""
    declared = request.headers.get("content-type")
    if declared and media_type(declared) not in ZIP_TYPES:  # undeclared is bytes, as octet-stream says
        raise BodyRefused(415, *UNSUPPORTED_MEDIA_TYPE, accepts_only(ZIP))
    archive = await _read_limited(request, MAX_BUNDLE_BYTES)

    # Validation parses WSDLs: off the event loop.
    registered = await run_in_threadpool(_store(request).register, archive, f"identity:{identity.id}",
                                         may_act_for=lambda sector: acts_for_sector(identity, sector))
    return registered.public()


@router.get("/adapters", responses=problem_doc(401, 403), summary="适配器及健康状况")
def list_adapters(request: Request, identity: Annotated[Identity, Depends(require(*ADMINS))]) -> dict[str, Any]:
    """已启用的适配器、版本和健康状况（熔断器、近期成功与失败）。只读。"""
    registry: LiveRegistry = request.app.state.registry
    health = registry.health()
    return {s: instants_as_beijing_text(h) for s, h in health.items() if acts_for_sector(identity, s)}


@router.get("/adapters/{sector}/versions", summary="适配包的各个版本", response_model=Page[dict[str, Any]],
            responses=problem_doc(401, 403, 422))
def list_versions(sector: str, request: Request, paging: Paged,
                  identity: Annotated[Identity, Depends(require(*ADMINS))]) -> dict[str, Any]:
    """一个部门已注册的适配包版本及其状态。只读。"""
    _own_sector(identity, sector)
    versions, order = _store(request).versions(sector), BUNDLE_VERSIONS.of(sector)
    page = order.seek(versions, lambda v: (v.row_id,), paging.after(order), paging.limit)
    return answer(order, page, BundleVersion.public, len(versions))


@router.post("/adapters/{sector}/versions/{version}/test", responses=problem_doc(401, 403, 404),
             summary="测试适配包版本")
def test_version(sector: str, version: str, request: Request,
                 identity: Annotated[Identity, Depends(require(*ADMINS))]) -> dict[str, Any]:
    """用这个版本调用部门系统的测试端点，不启用它；返回测试结果。不改变启用状态，可重复调用。"""
    _own_sector(identity, sector)
    return _calls(request).test_version(sector, version).public()


@router.post("/adapters/{sector}/versions/{version}/rehearse", responses=problem_doc(401, 403, 404, 409, 422),
             summary="预演适配包版本")
def rehearse_version(sector: str, version: str, request: Request,
                     identity: Annotated[Identity, Depends(require(*ADMINS))]) -> dict[str, Any]:
    """把这个版本附带的预演文件中的样例办件和查询逐项发往部门系统的测试端点（幂等键以 `rehearsal:` 开头，不建办件，
    能撤销的样例办件最后撤销），比对部门团队预期的结果，记录并返回：`outcome`（passed | failed）、逐项的请求与应答
    （个人信息已遮蔽）和原因。通过的预演与通过的测试一样，可直接启用该版本。没有预演文件为 409 `no-rehearsal`。"""
    _own_sector(identity, sector)
    rehearsed = _calls(request).rehearse(sector, version)
    return {"sector": sector, "version": version,
            "rehearsal": instants_as_beijing_text(rehearsed.rehearsal_result)}


@router.post("/adapters/{sector}/versions/{version}/activate",
             responses={**problem_doc(401, 403, 404, 409, 422), **HELD_DOC},
             summary="启用适配包版本")
def activate_version(sector: str, version: str, request: Request,
                     identity: Annotated[Identity, Depends(require(*ADMINS))], body: ActivateIn | None = None) -> Any:
    """让这个版本成为所有网关进程使用的版本，无需重启（数秒内生效）；进行中的投递用原版本完成。
    开启四眼原则时返回 202 和待审批记录。状态不允许时为 409 `bundle-conflict`；最近一次测试未通过或从未测试时为
    409 `version-untested`，除非请求体为 `{"force": true}`（强制启用记入审计日志）。"""
    _own_sector(identity, sector)
    force = body is not None and body.force
    _store(request).check_activatable(sector, version, force=force)  # a request for the impossible is refused now
    held = held_for_approval(request, identity, Action.ACTIVATE_BUNDLE,
                             {"sector": sector, "version": version, "force": force}, f"{sector} {version}", sector)
    return held or activate_recorded(request, sector, version, f"identity:{identity.id}", force=force).public()



@router.post("/adapters/{sector}/rollback", responses=problem_doc(401, 403, 404, 409),
             summary="回退适配包")
def rollback(sector: str, request: Request,
             identity: Annotated[Identity, Depends(require(*ADMINS))]) -> dict[str, Any]:
    """重新启用之前启用的版本。没有可回退的版本为 409。"""
    _own_sector(identity, sector)
    return _store(request).rollback(sector, f"identity:{identity.id}").public()


@router.post("/adapters/{sector}/versions/{version}/retire", summary="停用适配包版本",
             responses=problem_doc(401, 403, 404, 409))
def retire_version(sector: str, version: str, request: Request,
                   identity: Annotated[Identity, Depends(require(*ADMINS))]) -> dict[str, Any]:
    """停用一个不再需要的版本；正在启用的版本不能停用（409，先启用别的版本）。"""
    _own_sector(identity, sector)
    return _store(request).retire(sector, version, f"identity:{identity.id}").public()


@router.post("/adapters/{sector}/preview", responses=problem_doc(401, 403, 404, 422),
             summary="预览映射")
def preview(sector: str, body: PreviewIn, request: Request,
            identity: Annotated[Identity, Depends(require(*ADMINS))]) -> dict[str, Any]:
    """用当前启用的版本为某个办件（或某个查询的参数）渲染请求，不调用部门系统。
    映射无法生成请求时为 422。只读。"""
    _own_sector(identity, sector)
    return _calls(request).preview(sector, body.operation, body.case_no, body.params)


@router.post("/queries/{name}", responses=problem_doc(401, 403, 404, 409, 422, 502, 503, 504),
             summary="同步查询")
def sync_query(name: str, body: QueryIn, request: Request,
               _: Annotated[Identity, Depends(require(Role.HALL_CLIENT, Role.WINDOW, Role.CLERK))]
               ) -> dict[str, Any]:
    """向部门系统发起一次同步查询（如社保缴费、公积金余额），即时返回结果，不建办件；不改变任何数据，可放心重试。
    `name` 为已启用的适配包声明的查询名，各查询及其参数见 "named queries" 分组；没有启用的适配包回答该查询为 404。
    部门位于隔离网络之后（摆渡适配包）的查询为 409 `no-synchronous-path`：同步查询不能跨越网闸。
    参数不合该查询的声明（缺少必填参数、类型或格式不符、未声明的参数）为 422 `invalid-query-parameters`，`errors`
    逐项列出参数名与原因，此时不调用部门系统。每次查询有自己的 `request_id`（在应答中，并记入报文日志）。
    部门系统不可用为 503（带 Retry-After），超时为 504，应答无法使用为 502，参数不合部门接口为 422。"""
    # The mapped answer's instants (mappings write them in UTC) in Beijing time, as every answer's are.
    answer: dict[str, Any] = instants_as_beijing_text(_calls(request).query(name, body.params))
    return answer


@callbacks.post("/callbacks/{sector}", status_code=200, responses=problem_doc(400, 401, 404, 409, 413, 422, 503),
                summary="部门回调办理结果")
async def sector_callback(sector: str, request: Request) -> dict[str, Any]:
    """部门系统推送办理结果。不需要 API 密钥：按该部门适配包声明的方式签名，签名就是凭证（无效为 401）。
    幂等：同一回调重复推送只处理一次。回调所指办件与业务号不符为 409。"""
    body = await _read_limited(request, 256 * 1024)
    return await run_in_threadpool(_calls(request).callback, sector, request.method, request.url.path,
                                   dict(request.headers), body, request.query_params.multi_items())


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class PayloadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"上限 {limit} 字节")


# DeliveryError from a synchronous query -> what the hall is told (never a hang, never a 500).
_QUERY_FAILURES: dict[FailureClass, tuple[int, str, str]] = {
    FailureClass.TIMEOUT: (504, "sector-timeout", "部门系统响应超时"),
    FailureClass.TRANSPORT: (503, "sector-unavailable", "部门系统暂不可用"),
    FailureClass.AUTH: (502, "sector-auth-failed", "部门系统拒绝了网关的凭证"),
    FailureClass.VALIDATION: (502, "sector-answer-invalid", "部门系统的应答无法识别"),
    FailureClass.MAPPING: (502, "sector-answer-invalid", "部门系统的应答无法映射"),
}


def retry_after(exc: DeliveryError) -> str:
    """When the hall may ask again, in whole seconds: the longer of the time until the query breaker may admit a
    call and the sector's own Retry-After; at least 1 (a closed breaker calls the sector again at once)."""
    waits = [w for w in (getattr(exc, "circuit_wait_s", None), getattr(exc, "retry_after_s", None))
             if isinstance(w, int | float) and w > 0]
    return str(max(1, math.ceil(max(waits, default=1))))


# What a failed query means for the caller, by status; the 502s: the gateway cannot use the sector's answer.
_QUERY_ADVICE = {422: "部门系统拒绝了请求，请勿原样重试", 503: "请在 Retry-After 所示秒数后重试",
                 504: "部门系统未在时限内应答，可稍后重试"}


def sector_detail(status: int, exc: DeliveryError) -> str:
    """A query failure's detail: what it means in Chinese, then the adapter's diagnosis in brackets (the
    detail it was before), for the hall's developers."""
    lead = "请求未发给部门系统" if isinstance(exc, UnsendableRequest) else \
        _QUERY_ADVICE.get(status, "网关无法使用部门系统的应答，请联系运维人员")
    return f"{lead}（诊断：{exc.message}）"


def install_adapter_error_handlers(app: FastAPI) -> None:
    async def invalid_bundle(request: Request, exc: BundleInvalid) -> JSONResponse:
        return problem_response(422, "invalid-bundle", "适配包不符合格式要求", str(exc), request.url.path,
                                errors=[{"msg": p} for p in exc.problems])

    async def invalid_parameters(request: Request, exc: InvalidQueryParameters) -> JSONResponse:
        return problem_response(422, "invalid-query-parameters", "查询参数不符合该查询的声明",
                                f"查询 {exc.query} 的参数有误，未调用部门系统：{exc}", request.url.path,
                                errors=exc.errors)

    async def delivery_failed(request: Request, exc: DeliveryError) -> JSONResponse:
        if isinstance(exc, UnsendableRequest):  # nothing was sent: the parameters do not fit the sector's interface
            return problem_response(422, "query-invalid", "查询参数不符合该部门接口的要求",
                                    sector_detail(422, exc), request.url.path)
        if getattr(exc, "circuit_open", False) or (exc.failure is FailureClass.SECTOR_FAULT and exc.retryable):
            status, slug, title = 503, "sector-unavailable", "部门系统暂不可用"
        elif exc.failure is FailureClass.SECTOR_FAULT:
            status, slug, title = 422, "sector-refused", "部门系统拒绝了请求"
        else:
            status, slug, title = _QUERY_FAILURES[exc.failure]
        response = problem_response(status, slug, title, sector_detail(status, exc), request.url.path)
        if status == 503:
            response.headers["Retry-After"] = retry_after(exc)
        return response

    # Starlette types a handler as taking any Exception; ours take the class they handle: hence the ignores.
    app.add_exception_handler(BundleInvalid, invalid_bundle)  # type: ignore[arg-type]
    app.add_exception_handler(DeliveryError, delivery_failed)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidQueryParameters, invalid_parameters)  # type: ignore[arg-type]
    install_problems(app, [
        (UnknownBundle, 404, "unknown-bundle", "没有该适配包版本"),
        (NoActiveAdapter, 404, "no-active-adapter", "没有启用的适配器"),
        (NoSynchronousPath, 409, "no-synchronous-path", "该部门位于隔离网络之后，没有同步查询通道"),
        (BundleConflict, 409, "bundle-conflict", "适配包版本状态不允许此操作"),
        (VersionUntested, 409, "version-untested", "该版本既没有通过的测试也没有通过的预演，不能直接启用"),
        (NoRehearsal, 409, "no-rehearsal", "该适配包版本没有预演文件"),
        (PermissionError, 403, "forbidden", "无权管理该部门的适配包"),
        (CallbackRejected, 401, "callback-rejected", "回调签名无效"),
        (CallbackUnreadable, 422, "callback-unreadable", "回调内容无法识别"),
        (AnswerMismatch, 409, "callback-mismatch", "回调所指的办件与业务号不符"),
        (CallbackDuplicateKey, 400, *DUPLICATE_KEY),
        (PreviewFailed, 422, "preview-failed", "映射无法生成该请求"),
        (PayloadTooLarge, 413, "payload-too-large", "请求体过大"),
    ])
