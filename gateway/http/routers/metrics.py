"""Prometheus metrics: one registry per gateway, served as text at `GET /metrics`.

The endpoint takes no API key: Prometheus scrapes it like every other exporter, and what it shows carries
no personal data (counts, ages, certificate names and sectors). Keep it on the internal network: a
reverse proxy in front of the gateway should not pass `/metrics` through to the hall. Other parts register
their collectors on `Gateway.metrics` (a `prometheus_client.CollectorRegistry`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="监控指标",
            response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus 文本格式的监控指标：办件、投递、部门系统应答、熔断器、证书到期等。
    不需要 API 密钥，只应在内网开放给监控系统。只读。"""
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
