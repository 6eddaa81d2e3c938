"""The four-eyes hold a guarded route puts on its action (bundle activation, catalogue publication), the
bundle activation both the route and an approved request run (`activate_recorded`), and what an approval runs
once granted (`run_approved`).

Shared by the routers whose actions are guarded and by the console's pages (ops/console), which go through the
same hold and the same action; the approvals' own endpoints are `gateway.http.routers.approvals`, the rule
`gateway.security.approvals`.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import Request
from starlette.responses import JSONResponse

from gateway.catalogue.matters import matter_to_document
from gateway.domain.roles import Identity
from gateway.sectors.bundle_records import BundleStore, BundleVersion
from gateway.security.approvals import Action, Approval, Approvals

# The answer a guarded route gives instead of acting, in the OpenAPI document of that route.
HELD_DOC: dict[int | str, dict[str, Any]] = {202: {
    "description": "四眼原则开启（YIWANG_FOUR_EYES）时：已提交待另一位管理员审批，`Location` 指向审批记录",
    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}}}


def pending_approval(request: Request, identity: Identity, action: Action, params: dict[str, Any], subject: str,
                     sector: str | None = None) -> Approval | None:
    """With four-eyes on: the pending approval the action waits for; off: None, and the caller acts at once."""
    if not getattr(request.app.state, "four_eyes", False):  # apps built without the setting: off
        return None
    approvals: Approvals = request.app.state.approvals
    return approvals.request(action, params, subject, identity.id, sector)


def held_for_approval(request: Request, identity: Identity, action: Action, params: dict[str, Any], subject: str,
                      sector: str | None = None) -> JSONResponse | None:
    """With four-eyes on: the pending approval as a 202 answer; off: None, and the caller acts at once."""
    approval = pending_approval(request, identity, action, params, subject, sector)
    if approval is None:
        return None
    return JSONResponse(approval.public(), status_code=202, headers={"Location": f"/v1/approvals/{approval.id}"})


def activate_recorded(request: Request, sector: str, version: str, actor: str, *, force: bool) -> BundleVersion:
    """Activate; a forced activation (past a failed or missing test and rehearsal) gets an audit record of its own
    saying who, which version and the last test's and rehearsal's outcomes (the route's own record has no body)."""
    store = cast(BundleStore, request.app.state.bundles)  # set by gateway.bootstrap.app
    before = store.get(sector, version)
    activated = store.activate(sector, version, actor, force=force)
    forced = before.forced()  # None: tried, or active already (activating it again changes nothing)
    if forced is not None:
        request.app.state.ledger.audit(actor, "forced activation", f"sector={sector},version={version}",
                                       {"last_test": before.test_outcome or "never tested",
                                        "last_rehearsal": before.rehearsal_outcome or "never rehearsed"}, sector,
                                       outcome=forced)
    return activated


def run_approved(request: Request, approval: Approval) -> dict[str, Any]:
    """The guarded action itself, recorded as done by requester and approver together."""
    p = approval.params
    if approval.action is Action.ACTIVATE_BUNDLE:
        return activate_recorded(request, p["sector"], p["version"], approval.actor,
                                 force=bool(p.get("force"))).public()  # approvals requested before force: none
    return matter_to_document(request.app.state.catalogue.publish(p["code"], p["version"], approval.actor))
