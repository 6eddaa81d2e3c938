"""The console's first page, `/console`: where to go from here (the overview's figures come with
ops/overview.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from gateway.domain.roles import Identity
from ops.console.web import PREFIX, entered, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def overview(request: Request, me: Annotated[Identity, Depends(entered("overview"))]) -> HTMLResponse:
    return render(request, "overview.html", current="overview")
