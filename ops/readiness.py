"""Readiness: may a load balancer send this process work? `GET /readyz` answers, and `yiwang_ready` says the same.

`/healthz` only says the process is alive. `/readyz` checks what a request needs: the database (a
`SELECT 1` that must answer within `YIWANG_PROBE_TIMEOUT_MS`), the broker when `YIWANG_AMQP_URL` is set
(a short-lived connection, reused for `YIWANG_METRICS_CACHE_MS`), and reports each adapter's circuit and the
bundles this process could not build. The database or the broker down: 503, not ready. An open circuit or an
unbuildable bundle concerns one sector only: 200 with `"status": "degraded"` — a load balancer that pulled
every instance because one sector is down would stop the whole hall.

The endpoint takes no API key, so it names what is down but not why (errors' class names only; the details
go to the log, and a sector administrator reads an adapter's health at `GET /v1/adapters`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pika
import structlog
from fastapi import APIRouter, Request
from pika.exceptions import ChannelClosedByBroker
from pydantic import BaseModel
from sqlalchemy import Engine, text
from starlette.responses import JSONResponse

from gateway.config import Settings
from gateway.http.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX, Problem
from gateway.transport.amqp_topology import DEAD_LETTER_QUEUE, connection_parameters, describe, queue_name

log = structlog.get_logger("yiwang.health")
UP, DOWN, NOT_CONFIGURED = "up", "down", "not_configured"
UNWELL_CIRCUITS = frozenset({"open", "half_open"})  # calls to the sector are refused or on trial


class AdapterHealthSource(Protocol):
    """The live registry as readiness sees it (`gateway.sectors.live_registry.LiveRegistry`)."""

    @property
    def sectors(self) -> tuple[str, ...]: ...

    def health(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- the broker


@dataclass(frozen=True)
class BrokerReading:
    """One look at the broker: is it up, and how many ready messages wait in each of our queues."""

    up: bool
    queues: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None  # the error's class name when down


class BrokerProbe:
    """Reads the broker on a connection of its own, opened and closed per reading, at most once per `cache_s`
    (a scrape or probe storm costs the broker one connection per period). Never raises."""

    def __init__(self, url: str, sectors: Callable[[], Iterable[str]], timeout_s: float, cache_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url, self.sectors, self.timeout_s, self.cache_s = url, sectors, timeout_s, cache_s
        self._clock = clock
        self._lock = threading.Lock()  # concurrent callers wait for one reading rather than each connecting
        self._last: BrokerReading | None = None
        self._read_at = 0.0

    def read(self) -> BrokerReading:
        with self._lock:
            if self._last is None or self._clock() - self._read_at >= self.cache_s:
                self._last = self._probe()
                self._read_at = self._clock()
            return self._last

    def _probe(self) -> BrokerReading:
        parameters = connection_parameters(self.url, heartbeat_s=60, name="yiwang readiness probe")
        parameters.socket_timeout = parameters.stack_timeout = parameters.blocked_connection_timeout = self.timeout_s
        try:
            connection = pika.BlockingConnection(parameters)
        except Exception as exc:  # noqa: BLE001 - refused, timed out, bad credentials: all mean "down"
            log.warning("broker not reachable", error=describe(exc))
            return BrokerReading(False, error=type(exc).__name__)
        try:
            return BrokerReading(True, self._depths(connection))
        except Exception as exc:  # noqa: BLE001 - the connection broke while reading
            log.warning("broker reading failed", error=describe(exc))
            return BrokerReading(False, error=type(exc).__name__)
        finally:
            if connection.is_open:
                connection.close()

    def queue_names(self) -> list[str]:
        """Our queues: the dead-letter queue, then each active sector's delivery queues (ordinary, green)."""
        return [DEAD_LETTER_QUEUE, *(queue_name(s, green) for s in sorted(self.sectors()) for green in (False, True))]

    def _depths(self, connection: pika.BlockingConnection) -> dict[str, int]:
        """Ready messages per queue by passive declare: a queue not declared yet (no worker has consumed its
        sector) gives no count, and closes the channel, so the next queue gets a fresh one."""
        depths: dict[str, int] = {}
        channel = None
        for name in self.queue_names():
            channel = channel if channel is not None and channel.is_open else connection.channel()
            try:
                depths[name] = channel.queue_declare(name, passive=True).method.message_count
            except ChannelClosedByBroker:  # 404: not declared yet
                channel = None
        return depths


# --------------------------------------------------------------------------- readiness


@dataclass(frozen=True)
class Report:
    ready: bool  # false: the database or the broker is down (503)
    status: Literal["ready", "degraded", "not_ready"]
    checks: dict[str, Any]


