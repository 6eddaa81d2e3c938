"""Composition root: builds the gateway's parts from settings. Only the CLI, the demo and tests import it."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from adapters import Bundle, RegisteredAdapter, RetryPolicy, build_adapter, use_vault
from adapters.kinds.ferry import use_stations
from certstore import CertStore, CredentialSource, FieldSealer, rewrap_signing_key
from gateway.audit.ledger import Ledger
from gateway.audit.retention import Retention, RetentionPolicy
from gateway.bootstrap.ferry_links import ferry_channels
from gateway.bootstrap.stores import LEDGER_KEY_FILE, build_ledger, open_database, personal_data
from gateway.bootstrap.strict_start import (
    StartRefused,
    bundle_refused,
    refuse_published_bundle_secrets,
    refuse_unsafe_settings,
)
from gateway.cases.service import CaseService
from gateway.catalogue.calendar_file import load_calendar
from gateway.catalogue.matters import Catalogue
from gateway.config import Settings
from gateway.domain.clock import Clock, SystemClock
from gateway.http.callers import ClientCertificates
from gateway.http.docs import install_docs
from gateway.http.errors import install_error_handlers
from gateway.http.middleware import BodyLimit, CorrelationMiddleware
from gateway.http.openapi import active_named_queries, describe_api
from gateway.http.paging import install_paging_error_handlers
from gateway.http.routers import (
    approvals,
    audit,
    cases,
    catalogue,
    certificates,
    identities,
    liveness,
    material_links,
    materials,
    metrics,
    sectors,
    webhooks,
)
from gateway.materials.links import MaterialLinks, MaterialTransport
from gateway.materials.store import MaterialStore
from gateway.notifications.hall import (
    CaseEventFanOut,
    Publisher,
    WebhookFailures,
    WebhookPolicy,
    Webhooks,
    WebhookSender,
)
from gateway.persistence.blind_index import load_or_create_key
from gateway.persistence.ferry_tables import FERRY_TABLES
from gateway.persistence.personal_data import reseal_all
from gateway.persistence.uow import UnitsOfWork
from gateway.sectors.bundle_records import BundleStore
from gateway.sectors.calls import NonceLedger, SectorCalls
from gateway.sectors.delivery import DispatchSettings
from gateway.sectors.ferry import ActiveBundles, NearSide
from gateway.sectors.ferry_channels import FerryChannels
from gateway.sectors.licences import LicenceLookup
from gateway.sectors.live_registry import LiveRegistry
from gateway.security.api_keys import ApiKeyStore
from gateway.security.approvals import Approvals
from gateway.security.certificates import ExpiryWatch, open_cert_store
from gateway.security.rate_limits import rate_limiter
from gateway.security.sessions import ConsoleSessions, SessionPolicy
from gateway.transport.amqp import AmqpTransport, ConfirmedPublisher
from gateway.transport.in_process import Dispatcher
from gateway.transport.scheduler import Job, Scheduler
from ops import api as ops_api
from ops import ferry_api
from ops import readiness as readiness_probe
from ops.console import install_console
from ops.dead_letters import DeadLetterDesk
from ops.gateway_metrics import SectorAnswerMetrics, register_gateway_metrics
from ops.journey import CaseJourney
from ops.overview import Overview
from ops.readiness import Readiness, build_readiness

MATERIALS_PATH = "/v1/materials"
BUNDLES_PATH = "/v1/adapters/bundles"
CALLBACKS_PREFIX = "/callbacks/"


@dataclass
class Gateway:
    """Everything one process needs, built once."""

    settings: Settings
    engine: Engine
    catalogue: Catalogue
    keys: ApiKeyStore
    materials: MaterialStore
    service: CaseService
    bundles: BundleStore
    registry: LiveRegistry
    sector_calls: SectorCalls
    dispatcher: Dispatcher
    material_links: MaterialLinks
    sealer: FieldSealer  # seals personal data at rest (certstore.keyring)
    ledger: Ledger  # the tamper-evident audit and message logs
    certs: CertStore  # keys, certificates and bundle secrets, sealed at rest; the adapters' CredentialSource
    metrics: CollectorRegistry  # served at GET /metrics
    expiry: ExpiryWatch  # certificate expiry warnings, a scheduled job
    scheduler: Scheduler  # leased scheduled jobs: the clock, expiry, the outbox sweep, notifications
    readiness: Readiness  # GET /readyz and the yiwang_ready gauge (ops/readiness.py)
    dead_letters: DeadLetterDesk  # the operators' desk (ops/dead_letters.py): the ops API and the replay-runs job
    ferry: NearSide  # the near side of the ferry: a station per channel, and its job (gateway/sectors/ferry.py)
    ferry_channels: FerryChannels  # the ferry's links as operators see them (gateway/bootstrap/ferry_links.py)
    overview: Overview  # the operators' overview: the console's first page, GET /v1/ops/overview (ops/overview.py)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _transport: AmqpTransport | None = None  # with YIWANG_AMQP_URL: relay, consumers, scheduled jobs

    def start_dispatcher(self) -> None:
        if self.settings.amqp_url:
            self._transport = AmqpTransport(self.settings, self.dispatcher,
                                            lambda: [sector for sector, _, _ in self.bundles.active()])
            self._transport.start()
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.dispatcher.run, args=(self._stop,), name="dispatcher",
                                        daemon=True)
        self._thread.start()

    def stop_dispatcher(self) -> None:
        if self._transport is not None:  # finishes what is in flight, within the lease
            self._transport.stop(timeout=self.settings.lease_ms / 1000)
            self._transport = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def close(self) -> None:
        self.stop_dispatcher()
        self.ledger.close()  # signs the logs' unsigned tails: a clean shutdown leaves nothing to cut off unseen
        self.engine.dispose()


def build_gateway(settings: Settings, clock: Clock | None = None) -> Gateway:
    """Raises `StartRefused` (a ConfigError) in production on a published secret or the development master key."""
    clock = clock or SystemClock()
    if settings.strict:
        refuse_unsafe_settings(settings)  # before anything is made: the development master key file included
    engine = open_database(settings)
    catalogue = Catalogue(engine)
    catalogue.seed_if_empty(settings.catalogue)
    materials = MaterialStore(engine, settings.var_dir / "materials", max_bytes=settings.max_material_bytes)
    sealer = FieldSealer(settings.master_keys(), settings.field_cipher)
    personal = personal_data(settings, sealer)
    links = MaterialLinks(load_or_create_key(settings.var_dir / "material-link.key", settings.material_link_key),
                          settings.public_url, clock, settings.material_link_ttl_s)
    transport = MaterialTransport(materials, links, settings.max_inline_material_bytes)
    bundles = BundleStore(engine, clock)
    certs = open_cert_store(engine, settings, clock)
    use_vault(certs.secret)  # bundles' `vault:NAME` secret references resolve from the store
    if settings.strict:
        try:
            refuse_published_bundle_secrets(bundles)
        except StartRefused:
            engine.dispose()
            raise
    metrics_registry = CollectorRegistry()
    expiry = ExpiryWatch(certs, metrics_registry)
    build = adapter_builder(settings, credentials=certs)  # bundles' cert:NAME references resolve from the store
    registry = LiveRegistry(bundles, settings.var_dir / "bundle-cache", build,
                            refresh_s=settings.registry_refresh_ms / 1000)
    readiness = build_readiness(settings, engine, registry)
    answers = SectorAnswerMetrics(lambda: registry.sectors)
    metrics_registry.register(answers)
    units = UnitsOfWork(engine, personal, subscribers=registry.subscribers)
    service = CaseService(units, catalogue, load_calendar(settings.calendar), clock,
                          material_exists=materials.missing, warn_days=settings.warn_days,
                          supplement_days=settings.supplement_days, router=registry.route, answer_observer=answers)
    dispatch = DispatchSettings(
        lease=timedelta(milliseconds=settings.lease_ms),
        idle=timedelta(milliseconds=settings.dispatch_idle_ms),
        poll_interval=timedelta(milliseconds=settings.poll_interval_ms) if settings.poll_interval_ms else None,
        unsafe_fresh_keys=settings.unsafe_fresh_idempotency_keys,
        concurrency=settings.worker_concurrency,
    )
    ledger = build_ledger(settings, engine, sealer, clock)
    ledger.start()
    calls = SectorCalls(registry, bundles, service, build, NonceLedger(engine, clock), messages=ledger,
                        rehearsal_build=adapter_builder(settings, credentials=certs, environment="test"))
    service.licences = LicenceLookup(calls)  # the hall's cited licences are confirmed through the named query
    desk = dead_letter_desk(units, clock)
    near = NearSide(engine, FERRY_TABLES, certs, service, ActiveBundles(lambda: registry.sectors,
                                                                        lambda sector: registry.get(sector).bundle),
                    settings.ferry_folder, clock)
    use_stations(near.station, clock=clock.now)  # ferry bundles' adapters send through the gateway's stations
    ferry_links = ferry_channels(near)
    deliveries = register_gateway_metrics(metrics_registry, engine=engine, clock=clock, adapters=registry,
                                          certs=certs, readiness=readiness,
                                          cache_s=settings.metrics_cache_ms / 1000, ferry=ferry_links)
    scheduler = Scheduler(engine, clock, [*scheduled_jobs(settings, engine, service, expiry, clock, sealer, desk),
                                          retention_job(settings, engine, ledger, clock),
                                          Job("ferry", timedelta(milliseconds=settings.ferry_interval_ms), near.run)],
                          lease=timedelta(milliseconds=settings.job_lease_ms))
    return Gateway(settings, engine, catalogue, ApiKeyStore(engine), materials, service, bundles, registry, calls,
                   Dispatcher(service, registry, dispatch, transport, messages=ledger, scheduler=scheduler,
                              observer=deliveries),
                   links, sealer, ledger, certs=certs, metrics=metrics_registry, expiry=expiry, scheduler=scheduler,
                   readiness=readiness, dead_letters=desk, ferry=near, ferry_channels=ferry_links,
                   overview=Overview(engine=engine, clock=clock, desk=desk, bundles=bundles, adapters=registry,
                                     certs=certs, ferry=ferry_links, broker=readiness.broker))


def dead_letter_desk(units: UnitsOfWork, clock: Clock) -> DeadLetterDesk:
    """The operators' dead-letter desk over one database: one per gateway, and one for a `yiwang ops` command,
    which runs no gateway."""
    return DeadLetterDesk(units, clock)


def scheduled_jobs(settings: Settings, engine: Engine, service: CaseService, expiry: ExpiryWatch,
                   clock: Clock, sealer: FieldSealer, desk: DeadLetterDesk) -> list[Job]:
    """The work that runs once per interval across every process (gateway/transport/scheduler.py)."""
    every_tick = timedelta(milliseconds=settings.clock_interval_ms)
    jobs = [Job("deadline-clock", every_tick, service.tick),
            Job("certificate-expiry", every_tick, expiry.check),
            # bulk replays whose starter died (or that the API started) go on, a few batches a tick
            Job("replay-runs", every_tick, desk.resume_unfinished),
            Job("dead-letter-causes", every_tick, desk.fill_causes)]  # letters sealed before causes existed
    every_notify = timedelta(milliseconds=settings.notify_interval_ms)  # the hall's notifications
    fan_out = CaseEventFanOut(engine, clock, case_event_publisher(settings))
    jobs += [Job("case-notifications", every_notify, fan_out.run),
             Job("webhooks", every_notify, WebhookSender(engine, sealer, clock, webhook_policy(settings)).run)]
    if settings.amqp_url:
        requeue_after = timedelta(milliseconds=settings.outbox_requeue_after_ms)
        jobs.append(Job("outbox-sweep", timedelta(milliseconds=settings.outbox_sweep_ms),
                        lambda: sweep_outbox(service.units, clock, requeue_after)))
    return jobs


def retention_job(settings: Settings, engine: Engine, ledger: Ledger, clock: Clock) -> Job:
    """Message bodies, sent notifications and the logs' old records purged (or archived first) as the
    retention settings say (gateway/audit/retention.py)."""
    return Job("retention", timedelta(milliseconds=settings.retention_interval_ms),
               retention(settings, engine, ledger, clock).run)


def retention(settings: Settings, engine: Engine, ledger: Ledger, clock: Clock) -> Retention:
    """The retention purge the settings describe: the scheduled job's, and `yiwang audit retention`'s."""
    policy = RetentionPolicy(settings.retention_days, settings.audit_retention_days, settings.retention_archive_dir)
    return Retention(engine, ledger, clock, policy)


def webhook_policy(settings: Settings) -> WebhookPolicy:
    return WebhookPolicy(timedelta(milliseconds=settings.webhook_timeout_ms), settings.webhook_max_attempts,
                         timedelta(milliseconds=settings.webhook_backoff_ms), settings.webhook_insecure_hosts)


def case_event_publisher(settings: Settings) -> Callable[[], Publisher] | None:
    """How case events reach the topic exchange: a confirmed publisher, built on first use in the job's
    thread (pika: one connection per thread); None without a broker."""
    url = settings.amqp_url
    if not url:
        return None
    return lambda: ConfirmedPublisher(url, settings.amqp_heartbeat_s, name="yiwang case events")


def sweep_outbox(units: UnitsOfWork, clock: Clock, requeue_after: timedelta) -> int:
    """Messages queued long ago and never settled (a broker that lost them) are published again."""
    now = clock.now()
    with units() as uow:
        count = uow.outbox.requeue_stale(now - requeue_after, now)
        uow.commit()
    return count


def rewrap_beyond_the_store(settings: Settings, progress: Callable[[int], None] | None = None) -> str:
    """After a master-key rotation, what the certificate store does not hold: personal data in rows is
    re-sealed (`progress` told how many rows were read) and the logs' signing key re-wrapped under the
    current master key."""
    engine = open_database(settings)
    try:
        rows = reseal_all(engine, FieldSealer(settings.master_keys(), settings.field_cipher), progress)
    finally:
        engine.dispose()
    signing_key = rewrap_signing_key(settings.var_dir / LEDGER_KEY_FILE, settings.master_keys())
    return f"re-sealed personal data in {rows} row(s)" + ("; re-wrapped the logs' signing key" if signing_key else "")


def adapter_builder(settings: Settings, credentials: CredentialSource | None = None, environment: str | None = None
                    ) -> Callable[[Bundle], RegisteredAdapter]:
    """How this deployment builds a bundle's adapter: its environment's endpoint (or an override), its
    certificates (mTLS, signatures) from `credentials`; in production never one with a published secret.
    `environment`: another of the bundles' endpoints than the deployment's (rehearsals: always `test`); the
    deployment's endpoint overrides then apply only if they are for that environment too."""
    retry = _retry_override(settings)
    overrides = settings.sector_endpoints if environment in (None, settings.environment) else {}

    def build(bundle: Bundle) -> RegisteredAdapter:
        refused = bundle_refused(bundle) if settings.strict else None  # a version activated after the start
        if refused is not None:
            raise refused
        return build_adapter(bundle, environment=environment or settings.environment,
                             endpoint=overrides.get(bundle.sector), retry_override=retry,
                             credentials=credentials)

    return build


