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


@router.get(LINKS_PATH + "/{ref}", responses={**problem_doc(403, 404, 503), 200: {"content": {
    "application/pdf": {}, "image/jpeg": {}, "image/png": {}, "application/ofd": {}}}},
            summary="部门系统下载材料")
def fetch_material(ref: str, request: Request) -> StreamingResponse:
    """部门系统凭网关发给它的签名链接下载一份申请材料（适配包 `materials.transport: signed_url`）。
    不需要 API 密钥：链接上的签名（`expires`、`sig`、`sector`）就是凭证；签名无效或已过期为 403，
    材料不存在或已被改动为 404。只读，可在有效期内重复下载。返回材料原文件（`Cache-Control: no-store`）。"""
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
