"""RFC 9457 problem details: every error the API answers, with a stable `type` per kind."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.responses import JSONResponse

PROBLEM_TYPE_PREFIX = "urn:yiwang:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_response(status: int, slug: str, title: str, detail: str | None = None,
                     instance: str | None = None, **extra: Any) -> JSONResponse:
    body = Problem(type=PROBLEM_TYPE_PREFIX + slug, title=title, status=status, detail=detail, instance=instance,
                   **extra)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def problem_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries so the document describes error answers too."""
    return {s: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}} for s in statuses}
