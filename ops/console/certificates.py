"""The console's certificates page, mirroring `/v1/certificates` (gateway/http/routers/certificates.py) for the same
roles: security administrators every entry, sector administrators their own sector's only.

- `GET /console/certificates`: every entry the identity may see, each version's validity and the current one's
  days left; one expiring within `NEARING` is marked by a class and by text (not by colour alone);
- rotate and retire, each behind a confirmation page (`GET …/rotate`, `GET …/retire`), then `POST` to the same
  `CertStore` calls the API makes, with the same actor (the store and the `AuditTrail` middleware record them).
Private keys never appear: the store's versions carry none.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Any, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from certstore import CURRENT, MAX_OVERLAP_DAYS, CertStore, StoredVersion
from gateway.domain.clock import beijing_text
from gateway.domain.roles import Identity, NotAllowed, Role
from gateway.persistence.tables import MAX_ROW_ID
from ops.console.web import PREFIX, Csrf, entered, render, time_now

router = APIRouter(prefix=PREFIX + "/certificates", include_in_schema=False)
Admin = Annotated[Identity, Depends(entered("certificates"))]
NEARING = timedelta(days=30)  # the store's first expiry warning (30 days, then 7): from then on, marked
DONE = {"rotated": "已轮换：最新暂存的版本成为当前版本。", "retired": "已停用。"}


def _store(request: Request) -> CertStore:
    return cast(CertStore, request.app.state.certs)


def _may_see(who: Identity, sector: str | None) -> bool:
    """As the API: a security administrator every entry, a sector administrator their own sector's."""
    return who.has(Role.SECURITY_ADMIN) or (sector is not None and who.sector == sector)


def _owned(who: Identity, store: CertStore, name: str) -> None:
    if not _may_see(who, store.owner(name)):  # an unknown name: UnknownEntry, a 404 page
        raise NotAllowed(f"不是证书 {name} 所属部门的管理员")


def _shown(version: StoredVersion, now: datetime) -> dict[str, Any]:
    """A version as a row: its validity in Beijing time, and for the current one the days it has left."""
    facts = version.facts
    not_after = facts.not_after if facts is not None else None
    left = math.floor((not_after - now) / timedelta(days=1)) if not_after is not None else None
    return {"version": version.version, "status": version.status, "kind": version.kind,
            "subject": facts.subject if facts else None, "issuer": facts.issuer if facts else None,
            "not_after": beijing_text(not_after) if not_after else None,
            "trusted_until": beijing_text(version.trusted_until) if version.trusted_until else None,
            "days_left": left,
            "nearing": version.status == CURRENT and not_after is not None and not_after - now <= NEARING}


def _entries(request: Request, who: Identity, name: str | None = None) -> list[dict[str, Any]]:
    now = time_now(request)
    by_name: dict[str, list[StoredVersion]] = {}
    for version in _store(request).versions(name):
        if _may_see(who, version.sector):
            by_name.setdefault(version.name, []).append(version)
    return [{"name": n, "sector": vs[0].sector, "versions": [_shown(v, now) for v in vs]}
            for n, vs in sorted(by_name.items())]


def _done(what: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/certificates?{urlencode({'done': what})}", status_code=303)


@router.get("", response_class=HTMLResponse)
def certificates(request: Request, who: Admin) -> HTMLResponse:
    return render(request, "certificates.html", current="certificates", entries=_entries(request, who),
                  done=DONE.get(request.query_params.get("done", "")), nearing_days=NEARING.days)


def _confirm(request: Request, who: Identity, name: str, action: str) -> HTMLResponse:
    """The confirmation page of a rotation or a retirement: the entry as it is now, and the form."""
    _owned(who, _store(request), name)
    return render(request, "certificate_confirm.html", current="certificates", action=action,
                  entry=_entries(request, who, name)[0], name_path=quote(name, safe=""),
                  max_overlap=MAX_OVERLAP_DAYS)


@router.get("/{name}/rotate", response_class=HTMLResponse)
def confirm_rotate(name: str, request: Request, who: Admin) -> HTMLResponse:
    return _confirm(request, who, name, "rotate")


@router.get("/{name}/retire", response_class=HTMLResponse)
def confirm_retire(name: str, request: Request, who: Admin) -> HTMLResponse:
    return _confirm(request, who, name, "retire")


@router.post("/{name}/rotate")
def rotate(name: str, request: Request, who: Admin, _: Csrf,
           overlap_days: Annotated[float | None, Form(ge=0, le=MAX_OVERLAP_DAYS, allow_inf_nan=False)] = None
           ) -> RedirectResponse:
    store = _store(request)
    _owned(who, store, name)
    store.rotate(name, f"identity:{who.id}", timedelta(days=overlap_days) if overlap_days is not None else None)
    return _done("rotated")


@router.post("/{name}/retire")
def retire(name: str, request: Request, who: Admin, _: Csrf,
           version: Annotated[int | None, Form(ge=1, le=MAX_ROW_ID)] = None) -> RedirectResponse:
    store = _store(request)
    _owned(who, store, name)
    store.retire(name, f"identity:{who.id}", version)
    return _done("retired")