class Readiness:
    def __init__(self, engine: Engine, adapters: AdapterHealthSource, broker: BrokerProbe | None,
                 timeout_s: float) -> None:
        self.engine, self.adapters, self.broker, self.timeout_s = engine, adapters, broker, timeout_s
        self._lock = threading.Lock()
        self._pending: _Attempt | None = None  # a database check still running: the next one waits on it

    def check(self) -> Report:
        database = self._database()
        broker = self._broker()
        adapters = self._adapters()
        ready = database["status"] == UP and broker["status"] != DOWN
        degraded = any(a.get("circuit") in UNWELL_CIRCUITS or a.get("query_circuit") in UNWELL_CIRCUITS
                       or a.get("status") == "unbuildable"
                       for a in adapters.values())
        status: Literal["ready", "degraded", "not_ready"] = (
            "not_ready" if not ready else "degraded" if degraded else "ready")
        return Report(ready, status, {"database": database, "broker": broker, "adapters": adapters})

    def _database(self) -> dict[str, Any]:
        started = time.monotonic()
        with self._lock:  # a hung database holds one checking thread, not one per probe
            if self._pending is None or self._pending.done.is_set():
                self._pending = _Attempt.start(self._select_one)
            attempt = self._pending
        if not attempt.done.wait(self.timeout_s):
            return {"status": DOWN, "error": f"no answer within {self.timeout_s:g} s"}
        if attempt.error is not None:
            log.warning("database not reachable", error=describe(attempt.error))
            return {"status": DOWN, "error": type(attempt.error).__name__}
        return {"status": UP, "ms": round((time.monotonic() - started) * 1000)}

    def _select_one(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def _broker(self) -> dict[str, Any]:
        if self.broker is None:
            return {"status": NOT_CONFIGURED}
        reading = self.broker.read()
        return {"status": UP} if reading.up else {"status": DOWN, "error": reading.error}

    def _adapters(self) -> dict[str, Any]:
        return adapter_states(self.adapters)


def adapter_states(adapters: AdapterHealthSource) -> dict[str, Any]:
    """Each active sector's circuits in this process ("closed", "open", "half_open"): `circuit` for deliveries,
    `query_circuit` for the hall's queries; or `"status": "unbuildable"`, a bundle this process could not build.
    Nothing when the registry cannot be read (it refreshes from the database, which may be down)."""
    try:
        health = adapters.health()
    except Exception as exc:  # noqa: BLE001 - readiness and the overview keep answering
        log.warning("adapter health unavailable", error=describe(exc))
        return {}
    return {sector: ({"version": h["version"], "status": "unbuildable"} if "error" in h
                     else {"version": h["version"], "circuit": h.get("breaker"),
                           "query_circuit": h.get("query_breaker")})
            for sector, h in health.items()}


@dataclass
class _Attempt:
    """A step run on a daemon thread of its own, so a caller can give up waiting (a hung connection)."""

    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    @classmethod
    def start(cls, step: Callable[[], None]) -> _Attempt:
        attempt = cls()

        def run() -> None:
            try:
                step()
            except BaseException as exc:  # noqa: BLE001 - reported to whoever waits
                attempt.error = exc
            finally:
                attempt.done.set()

        threading.Thread(target=run, name="readiness-check", daemon=True).start()
        return attempt


def build_readiness(settings: Settings, engine: Engine, adapters: AdapterHealthSource) -> Readiness:
    """Readiness of a process built from `settings` (the broker probed only when one is configured)."""
    timeout_s, cache_s = settings.probe_timeout_ms / 1000, settings.metrics_cache_ms / 1000
    broker = BrokerProbe(settings.amqp_url, lambda: adapters.sectors, timeout_s, cache_s) \
        if settings.amqp_url else None
    return Readiness(engine, adapters, broker, timeout_s)


# --------------------------------------------------------------------------- GET /readyz


class ReadinessReport(BaseModel):
    status: Literal["ready", "degraded"]
    checks: dict[str, Any]


class NotReady(Problem):
    checks: dict[str, Any]


NOT_READY_DOC: dict[int | str, dict[str, Any]] = {503: {
    "model": NotReady, "description": "数据库或消息代理不可用",
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/NotReady"}}}}}

router = APIRouter(tags=["health"])


@router.get("/readyz", response_model=ReadinessReport, responses=NOT_READY_DOC,
            summary="就绪检查")
def readyz(request: Request) -> Any:
    """能否接活：数据库、消息代理（如已配置）、各部门适配器的熔断器状态逐项列出。
    某个部门的熔断器打开只算降级，仍返回 200；数据库或代理不可用返回 503。不需要 API 密钥。只读。"""
    report: Report = request.app.state.readiness.check()
    if report.ready:  # "ready" or "degraded" (one sector's trouble): the balancer keeps sending work
        return ReadinessReport(status="degraded" if report.status == "degraded" else "ready", checks=report.checks)
    down = ", ".join(name for name in ("database", "broker") if report.checks[name]["status"] == DOWN)
    body = NotReady(type=PROBLEM_TYPE_PREFIX + "not-ready", title="Not ready", status=503,
                    detail=f"down: {down}", instance=request.url.path, checks=report.checks)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503, media_type=PROBLEM_MEDIA_TYPE)
