"""`GET /healthz`: the process is alive. No key, no database: readiness is `ops.readiness`'s `/readyz`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive (no key needed)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