def _retry_override(settings: Settings) -> RetryPolicy | None:
    if settings.retry_attempts is None:
        return None
    return RetryPolicy(settings.retry_attempts, settings.retry_initial_ms or 10, settings.retry_max_ms or 100)


# The API, area by area, in the order /openapi.json lists them. A new area is a module in gateway/http/routers/
# and a line here (and one in PROBLEM_TABLES if it answers problems of its own).
ROUTERS: tuple[APIRouter, ...] = (
    liveness.router,
    readiness_probe.router,
    catalogue.router,
    cases.router,
    materials.router,
    sectors.router,
    sectors.callbacks,
    material_links.router,
    identities.router,
    approvals.router,
    audit.router,
    certificates.router,
    webhooks.router,
    ops_api.router,
    ferry_api.router,
    metrics.router,
)
# Each area's exceptions as problem+json; `install_error_handlers` is the app-wide table (and the cases').
PROBLEM_TABLES: tuple[Callable[[FastAPI], None], ...] = (
    install_error_handlers,
    install_paging_error_handlers,
    catalogue.install_catalogue_error_handlers,
    materials.install_material_error_handlers,
    sectors.install_adapter_error_handlers,
    material_links.install_material_link_error_handlers,
    identities.install_access_error_handlers,
    approvals.install_approval_error_handlers,
    audit.install_audit_error_handlers,
    certificates.install_cert_error_handlers,
    webhooks.install_webhook_error_handlers,
    ops_api.install_ops_error_handlers,
    ferry_api.install_ferry_error_handlers,
)


