"""Four-eyes approvals over HTTP: list, read, approve, reject (the rule itself is `gateway.security.approvals`).

The guarded routes (bundle activation in `api_adapters`, publication in `api_catalogue`) call
`held_for_approval` first: with four-eyes on it answers 202 and the pending approval instead of acting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.domain.roles import Identity, Role
from gateway.http.approval_holds import run_approved
from gateway.http.callers import require
from gateway.http.json_bodies import JsonBodyRoute
from gateway.http.paging import Page, Paged, answer
from gateway.http.problems import install_problems, problem_doc
from gateway.http.text_fields import typed
from gateway.persistence.keyset import Keyset
from gateway.security.approvals import (
    STATUSES,
    AlreadyDecided,
    Approval,
    Approvals,
    NotADecider,
    OwnRequest,
    UnknownApproval,
    may_decide,
)

router = APIRouter(prefix="/v1", tags=["approvals"], route_class=JsonBodyRoute)
APPROVALS = Keyset("approvals", (datetime, str))  # oldest request first; held in memory, filtered by who decides
# Whoever may do a guarded action; `may_decide` narrows it to the action (and a sector admin's sector).
Decider = Annotated[Identity, Depends(require(Role.SECTOR_ADMIN, Role.OPERATOR, Role.SYSTEM_ADMIN,
                                              Role.CATALOGUE_ADMIN))]


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, typed("驳回理由", multiline=True, blank="")] = Field(default="", max_length=500)


def _approvals(request: Request) -> Approvals:
    return cast(Approvals, request.app.state.approvals)  # set by gateway.bootstrap.app


def _seen_by(identity: Identity, approval: Approval) -> Approval:
    if not may_decide(identity, approval.action, approval.sector):
        raise NotADecider(f"审批 {approval.id} 不在你的职责范围内")
    return approval


@router.get("/approvals", response_model=Page[dict[str, Any]], responses=problem_doc(401, 403, 422),
            summary="待我审批的申请")
def list_approvals(request: Request, identity: Decider, paging: Paged,
                   status: Annotated[str, Query(pattern="^(" + "|".join(STATUSES) + ")$")] = "pending"
                   ) -> dict[str, Any]:
    """四眼原则下调用方可以审批的申请（启用适配包、发布事项），默认只列待审批的，`status` 可选其他状态。只读。"""
    mine = [a for a in _approvals(request).list(status) if may_decide(identity, a.action, a.sector)]
    page = APPROVALS.seek(mine, lambda a: (a.requested_at, a.id), paging.after(APPROVALS), paging.limit)
    return answer(APPROVALS, page, Approval.public, len(mine))


@router.get("/approvals/{approval_id}", summary="查看审批", responses=problem_doc(401, 403, 404))
def get_approval(approval_id: str, request: Request, identity: Decider) -> dict[str, Any]:
    """一条审批申请：谁提出、要做什么、当前状态。只读；无权审批的人看不到（403）。"""
    return _seen_by(identity, _approvals(request).get(approval_id)).public()


@router.post("/approvals/{approval_id}/approve", responses=problem_doc(401, 403, 404, 409, 422),
             summary="批准")
def approve(approval_id: str, request: Request, identity: Decider) -> dict[str, Any]:
    """第二位管理员批准申请，被守护的操作随即执行并记为申请人与批准人共同完成；不能批准本人的申请（403 `own-request`）。
    不是幂等操作：已处理的审批再批准为 409 `already-decided`。返回审批记录和操作结果。"""
    approval, result = _approvals(request).approve(approval_id, identity, lambda a: run_approved(request, a))
    return {"approval": approval.public(), "result": result}


@router.post("/approvals/{approval_id}/reject", responses=problem_doc(401, 403, 404, 409, 422),
             summary="驳回")
def reject(approval_id: str, body: RejectIn, request: Request, identity: Decider) -> dict[str, Any]:
    """驳回申请，可写理由；申请人也可以用它撤回本人的申请。已处理的审批为 409 `already-decided`。"""
    return _approvals(request).reject(approval_id, identity, body.reason).public()


def install_approval_error_handlers(app: FastAPI) -> None:
    install_problems(app, [
        (UnknownApproval, 404, "unknown-approval", "没有该审批"),
        (OwnRequest, 403, "own-request", "不能审批本人提出的申请"),
        (NotADecider, 403, "forbidden", "无权审批此申请"),
        (AlreadyDecided, 409, "already-decided", "该审批已处理"),
    ])
