"""The console's adapters pages, mirroring `/v1/adapters` (gateway/http/routers/sectors.py) for the same roles:

- `GET /console/adapters`: every sector the identity acts for, its active version and health (what
  `GET /v1/adapters` shows) and its registered versions;
- `GET /console/adapters/{sector}`: the sector's versions with their test and rehearsal results, and the
  actions: test, rehearse, activate (with four-eyes on: the same hold as the API, then "已提交审批"), roll back,
  retire, and a preview of what the active version's mapping renders (`SectorCalls.preview`, read-only).

Each action calls what the API's route calls, in the same order, so it writes the same records (the route's own
record comes from the `AuditTrail` middleware, which records console POSTs as it does the API's). A sector
administrator sees and acts on their own sector only (`acts_for_sector`), as in the API.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from gateway.domain.clock import instants_as_beijing_text
from gateway.domain.roles import Identity, NotAllowed, acts_for_sector
from gateway.http.approval_holds import activate_recorded, pending_approval
from gateway.sectors.bundle_records import BundleStore
from gateway.sectors.calls import PreviewFailed, SectorCalls
from gateway.sectors.live_registry import LiveRegistry, NoActiveAdapter
from gateway.security.approvals import Action
from ops.console.web import PREFIX, Csrf, entered, render

router = APIRouter(prefix=PREFIX + "/adapters", include_in_schema=False)
Admin = Annotated[Identity, Depends(entered("adapters"))]
# What a finished action's page says (Post/Redirect/Get: the action's name travels in the query).
DONE = {"tested": "测试已完成，结果见下表。", "rehearsed": "预演已完成，结果见下表。", "activated": "版本已启用。",
        "rolled-back": "已回退到之前启用的版本。", "retired": "版本已停用。"}


def _store(request: Request) -> BundleStore:
    return cast(BundleStore, request.app.state.bundles)


def _calls(request: Request) -> SectorCalls:
    return cast(SectorCalls, request.app.state.sector_calls)


def _registry(request: Request) -> LiveRegistry:
    return cast(LiveRegistry, request.app.state.registry)


def _own_sector(who: Identity, sector: str) -> None:
    """As the API: a sector administrator acts on their own sector only."""
    if not acts_for_sector(who, sector):
        raise NotAllowed(f"不是部门 {sector} 的管理员")


def _actor(who: Identity) -> str:
    return f"identity:{who.id}"


def _done(sector: str, what: str, **more: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/adapters/{quote(sector)}?{urlencode({'done': what, **more})}", status_code=303)


@router.get("", response_class=HTMLResponse)
def adapters(request: Request, who: Admin) -> HTMLResponse:
    health = _registry(request).health()
    versions: dict[str, list[dict[str, Any]]] = {}
    for version in _store(request).versions():
        versions.setdefault(version.sector, []).append(version.public())
    sectors = [{"sector": s, "health": instants_as_beijing_text(health.get(s)), "versions": versions.get(s, [])}
               for s in sorted(set(health) | set(versions)) if acts_for_sector(who, s)]
    return render(request, "adapters.html", current="adapters", sectors=sectors)


def _sector_page(request: Request, sector: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    try:
        operations = sorted(_registry(request).get(sector).mappings)
    except NoActiveAdapter:
        operations = []  # nothing active: nothing to preview
    done = DONE.get(request.query_params.get("done", ""))
    held = request.query_params.get("approval")
    context = {"preview": None, "problem": None, "form": {}, **context}
    return render(request, "adapter.html", status_code=status_code, current="adapters", sector=sector,
                  versions=[v.public() for v in _store(request).versions(sector)], operations=operations,
                  done=done, held=held, **context)


@router.get("/{sector}", response_class=HTMLResponse)
def adapter(sector: str, request: Request, who: Admin) -> HTMLResponse:
    _own_sector(who, sector)
    return _sector_page(request, sector)


@router.post("/{sector}/versions/{version}/test")
def test_version(sector: str, version: str, request: Request, who: Admin, _: Csrf) -> RedirectResponse:
    _own_sector(who, sector)
    _calls(request).test_version(sector, version)
    return _done(sector, "tested")


@router.post("/{sector}/versions/{version}/rehearse")
def rehearse_version(sector: str, version: str, request: Request, who: Admin, _: Csrf) -> RedirectResponse:
    _own_sector(who, sector)
    _calls(request).rehearse(sector, version)
    return _done(sector, "rehearsed")


@router.post("/{sector}/versions/{version}/activate")
def activate_version(sector: str, version: str, request: Request, who: Admin, _: Csrf,
                     force: Annotated[bool, Form()] = False) -> RedirectResponse:
    """As `POST /v1/adapters/{sector}/versions/{version}/activate`: refused now if impossible, held for a second
    identity's approval when four-eyes is on, else activated."""
    _own_sector(who, sector)
    _store(request).check_activatable(sector, version, force=force)
    held = pending_approval(request, who, Action.ACTIVATE_BUNDLE,
                            {"sector": sector, "version": version, "force": force}, f"{sector} {version}", sector)
    if held is not None:
        return _done(sector, "held", approval=held.id)
    activate_recorded(request, sector, version, _actor(who), force=force)
    return _done(sector, "activated")


@router.post("/{sector}/rollback")
def rollback(sector: str, request: Request, who: Admin, _: Csrf) -> RedirectResponse:
    _own_sector(who, sector)
    _store(request).rollback(sector, _actor(who))
    return _done(sector, "rolled-back")


@router.post("/{sector}/versions/{version}/retire")
def retire_version(sector: str, version: str, request: Request, who: Admin, _: Csrf) -> RedirectResponse:
    _own_sector(who, sector)
    _store(request).retire(sector, version, _actor(who))
    return _done(sector, "retired")


@router.post("/{sector}/preview", response_class=HTMLResponse)
def preview(sector: str, request: Request, who: Admin, _: Csrf, operation: Annotated[str, Form(max_length=100)],
            case_no: Annotated[str, Form(max_length=64)] = "",
            params: Annotated[str, Form(max_length=20_000)] = "{}") -> HTMLResponse:
    """What the active version would send (the API's `SectorCalls.preview`); changes nothing. Parameters that
    are no JSON object, or a mapping that cannot render: the problem, on the page, next to the form."""
    _own_sector(who, sector)
    form = {"operation": operation, "case_no": case_no, "params": params}
    try:
        parsed = json.loads(params or "{}")
    except ValueError as exc:
        return _sector_page(request, sector, 422, form=form, problem=f"参数不是有效的 JSON：{exc}")
    if not isinstance(parsed, dict):
        return _sector_page(request, sector, 422, form=form, problem="参数须为 JSON 对象（{…}）")
    try:
        rendered = _calls(request).preview(sector, operation, case_no.strip() or None, parsed)
    except (PreviewFailed, NoActiveAdapter) as exc:
        return _sector_page(request, sector, 422, form=form, problem=str(exc))
    shown = json.dumps(rendered, ensure_ascii=False, indent=2, sort_keys=True)
    return _sector_page(request, sector, form=form, preview=shown)