API_DESCRIPTION = """一网（Yiwang）网关的统一接口：事项目录、办件全流程（申请、受理、补正、办结、送达、评价）、\
申请材料、部门同步查询，以及部门、运维、审计与安全管理。

- 认证：点 **Authorize**，在 `apiKey` 中填入 API 密钥（不带 `Bearer ` 前缀），之后"Try it out"的调用都会带上
  `Authorization: Bearer <key>`；接入客户端证书的调用方由 TLS 终结代理认出，无需填写。
- 出错时一律返回 `application/problem+json`（RFC 9457）：`type` 是稳定的英文标识，`title`、`detail` 为中文。
- 提交类操作接受 `Idempotency-Key` 头：同一键重试得到同一结果，不会重复办理。
- 同步查询（`POST /v1/queries/{name}`）的名称与参数随已启用的适配包而定，见 "named queries" 分组。
"""


def console_sessions(gateway: Gateway) -> ConsoleSessions:
    """The operators' console's sessions and sign-in lockout, as the settings say (ops/console)."""
    s = gateway.settings
    policy = SessionPolicy(idle=timedelta(milliseconds=s.console_idle_ms),
                           absolute=timedelta(milliseconds=s.console_session_ms),
                           max_failures=s.console_lockout_failures,
                           lockout=timedelta(milliseconds=s.console_lockout_ms))
    return ConsoleSessions(gateway.engine, gateway.service.clock, policy)


