"""Settings, read once from the environment. Every name is documented in the README."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from certstore import CIPHERS, DIGESTS, MasterKeyError, MasterKeys

DATA = Path(__file__).parent / "data"  # what ships with the gateway
DEFAULT_CATALOGUE = DATA / "catalogue.yaml"
DEFAULT_CALENDAR = DATA / "calendar.yaml"


class ConfigError(ValueError):
    pass


PRODUCTION = "production"  # YIWANG_ENVIRONMENT: also makes every start strict (gateway/bootstrap/strict_start.py)


@dataclass(frozen=True)
class Settings:
    var_dir: Path = Path("var")
    database_url: str | None = None  # default: SQLite under var_dir
    db_pool_size: int = 20  # database connections each process keeps open (and up to 10 more when busier)
    catalogue: Path = DEFAULT_CATALOGUE
    calendar: Path = DEFAULT_CALENDAR
    environment: str = "test"  # which of a bundle's endpoints to call; "production" also makes a start strict
    sector_endpoints: Mapping[str, str] = field(default_factory=dict)  # sector -> URL, overriding bundles'
    registry_refresh_ms: int = 2000  # an activation reaches every process within this of its next use
    dispatch_in_process: bool = True  # `yiwang serve` also runs a dispatcher thread
    api_workers: int = 1  # `yiwang serve`'s API processes on its one port (`--workers` wins)
    max_body_bytes: int = 1024 * 1024
    max_material_bytes: int = 20 * 1024 * 1024
    blind_index_key: str | None = None  # hex; default: a key file created under var_dir
    public_url: str = "http://127.0.0.1:8000"  # how sectors reach this gateway (signed material links)
    material_link_key: str | None = None  # hex; default: a key file created under var_dir
    material_link_ttl_s: int = 3600  # how long a signed material link stays valid
    max_inline_material_bytes: int = 10 * 1024 * 1024  # inline_base64: the files of one message, together
    warn_days: int = 2  # e-supervision warns this many working days before a deadline
    supplement_days: int = 30  # an unanswered supplement notice ends the case after this many days
    clock_interval_ms: int = 60_000  # how often a dispatcher runs the deadline clock
    job_lease_ms: int = 15_000  # a scheduled job's lease, renewed while it runs (gateway/transport/scheduler.py)
    lease_ms: int = 60_000
    poll_interval_ms: int | None = None  # overrides the bundles' polling interval
    retry_attempts: int | None = None  # override the bundles' retry policy (tests, demo)
    retry_initial_ms: int | None = None
    retry_max_ms: int | None = None
    log_level: str = "info"
    log_format: str = "console"  # or "json"
    four_eyes: bool = False  # activating a bundle or publishing a guide waits for a second identity
    rate_limit_per_s: float | None = None  # per identity, in each process; None: no limit
    rate_limit_burst: int | None = None  # default: twice the rate
    client_cert_header: str | None = None  # mTLS via a TLS terminator: the header carrying the escaped PEM
    client_cert_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})  # whose header is believed
    master_key: str | None = field(default=None, repr=False)  # `id:base64,...`, first current; see certstore/keyring
    master_key_file: Path | None = None  # the same, one per line; default: a development key under var_dir
    field_cipher: str = "aes-256-gcm"  # or "sm4-gcm": how personal data is sealed at rest
    digest: str = "sha256"  # or "sm3": hash chains of the audit and message logs
    cert_overlap_days: float = 7  # a rotated-out certificate stays trusted this long (certstore.store)
    cert_refresh_ms: int = 2000  # a certificate rotation reaches every process within this of its next use
    checkpoint_every: int = 1000  # the audit and message logs sign their chains' heads every this many records
    checkpoint_ms: int = 60_000  # ... and at least this often while records come
    # Notifications to the hall (gateway/notifications/hall.py): the AMQP topic and webhooks
    notify_interval_ms: int = 500  # how often case events are fanned out and due webhooks sent
    webhook_timeout_ms: int = 5000  # one webhook request, connect to answer
    webhook_max_attempts: int = 10  # then the delivery is failed and the case's next events go on
    webhook_backoff_ms: int = 1000  # the first retry's delay; doubled each attempt, capped, with jitter
    webhook_insecure_hosts: frozenset[str] = frozenset()  # hosts allowed over http and on private addresses
    # Guaranteed delivery over RabbitMQ (gateway/transport/amqp.py); None: the in-process transport
    amqp_url: str | None = field(default=None, repr=False)
    amqp_prefetch: int = 20  # messages a worker holds unacknowledged per queue
    amqp_heartbeat_s: int = 30
    worker_concurrency: int = 8  # sector calls in flight in one worker
    delivery_limit: int = 20  # broker redeliveries of one message before its dead-letter exchange takes it
    dispatch_idle_ms: int = 200  # how long a dispatcher or the outbox relay sleeps when nothing is due
    outbox_sweep_ms: int = 60_000  # how often queued messages the broker may have lost are looked for
    outbox_requeue_after_ms: int = 600_000  # queued this long and not settled: published again
    unsafe_fresh_idempotency_keys: bool = False  # the fault tests' negative control; never in production
    # Retention (gateway/audit/retention.py): how long message bodies, notifications and logs are kept
    retention_days: int = 180  # then settled messages' bodies are purged and sent notifications deleted
    audit_retention_days: int = 0  # audit log records; 0: kept for ever
    retention_archive_dir: Path | None = None  # purged data appended here first (bodies still sealed)
    retention_interval_ms: int = 3_600_000
    log_file: Path | None = None  # None: logs go to stderr
    log_retention_days: int = 30  # rotated log files kept (with log_file)
    # Observability (ops/gateway_metrics.py, ops/readiness.py)
    metrics_cache_ms: int = 5000  # gauges read from the database or the broker are reused this long
    probe_timeout_ms: int = 2000  # /readyz and the queue gauges: the longest wait for the database or broker
    metrics_port: int = 0  # `yiwang worker` serves /metrics on this port; 0: not at all
    metrics_host: str = "127.0.0.1"  # ... bound to this address

    @property
    def strict(self) -> bool:
        """Refuse to start on a published secret or the development master key (gateway/bootstrap/strict_start.py)."""
        return self.environment == PRODUCTION

    def master_keys(self) -> MasterKeys:
        env = {"YIWANG_MASTER_KEY": self.master_key or "",
               "YIWANG_MASTER_KEY_FILE": str(self.master_key_file) if self.master_key_file else ""}
        try:
            return MasterKeys.from_env(env, self.var_dir)
        except (MasterKeyError, OSError) as exc:
            raise ConfigError(f"YIWANG_MASTER_KEY / YIWANG_MASTER_KEY_FILE: {exc}") from exc

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'yiwang.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        get = env.get
        try:
            return cls(
                var_dir=Path(get("YIWANG_VAR_DIR", "var")),
                database_url=get("YIWANG_DATABASE_URL") or None,
                db_pool_size=_positive("YIWANG_DB_POOL_SIZE", get("YIWANG_DB_POOL_SIZE", "20")),
                catalogue=Path(get("YIWANG_CATALOGUE", str(DEFAULT_CATALOGUE))),
                calendar=Path(get("YIWANG_CALENDAR", str(DEFAULT_CALENDAR))),
                environment=get("YIWANG_ENVIRONMENT", "test"),
                registry_refresh_ms=int(get("YIWANG_REGISTRY_REFRESH_MS", "2000")),
                sector_endpoints=parse_endpoints(get("YIWANG_SECTOR_ENDPOINTS", "")),
                dispatch_in_process=get("YIWANG_DISPATCH", "in-process") == "in-process",
                api_workers=_positive("YIWANG_API_WORKERS", get("YIWANG_API_WORKERS", "1")),
                max_body_bytes=int(get("YIWANG_MAX_BODY_BYTES", str(1024 * 1024))),
                max_material_bytes=int(get("YIWANG_MAX_MATERIAL_BYTES", str(20 * 1024 * 1024))),
                blind_index_key=get("YIWANG_BLIND_INDEX_KEY") or None,
                public_url=_url("YIWANG_PUBLIC_URL", get("YIWANG_PUBLIC_URL") or "http://127.0.0.1:8000"),
                material_link_key=get("YIWANG_MATERIAL_LINK_KEY") or None,
                material_link_ttl_s=_positive("YIWANG_MATERIAL_LINK_TTL_S", get("YIWANG_MATERIAL_LINK_TTL_S", "3600")),
                max_inline_material_bytes=_positive("YIWANG_MAX_INLINE_MATERIAL_BYTES",
                                                    get("YIWANG_MAX_INLINE_MATERIAL_BYTES", str(10 * 1024 * 1024))),
                warn_days=int(get("YIWANG_WARN_DAYS", "2")),
                supplement_days=int(get("YIWANG_SUPPLEMENT_DAYS", "30")),
                clock_interval_ms=int(get("YIWANG_CLOCK_INTERVAL_MS", "60000")),
                job_lease_ms=_positive("YIWANG_JOB_LEASE_MS", get("YIWANG_JOB_LEASE_MS", "15000")),
                lease_ms=int(get("YIWANG_LEASE_MS", "60000")),
                poll_interval_ms=_optional_int(get("YIWANG_POLL_INTERVAL_MS")),
                retry_attempts=_optional_int(get("YIWANG_RETRY_ATTEMPTS")),
                retry_initial_ms=_optional_int(get("YIWANG_RETRY_INITIAL_MS")),
                retry_max_ms=_optional_int(get("YIWANG_RETRY_MAX_MS")),
                log_level=_choice("YIWANG_LOG_LEVEL", get("YIWANG_LOG_LEVEL", "info").lower(),
                                  ("debug", "info", "warning", "error")),
                log_format=_choice("YIWANG_LOG_FORMAT", get("YIWANG_LOG_FORMAT", "console"), ("console", "json")),
                client_cert_header=get("YIWANG_CLIENT_CERT_HEADER") or None,
                client_cert_proxies=frozenset(p.strip() for p in get("YIWANG_CLIENT_CERT_PROXIES",
                                                                     "127.0.0.1,::1").split(",") if p.strip()),
                four_eyes=_choice("YIWANG_FOUR_EYES", get("YIWANG_FOUR_EYES", "0"), ("0", "1")) == "1",
                rate_limit_per_s=_optional_positive_float("YIWANG_RATE_LIMIT_PER_S", get("YIWANG_RATE_LIMIT_PER_S")),
                rate_limit_burst=(_positive("YIWANG_RATE_LIMIT_BURST", burst)
                                  if (burst := get("YIWANG_RATE_LIMIT_BURST")) else None),
                master_key=get("YIWANG_MASTER_KEY") or None,
                master_key_file=Path(key_file) if (key_file := get("YIWANG_MASTER_KEY_FILE")) else None,
                field_cipher=_choice("YIWANG_FIELD_CIPHER", get("YIWANG_FIELD_CIPHER", "aes-256-gcm"),
                                     tuple(CIPHERS)),
                digest=_choice("YIWANG_DIGEST", get("YIWANG_DIGEST", "sha256"), tuple(DIGESTS)),
                cert_overlap_days=float(get("YIWANG_CERT_OVERLAP_DAYS", "7")),
                cert_refresh_ms=int(get("YIWANG_CERT_REFRESH_MS", "2000")),
                checkpoint_every=_positive("YIWANG_CHECKPOINT_EVERY", get("YIWANG_CHECKPOINT_EVERY", "1000")),
                checkpoint_ms=_positive("YIWANG_CHECKPOINT_MS", get("YIWANG_CHECKPOINT_MS", "60000")),
                notify_interval_ms=_positive("YIWANG_NOTIFY_INTERVAL_MS", get("YIWANG_NOTIFY_INTERVAL_MS", "500")),
                webhook_timeout_ms=_positive("YIWANG_WEBHOOK_TIMEOUT_MS", get("YIWANG_WEBHOOK_TIMEOUT_MS", "5000")),
                webhook_max_attempts=_positive("YIWANG_WEBHOOK_MAX_ATTEMPTS", get("YIWANG_WEBHOOK_MAX_ATTEMPTS", "10")),
                webhook_backoff_ms=_positive("YIWANG_WEBHOOK_BACKOFF_MS", get("YIWANG_WEBHOOK_BACKOFF_MS", "1000")),
                webhook_insecure_hosts=frozenset(h.strip().lower() for h in get("YIWANG_WEBHOOK_INSECURE_HOSTS",
                                                                                "").split(",") if h.strip()),
                amqp_url=_amqp_url(get("YIWANG_AMQP_URL") or None),
                amqp_prefetch=_positive("YIWANG_AMQP_PREFETCH", get("YIWANG_AMQP_PREFETCH", "20")),
                amqp_heartbeat_s=_positive("YIWANG_AMQP_HEARTBEAT_S", get("YIWANG_AMQP_HEARTBEAT_S", "30")),
                worker_concurrency=_positive("YIWANG_WORKER_CONCURRENCY", get("YIWANG_WORKER_CONCURRENCY", "8")),
                delivery_limit=_positive("YIWANG_DELIVERY_LIMIT", get("YIWANG_DELIVERY_LIMIT", "20")),
                dispatch_idle_ms=_positive("YIWANG_DISPATCH_IDLE_MS", get("YIWANG_DISPATCH_IDLE_MS", "200")),
                outbox_sweep_ms=_positive("YIWANG_OUTBOX_SWEEP_MS", get("YIWANG_OUTBOX_SWEEP_MS", "60000")),
                outbox_requeue_after_ms=_positive("YIWANG_OUTBOX_REQUEUE_AFTER_MS",
                                                  get("YIWANG_OUTBOX_REQUEUE_AFTER_MS", "600000")),
                unsafe_fresh_idempotency_keys=_choice(
                    "YIWANG_UNSAFE_FRESH_IDEMPOTENCY_KEYS", get("YIWANG_UNSAFE_FRESH_IDEMPOTENCY_KEYS", "0"),
                    ("0", "1")) == "1",
                retention_days=_positive("YIWANG_RETENTION_DAYS", get("YIWANG_RETENTION_DAYS", "180")),
                audit_retention_days=_not_negative("YIWANG_AUDIT_RETENTION_DAYS",
                                                   get("YIWANG_AUDIT_RETENTION_DAYS", "0")),
                retention_archive_dir=Path(archive) if (archive := get("YIWANG_RETENTION_ARCHIVE_DIR")) else None,
                retention_interval_ms=_positive("YIWANG_RETENTION_INTERVAL_MS",
                                                get("YIWANG_RETENTION_INTERVAL_MS", "3600000")),
                log_file=Path(log_file) if (log_file := get("YIWANG_LOG_FILE")) else None,
                log_retention_days=_positive("YIWANG_LOG_RETENTION_DAYS", get("YIWANG_LOG_RETENTION_DAYS", "30")),
                metrics_cache_ms=_at_least_zero("YIWANG_METRICS_CACHE_MS", get("YIWANG_METRICS_CACHE_MS", "5000")),
                probe_timeout_ms=_positive("YIWANG_PROBE_TIMEOUT_MS", get("YIWANG_PROBE_TIMEOUT_MS", "2000")),
                metrics_port=_port("YIWANG_METRICS_PORT", get("YIWANG_METRICS_PORT", "0")),
                metrics_host=get("YIWANG_METRICS_HOST") or "127.0.0.1",
            )
        except ValueError as exc:
            raise ConfigError(f"invalid setting: {exc}") from exc


def parse_endpoints(text: str) -> dict[str, str]:
    """`social_security=http://127.0.0.1:8801/shebao/case,other=...` → {sector: url}."""
    endpoints: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        sector, sep, url = item.partition("=")
        if not sep or not sector or not url:
            raise ConfigError(f"YIWANG_SECTOR_ENDPOINTS: expected sector=url, got {item!r}")
        endpoints[sector.strip()] = url.strip()
    return endpoints


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _amqp_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("amqp://", "amqps://")):
        raise ConfigError(f"YIWANG_AMQP_URL must be an amqp:// or amqps:// URL, not {value.split('@')[-1]!r}")
    return value


def _optional_int(value: str | None) -> int | None:
    return int(value) if value else None


def _url(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


def _optional_positive_float(name: str, value: str | None) -> float | None:
    if not value:
        return None
    number = float(value)
    if not number > 0:  # also refuses nan
        raise ConfigError(f"{name} must be a positive number, not {value!r}")
    return number


def _positive(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:  # int()'s own message would not name the setting
        number = 0
    if number <= 0:
        raise ConfigError(f"{name} must be a positive number, not {value!r}")
    return number


def _not_negative(name: str, value: str) -> int:
    number = int(value)
    if number < 0:
        raise ConfigError(f"{name} must be 0 or a positive number, not {value!r}")
    return number


def _at_least_zero(name: str, value: str) -> int:
    number = int(value)
    if number < 0:
        raise ConfigError(f"{name} must be 0 or more, not {value!r}")
    return number


def _port(name: str, value: str) -> int:
    number = _at_least_zero(name, value)
    if number > 65535:
        raise ConfigError(f"{name} must be a TCP port (0 for none), not {value!r}")
    return number
