"""The console's first page, `/console`: the operators' overview (ops/overview.py) — the same figures, for the
same scope, as `GET /v1/ops/overview` (`Scope.of(identity)`: a sector administrator sees their sector's part, and
the parts that are None for them are not shown) — each figure a link to the console page of the list it counts.

`href(identity, link)` is the one mapping from a figure's `Link` (page + filter) to a console address: the
filter becomes the page's query (an adapter's sector and a ferry link's name its path), and a page the identity
may not enter (web.PAGES) gives None — the figure is shown unlinked. An htmx request (the page refreshes its
figures every 10 s) gets the figures' region only (`_overview_figures.html`).
"""

from __future__ import annotations

from typing import Annotated, Any, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from gateway.domain.roles import Identity
from ops.console.web import PAGES, PREFIX, entered, render
from ops.overview import Link, Overview, Scope

__all__ = ["href", "router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)
# A figure's link page (ops.overview.Page) -> the console page (web.PAGES) that lists what it counts.
CONSOLE_PAGE = {"cases": "journey", "dead-letters": "dead-letters", "replays": "replays", "adapters": "adapters",
                "certificates": "certificates", "audit": "audit", "ferry": "ferry"}
IN_PATH = {"adapters": "sector", "ferry": "channel"}  # the filter that names the page's own item
_PAGES = {page.name: page for page in PAGES}


def href(identity: Identity, link: Link) -> str | None:
    """The console address of what a figure counts; None when the identity may not enter that page."""
    page = _PAGES[CONSOLE_PAGE[link.page]]
    if not identity.roles & page.roles:
        return None
    query = {name: _text(value) for name, value in link.filter.items()}
    path = page.path
    item = query.pop(IN_PATH.get(link.page, ""), None)
    if item is not None:
        path += "/" + quote(item, safe="")
    return path + (f"?{urlencode(query)}" if query else "")


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@router.get("", response_class=HTMLResponse)
def overview(request: Request, me: Annotated[Identity, Depends(entered("overview"))]) -> HTMLResponse:
    figures = cast(Overview, request.app.state.overview).overview(Scope.of(me))  # set by gateway.bootstrap.app
    partial = request.headers.get("hx-request") == "true"
    trend = figures.dead_letters.trend
    return render(request, "_overview_figures.html" if partial else "overview.html", current="overview",
                  figures=figures, href=lambda link: href(me, link), most=max((d.count for d in trend), default=0))
