"""RFC 9457 problem details: every error the API answers, with a stable `type` per kind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
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


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def problem_handler(status: int, slug: str, title: str) -> Handler:
    """An exception handler answering with the exception's own message as `detail` (our messages only:
    they never echo what the caller sent)."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(status, slug, title, str(exc) or None, request.url.path)

    return handle


def install_problems(app: FastAPI, table: Iterable[tuple[type[Exception], int, str, str]]) -> None:
    """Register a problem answer per exception type: (type, status, slug, title)."""
    for exc_type, status, slug, title in table:
        app.add_exception_handler(exc_type, problem_handler(status, slug, title))
