"""Composition root: builds the gateway's parts from settings. Only the CLI and tests import it."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import Engine

from adapters.registry import Registry, default_bundles_dir
from adapters.resilience import RetryPolicy
from gateway.api import BodyLimit, install_error_handlers, router
from gateway.calendar_file import load_calendar
from gateway.catalogue import load_catalogue
from gateway.config import Settings
from gateway.dispatch import Dispatcher, DispatchSettings
from gateway.domain.clock import Clock, SystemClock
from gateway.persistence.engine import make_engine
from gateway.persistence.uow import create_schema
from gateway.services import CaseService


@dataclass
class Gateway:
    """Everything one process needs, built once."""

    settings: Settings
    engine: Engine
    service: CaseService
    registry: Registry
    dispatcher: Dispatcher
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_dispatcher(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.dispatcher.run, args=(self._stop,), name="dispatcher",
                                        daemon=True)
        self._thread.start()

    def stop_dispatcher(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def close(self) -> None:
        self.stop_dispatcher()
        self.engine.dispose()


def build_gateway(settings: Settings, clock: Clock | None = None) -> Gateway:
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    create_schema(engine)
    service = CaseService(engine, load_catalogue(settings.catalogue), load_calendar(settings.calendar),
                          clock or SystemClock())
    registry = Registry.load(settings.bundles_dir or default_bundles_dir(), settings.sector_endpoints,
                             _retry_override(settings))
    dispatch = DispatchSettings(
        lease=timedelta(milliseconds=settings.lease_ms),
        poll_interval=timedelta(milliseconds=settings.poll_interval_ms) if settings.poll_interval_ms else None,
    )
    return Gateway(settings, engine, service, registry, Dispatcher(service, registry, dispatch))


def _retry_override(settings: Settings) -> RetryPolicy | None:
    if settings.retry_attempts is None:
        return None
    return RetryPolicy(settings.retry_attempts, settings.retry_initial_ms or 10, settings.retry_max_ms or 100)


def create_app(gateway: Gateway) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if gateway.settings.dispatch_in_process:
            gateway.start_dispatcher()
        yield
        gateway.stop_dispatcher()

    app = FastAPI(title="Yiwang gateway", version="0.1.0", lifespan=lifespan,
                  description="Unified endpoints of the online hall: matters, cases and their timelines.")
    app.state.case_service = gateway.service
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=gateway.settings.max_body_bytes)
    return app
