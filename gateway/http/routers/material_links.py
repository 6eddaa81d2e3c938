"""`GET /material-links/{ref}`: a sector fetches a material through the signed link it was sent.

Outside `/v1`, like `/callbacks/{sector}`: the signature (`gateway.materials.links`), not an API key, is the
credential. The query is read by hand so that a link missing a parameter is refused like any other bad
link (403 problem+json), never a 422 that says which part is missing. The signature is checked before the
ref is looked up, so the endpoint tells nobody without a valid link whether a material exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import structlog
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import StreamingResponse

from gateway.http.problems import install_problems, problem_doc
from gateway.materials.links import (
    LINKS_PATH,
    MaterialLinkNotFound,
    MaterialLinkRefused,
    MaterialLinks,
)
from gateway.materials.store import CHUNK, AlteredMaterial, MaterialStore, UnknownMaterial

log = structlog.get_logger("yiwang.material_links")
router = APIRouter(tags=["material links"])
PROBLEM_SLUG = "material-link-invalid"


@router.get(LINKS_PATH + "/{ref}", responses={**problem_doc(403, 404), 200: {"content": {
    "application/pdf": {}, "image/jpeg": {}, "image/png": {}, "application/ofd": {}}}},
            summary="A material, for the sector holding a signed link to it (no API key: the signature is the "
                    "credential)")
def fetch_material(ref: str, request: Request) -> StreamingResponse:
    # A plain `def`: FastAPI runs it in a worker thread, as the store's file and database I/O need.
    links: MaterialLinks = request.app.state.material_links
    store: MaterialStore = request.app.state.materials
    query = request.query_params
    links.check(ref, query.get("expires"), query.get("sig"), query.get("sector"))
    try:
        material, f = store.open_verified(ref)
    except UnknownMaterial:
        raise MaterialLinkNotFound(f"no material {ref}") from None
    except AlteredMaterial:
        log.error("material altered on disk; not served", ref=ref, sector=query.get("sector"))
        raise MaterialLinkNotFound(f"material {ref} is no longer available as uploaded") from None
    headers = {
        "Content-Length": str(material.size),
        "Cache-Control": "no-store",  # the link is a credential; what it fetched is an applicant's document
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(_chunks(f), media_type=material.media_type, headers=headers)


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(CHUNK):
            yield chunk


def install_material_link_error_handlers(app: FastAPI) -> None:
    install_problems(app, [
        (MaterialLinkRefused, 403, PROBLEM_SLUG, "材料链接无效或已过期"),
        (MaterialLinkNotFound, 404, PROBLEM_SLUG, "材料链接指向的材料不存在"),
    ])