def create_app(gateway: Gateway, close_gateway: bool = False) -> FastAPI:
    """`close_gateway`: the app owns its gateway and closes it when it stops (each process of `yiwang serve
    --workers N`, where no caller outlives the app to do it); otherwise the caller closes it."""
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if gateway.settings.dispatch_in_process:
            gateway.start_dispatcher()
        yield
        if close_gateway:
            gateway.close()  # stops the dispatcher, signs the logs' tails, disposes of the engine
        else:
            gateway.stop_dispatcher()

    # FastAPI's own /docs and /redoc load their scripts from a CDN: ours, and /openapi.json, are served by
    # gateway/http/docs.py.
    app = FastAPI(title="Yiwang gateway", version="0.2.0", lifespan=lifespan, description=API_DESCRIPTION,
                  openapi_url=None, docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None)
    app.state.case_service = gateway.service
    app.state.catalogue = gateway.catalogue
    app.state.keystore = gateway.keys
    app.state.materials = gateway.materials
    app.state.bundles = gateway.bundles
    app.state.registry = gateway.registry
    app.state.sector_calls = gateway.sector_calls
    app.state.material_links = gateway.material_links
    app.state.ledger = gateway.ledger
    app.state.certs = gateway.certs
    app.state.metrics = gateway.metrics
    app.state.readiness = gateway.readiness
    app.state.approvals = Approvals(gateway.engine, gateway.service.clock)
    app.state.webhooks = Webhooks(gateway.engine, gateway.sealer, gateway.service.clock,
                                  gateway.settings.webhook_insecure_hosts)
    app.state.dead_letter_desk = gateway.dead_letters
    app.state.case_journeys = CaseJourney(gateway.dead_letters.units, gateway.ledger)
    app.state.ferry_channels = gateway.ferry_channels
    app.state.overview = gateway.overview
    app.state.clock = gateway.service.clock
    app.state.webhook_failures = WebhookFailures(gateway.engine, gateway.service.clock)
    app.state.four_eyes = gateway.settings.four_eyes
    app.state.client_certificates = (
        ClientCertificates(gateway.settings.client_cert_header, gateway.settings.client_cert_proxies)
        if gateway.settings.client_cert_header else None)
    app.state.rate_limiter = rate_limiter(gateway.settings.rate_limit_per_s, gateway.settings.rate_limit_burst)
    for router in ROUTERS:
        app.include_router(router)
    for install in PROBLEM_TABLES:
        install(app)
    install_console(app, sessions=console_sessions(gateway), tls_proxies=gateway.settings.tls_proxies)
    install_docs(app)
    describe_api(app, active_named_queries(gateway.registry))  # security, refusals, the named queries of today
    # Uploads and bundles stream with limits of their own; callbacks are capped where they are read.
    app.add_middleware(BodyLimit, max_bytes=gateway.settings.max_body_bytes,
                       exempt=frozenset({MATERIALS_PATH, BUNDLES_PATH}))
    app.add_middleware(audit.AuditTrail, ledger=gateway.ledger)  # outermost: refused bodies are audited too
    app.add_middleware(CorrelationMiddleware)  # around everything: each log line of a request carries its id
    return app
