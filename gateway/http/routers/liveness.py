"""`GET /healthz`: the process is alive. No key, no database: readiness is `ops.readiness`'s `/readyz`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="存活检查")
def healthz() -> dict[str, str]:
    """进程存活即返回 200 `{"status": "ok"}`，供负载均衡和容器编排探测；不需要 API 密钥，不查数据库。"""
    return {"status": "ok"}
