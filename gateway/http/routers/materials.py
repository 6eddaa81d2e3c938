"""Material uploads: `POST /v1/materials` (multipart, field `file`) and `GET /v1/materials/{ref}`.

The upload is parsed by hand rather than through a `File()` parameter, for two reasons:
- FastAPI reads a declared body before it resolves dependencies, so an anonymous caller could make
  us spool a whole upload before hearing 401; without a body parameter `require()` runs first.
- the request stream is bounded by the store's own limit (plus multipart framing), because the
  app's 1 MiB body-size middleware is exempted for this path: no other limit protects the disk.
The file part is spooled by Starlette (memory up to 1 MiB, then disk) and handed to the store as a
file object it reads in chunks, so an upload is never held whole in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive

from gateway.domain.roles import Identity, Role
from gateway.http.callers import require
from gateway.http.json_bodies import UNSUPPORTED_MEDIA_TYPE, accepts_only, media_type
from gateway.http.problems import install_problems, problem_doc
from gateway.materials.store import (
    MaterialStore,
    MaterialTooLarge,
    StoredMaterial,
    UnknownMaterial,
    UnsupportedMaterial,
)

router = APIRouter(prefix="/v1", tags=["materials"])

UPLOAD_ROLES = (Role.HALL_CLIENT, Role.WINDOW)
READ_ROLES = (*UPLOAD_ROLES, Role.CLERK, Role.ISSUING_WINDOW)
MULTIPART_ALLOWANCE = 64 * 1024  # boundaries and part headers around the file itself
MAX_FORM_FIELDS = 8  # the form carries one file; a few stray text fields are tolerated, not floods
MULTIPART = "multipart/form-data"

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": "PDF, JPEG, PNG or OFD; the type is checked against the content"},
                    },
                },
            },
        },
    },
}


class InvalidUpload(Exception):
    """The request is not a multipart form carrying a file in field `file`."""


class NotMultipart(Exception):
    """The body is not declared `multipart/form-data` at all (a 415, not a form we failed to read)."""


class UploadedMaterialOut(BaseModel):
    ref: str = Field(description="what a case submission names in `materials[].file_ref`", examples=[
        "mat_0f1e2d3c4b5a69788796a5b4c3d2e1f0"])
    sha256: str = Field(description="hex SHA-256 of the content")
    size: int = Field(description="bytes")
    media_type: str = Field(description="as recognised from the content")
    filename: str = Field(description="the original name, path and control characters removed")


def _store(request: Request) -> MaterialStore:
    return cast(MaterialStore, request.app.state.materials)  # set by gateway.bootstrap.app


@router.post("/materials", status_code=201, response_model=UploadedMaterialOut, openapi_extra=_UPLOAD_BODY,
             responses=problem_doc(401, 403, 413, 415, 422), summary="上传申请材料")
async def upload_material(
    request: Request,
    response: Response,
    identity: Annotated[Identity, Depends(require(*UPLOAD_ROLES))],
) -> Any:
    """上传一份申请材料文件（multipart/form-data，字段 `file`），按内容识别文件类型并计算 SHA-256。
    提交办件时在 `materials[].file_ref` 中引用返回的 `ref`。
    不是幂等操作：每次上传得到新的 `ref`。超过大小上限为 413，不是 multipart 或文件类型不受支持为 415，
    表单无法读取为 422。
    返回 201，`Location` 指向材料的元数据。"""
    store = _store(request)
    async with _uploaded_file(request, store.max_bytes) as upload:
        # The store does blocking file and database I/O: off the event loop.
        material = await run_in_threadpool(store.save, upload.file, upload.content_type, upload.filename or "",
                                           identity.id)
    response.headers["Location"] = f"/v1/materials/{material.ref}"
    return _out(material)


@router.get("/materials/{ref}", response_model=UploadedMaterialOut, responses=problem_doc(401, 403, 404),
            summary="查看材料元数据")
def get_material(ref: str, request: Request, _: Annotated[Identity, Depends(require(*READ_ROLES))]) -> Any:
    """一份已上传材料的元数据：大小、类型、SHA-256、原文件名（不返回内容）。只读。"""
    material = _store(request).get(ref)
    if material is None:
        raise UnknownMaterial(ref)
    return _out(material)


def _out(material: StoredMaterial) -> UploadedMaterialOut:
    return UploadedMaterialOut(ref=material.ref, sha256=material.sha256, size=material.size,
                       media_type=material.media_type, filename=material.filename)


@asynccontextmanager
async def _uploaded_file(request: Request, max_bytes: int) -> AsyncIterator[UploadFile]:
    """The `file` part of the multipart body; its spooled temporary files are closed afterwards."""
    if media_type(request.headers.get("content-type")) != MULTIPART:
        raise NotMultipart(accepts_only(MULTIPART))
    bounded = Request(request.scope, _bounded(request.receive, max_bytes))
    try:
        form = await bounded.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    except HTTPException as exc:  # how Starlette reports a malformed multipart body
        raise InvalidUpload("无法读取 multipart 请求体") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidUpload("请求体应为 multipart/form-data，材料文件放在 file 字段中")
        yield upload
    finally:
        await form.close()


def _bounded(receive: Receive, max_bytes: int) -> Receive:
    """`receive`, refusing once the body outgrows what a `max_bytes` file can need."""
    limit = max_bytes + MULTIPART_ALLOWANCE
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise MaterialTooLarge(max_bytes)
        return message

    return bounded


_PROBLEMS: dict[type[Exception], tuple[int, str, str]] = {
    MaterialTooLarge: (413, "payload-too-large", "材料文件过大"),
    UnsupportedMaterial: (415, "unsupported-material", "材料文件类型不受支持"),
    UnknownMaterial: (404, "unknown-material", "材料不存在"),
    InvalidUpload: (422, "invalid-request", "请求内容不符合要求"),
    NotMultipart: (415, *UNSUPPORTED_MEDIA_TYPE),
}


def install_material_error_handlers(app: FastAPI) -> None:
    """Map the materials' failures to problem+json (401/403 come from the app's auth handlers)."""
    install_problems(app, [(exc_type, *answer) for exc_type, answer in _PROBLEMS.items()])
