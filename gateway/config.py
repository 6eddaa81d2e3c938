"""Settings, read once from the environment. Every name is documented in docs/configuration.md.

Each setting is declared once, as a field of `Settings`: its variable, default, parser and what it is for
(`setting(...)`); `Settings.from_env` is derived from those declarations, and a test holds docs/configuration.md's
settings table to them. May import certstore's public API (algorithm names, keyring); nothing of the gateway.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, cast

from certstore import CIPHERS, DIGESTS, MasterKeyError, MasterKeys

DATA = Path(__file__).parent / "data"  # what ships with the gateway
DEFAULT_CATALOGUE = DATA / "catalogue.yaml"
DEFAULT_CALENDAR = DATA / "calendar.yaml"


class ConfigError(ValueError):
    pass


PRODUCTION = "production"  # YIWANG_ENVIRONMENT: also makes every start strict (gateway/bootstrap/strict_start.py)

T = TypeVar("T")
Parse = Callable[[str, str], Any]  # (variable name, its text) -> the value; raises ValueError naming the variable


@dataclass(frozen=True)
class Setting:
    """How one field of `Settings` is read: from `env`, by `parse`. A blank variable is unset (the default
    applies) when `blank_is_unset`, and otherwise parsed like any text (so a blank number is refused)."""

    env: str
    parse: Parse
    doc: str
    blank_is_unset: bool


_SETTING = "setting"  # the key of a field's metadata that holds its `Setting`


def setting(env: str, default: T, parse: Parse, doc: str, *, blank_is_unset: bool | None = None,
            secret: bool = False) -> T:
    """Declare one field of `Settings`. `blank_is_unset` defaults to whether the default is None."""
    declared = Setting(env, parse, doc, default is None if blank_is_unset is None else blank_is_unset)
    metadata = {_SETTING: declared}
    if isinstance(default, dict):  # a mutable default: each Settings gets its own
        return cast(T, field(default_factory=lambda: dict(default), repr=not secret, metadata=metadata))
    return field(default=default, repr=not secret, metadata=metadata)


def _text(name: str, value: str) -> str:
    return value


def _int(name: str, value: str) -> int:
    return int(value)


def _float(name: str, value: str) -> float:
    return float(value)


def _path(name: str, value: str) -> Path:
    return Path(value)


def _switch(name: str, value: str) -> bool:
    return _choice(name, value, ("0", "1")) == "1"


def _names(name: str, value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _hosts(name: str, value: str) -> frozenset[str]:
    return frozenset(host.lower() for host in _names(name, value))


def _endpoints(name: str, value: str) -> dict[str, str]:
    return parse_endpoints(value)  # its errors name YIWANG_SECTOR_ENDPOINTS themselves


def _in_process(name: str, value: str) -> bool:
    return value == "in-process"  # anything else (`off`): `yiwang serve` only accepts


def _log_level(name: str, value: str) -> str:
    return _choice(name, value.lower(), ("debug", "info", "warning", "error"))


def _one_of(*allowed: str) -> Parse:
    return lambda name, value: _choice(name, value, allowed)


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


def _amqp_url(name: str, value: str) -> str:
    if not value.startswith(("amqp://", "amqps://")):
        raise ConfigError(f"{name} must be an amqp:// or amqps:// URL, not {value.split('@')[-1]!r}")
    return value


def _url(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


def _positive_float(name: str, value: str) -> float:
    number = float(value)
    if not number > 0:  # also refuses nan
        raise ConfigError(f"{name} must be a positive number, not {value!r}")
    return number


def _whole(name: str, value: str) -> int:
    """0, 1, 2, ...: a count that may be none."""
    if not value.isascii() or not value.isdigit():
        raise ConfigError(f"{name} must be a whole number (0 or more), not {value!r}")
    return int(value)


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


@dataclass(frozen=True)
class Settings:
    """Every field is one `setting(...)`; tests build Settings with keyword arguments, the rest `from_env`."""

    var_dir: Path = setting("YIWANG_VAR_DIR", Path("var"), _path, "where the embedded default keeps its files")
    database_url: str | None = setting("YIWANG_DATABASE_URL", None, _text, "default: SQLite under var_dir")
    db_pool_size: int = setting("YIWANG_DB_POOL_SIZE", 20, _positive,
                                "database connections each process keeps open (and up to "
                                "YIWANG_DB_MAX_OVERFLOW more when busier)")
    db_max_overflow: int = setting("YIWANG_DB_MAX_OVERFLOW", 10, _whole,
                                   "connections a process may open beyond the pool when busier")
    catalogue: Path = setting("YIWANG_CATALOGUE", DEFAULT_CATALOGUE, _path, "the matter catalogue file")
    calendar: Path = setting("YIWANG_CALENDAR", DEFAULT_CALENDAR, _path, "the working-day calendar file")
    environment: str = setting("YIWANG_ENVIRONMENT", "test", _text, "which of a bundle's endpoints to call; "
                               '"production" also makes a start strict')
    sector_endpoints: Mapping[str, str] = setting("YIWANG_SECTOR_ENDPOINTS", {},
                                                  _endpoints,
                                                  "sector -> URL, overriding bundles'")
    registry_refresh_ms: int = setting("YIWANG_REGISTRY_REFRESH_MS", 2000, _int,
                                       "an activation reaches every process within this of its next use")
    dispatch_in_process: bool = setting("YIWANG_DISPATCH", True, _in_process,
                                        "`yiwang serve` also runs a dispatcher thread (`in-process`; else `off`)")
    api_workers: int = setting("YIWANG_API_WORKERS", 1, _positive,
                               "`yiwang serve`'s API processes on its one port (`--workers` wins)")
    max_body_bytes: int = setting("YIWANG_MAX_BODY_BYTES", 1024 * 1024, _int, "largest request body accepted")
    max_material_bytes: int = setting("YIWANG_MAX_MATERIAL_BYTES", 20 * 1024 * 1024, _int, "largest material file")
    blind_index_key: str | None = setting("YIWANG_BLIND_INDEX_KEY", None, _text,
                                          "hex; default: a key file created under var_dir")
    public_url: str = setting("YIWANG_PUBLIC_URL", "http://127.0.0.1:8000", _url,
                              "how sectors reach this gateway (signed material links)", blank_is_unset=True)
    material_link_key: str | None = setting("YIWANG_MATERIAL_LINK_KEY", None, _text,
                                            "hex; default: a key file created under var_dir")
    material_link_ttl_s: int = setting("YIWANG_MATERIAL_LINK_TTL_S", 3600, _positive,
                                       "how long a signed material link stays valid")
    max_inline_material_bytes: int = setting("YIWANG_MAX_INLINE_MATERIAL_BYTES", 10 * 1024 * 1024,
                                             _positive,
                                             "inline_base64: the files of one message, together")
    warn_days: int = setting("YIWANG_WARN_DAYS", 2, _int,
                             "e-supervision warns this many working days before a deadline")
    supplement_days: int = setting("YIWANG_SUPPLEMENT_DAYS", 30, _int,
                                   "an unanswered supplement notice ends the case after this many days")
    clock_interval_ms: int = setting("YIWANG_CLOCK_INTERVAL_MS", 60_000, _int,
                                     "how often a dispatcher runs the deadline clock")
    job_lease_ms: int = setting("YIWANG_JOB_LEASE_MS", 15_000, _positive,
                                "a scheduled job's lease, renewed while it runs (gateway/transport/scheduler.py)")
    lease_ms: int = setting("YIWANG_LEASE_MS", 60_000, _int, "how long a dispatcher holds a message")
    poll_interval_ms: int | None = setting("YIWANG_POLL_INTERVAL_MS", None, _int,
                                           "overrides the bundles' polling interval")
    retry_attempts: int | None = setting("YIWANG_RETRY_ATTEMPTS", None, _int,
                                         "override the bundles' retry policy (tests, demo)")
    retry_initial_ms: int | None = setting("YIWANG_RETRY_INITIAL_MS", None, _int, "... its first delay")
    retry_max_ms: int | None = setting("YIWANG_RETRY_MAX_MS", None, _int, "... its longest delay")
    log_level: str = setting("YIWANG_LOG_LEVEL", "info",
                             _log_level,
                             "debug, info, warning or error")
    log_format: str = setting("YIWANG_LOG_FORMAT", "console", _one_of("console", "json"), 'or "json"')
    four_eyes: bool = setting("YIWANG_FOUR_EYES", False, _switch,
                              "activating a bundle or publishing a guide waits for a second identity")
    rate_limit_per_s: float | None = setting("YIWANG_RATE_LIMIT_PER_S", None,
                                             _positive_float,
                                             "per identity, in each process; None: no limit")
    rate_limit_burst: int | None = setting("YIWANG_RATE_LIMIT_BURST", None, _positive,
                                           "default: twice the rate")
    client_cert_header: str | None = setting("YIWANG_CLIENT_CERT_HEADER", None, _text,
                                             "mTLS via a TLS terminator: the header carrying the escaped PEM")
    client_cert_proxies: frozenset[str] = setting("YIWANG_CLIENT_CERT_PROXIES", frozenset({"127.0.0.1", "::1"}),
                                                  _names, "whose header is believed")
    # The operators' console (/console, ops/console/): its sessions and sign-in lockout.
    console_idle_ms: int = setting("YIWANG_CONSOLE_IDLE_MS", 30 * 60_000, _positive,
                                   "a console session unused this long ends (30 minutes)")
    console_session_ms: int = setting("YIWANG_CONSOLE_SESSION_MS", 8 * 3_600_000, _positive,
                                      "a console session ends this long after sign-in, however busy (8 hours)")
    console_lockout_failures: int = setting("YIWANG_CONSOLE_LOCKOUT_FAILURES", 5, _positive,
                                            "failed console sign-ins from one address that lock it out")
    console_lockout_ms: int = setting("YIWANG_CONSOLE_LOCKOUT_MS", 15 * 60_000, _positive,
                                      "how long a locked-out address waits, and the window failures count in")
    tls_proxies: frozenset[str] = setting("YIWANG_TLS_PROXIES", frozenset({"127.0.0.1", "::1"}), _names,
                                          "the TLS terminator's addresses: only from these are X-Forwarded-Proto "
                                          "and X-Forwarded-For believed (the console's Secure cookie, lockout)")
    master_key: str | None = setting("YIWANG_MASTER_KEY", None, _text,
                                     "`id:base64,...`, first current; see certstore/keyring", secret=True)
    master_key_file: Path | None = setting("YIWANG_MASTER_KEY_FILE", None, _path, "the same, one per line; "
                                           "default: a development key under var_dir")
    field_cipher: str = setting("YIWANG_FIELD_CIPHER", "aes-256-gcm", _one_of(*CIPHERS),
                                'or "sm4-gcm": how personal data is sealed at rest')
    digest: str = setting("YIWANG_DIGEST", "sha256", _one_of(*DIGESTS),
                          'or "sm3": hash chains of the audit and message logs')
    cert_overlap_days: float = setting("YIWANG_CERT_OVERLAP_DAYS", 7.0, _float,
                                       "a rotated-out certificate stays trusted this long (certstore.store)")
    cert_refresh_ms: int = setting("YIWANG_CERT_REFRESH_MS", 2000, _int,
                                   "a certificate rotation reaches every process within this of its next use")
    checkpoint_every: int = setting("YIWANG_CHECKPOINT_EVERY", 1000, _positive,
                                    "the audit and message logs sign their chains' heads every this many records")
    checkpoint_ms: int = setting("YIWANG_CHECKPOINT_MS", 60_000, _positive,
                                 "... and at least this often while records come")
    # Notifications to the hall (gateway/notifications/hall.py): the AMQP topic and webhooks
    notify_interval_ms: int = setting("YIWANG_NOTIFY_INTERVAL_MS", 500, _positive,
                                      "how often case events are fanned out and due webhooks sent")
    webhook_timeout_ms: int = setting("YIWANG_WEBHOOK_TIMEOUT_MS", 5000, _positive,
                                      "one webhook request, connect to answer")
    webhook_max_attempts: int = setting("YIWANG_WEBHOOK_MAX_ATTEMPTS", 10, _positive,
                                        "then the delivery is failed and the case's next events go on")
    webhook_backoff_ms: int = setting("YIWANG_WEBHOOK_BACKOFF_MS", 1000, _positive,
                                      "the first retry's delay; doubled each attempt, capped, with jitter")
    webhook_insecure_hosts: frozenset[str] = setting("YIWANG_WEBHOOK_INSECURE_HOSTS", frozenset(), _hosts,
                                                     "hosts allowed over http and on private addresses")
    # Guaranteed delivery over RabbitMQ (gateway/transport/amqp.py); None: the in-process transport
    amqp_url: str | None = setting("YIWANG_AMQP_URL", None, _amqp_url,
                                   "amqp:// or amqps://", secret=True)
    amqp_prefetch: int = setting("YIWANG_AMQP_PREFETCH", 20, _positive,
                                 "messages a worker holds unacknowledged per queue")
    amqp_heartbeat_s: int = setting("YIWANG_AMQP_HEARTBEAT_S", 30, _positive,
                                    "AMQP heartbeat of every connection")
    worker_concurrency: int = setting("YIWANG_WORKER_CONCURRENCY", 8, _positive,
                                      "sector calls in flight in one worker")
    delivery_limit: int = setting("YIWANG_DELIVERY_LIMIT", 20, _positive,
                                  "broker redeliveries of one message before its dead-letter exchange takes it")
    dispatch_idle_ms: int = setting("YIWANG_DISPATCH_IDLE_MS", 200, _positive,
                                    "how long a dispatcher or the outbox relay sleeps when nothing is due")
    outbox_sweep_ms: int = setting("YIWANG_OUTBOX_SWEEP_MS", 60_000, _positive,
                                   "how often queued messages the broker may have lost are looked for")
    outbox_requeue_after_ms: int = setting("YIWANG_OUTBOX_REQUEUE_AFTER_MS", 600_000,
                                           _positive,
                                           "queued this long and not settled: published again")
    unsafe_fresh_idempotency_keys: bool = setting("YIWANG_UNSAFE_FRESH_IDEMPOTENCY_KEYS", False, _switch,
                                                  "the fault tests' negative control; never in production")
    # The ferry's near side (gateway/sectors/ferry.py): sectors behind an isolation gateway, reached by files
    ferry_dir: Path | None = setting("YIWANG_FERRY_DIR", None, _path, "each channel's outgoing/ and incoming/ "
                                     "folders under <dir>/<channel>/; default: var_dir/ferry")
    ferry_interval_ms: int = setting("YIWANG_FERRY_INTERVAL_MS", 1000, _positive,
                                     "how often the near side reads answers and resends or beacons")
    # Retention (gateway/audit/retention.py): how long message bodies, notifications and logs are kept
    retention_days: int = setting("YIWANG_RETENTION_DAYS", 180, _positive,
                                  "then settled messages' bodies are purged and sent notifications deleted")
    audit_retention_days: int = setting("YIWANG_AUDIT_RETENTION_DAYS", 0, _not_negative,
                                        "audit log records; 0: kept for ever")
    retention_archive_dir: Path | None = setting("YIWANG_RETENTION_ARCHIVE_DIR", None, _path,
                                                 "purged data appended here first (bodies still sealed)")
    retention_interval_ms: int = setting("YIWANG_RETENTION_INTERVAL_MS", 3_600_000,
                                         _positive, "how often retention runs")
    log_file: Path | None = setting("YIWANG_LOG_FILE", None, _path, "None: logs go to stderr")
    log_retention_days: int = setting("YIWANG_LOG_RETENTION_DAYS", 30, _positive,
                                      "rotated log files kept (with log_file)")
    # Observability (ops/gateway_metrics.py, ops/readiness.py)
    metrics_cache_ms: int = setting("YIWANG_METRICS_CACHE_MS", 5000, _at_least_zero,
                                    "gauges read from the database or the broker are reused this long")
    probe_timeout_ms: int = setting("YIWANG_PROBE_TIMEOUT_MS", 2000, _positive,
                                    "/readyz and the queue gauges: the longest wait for the database or broker")
    metrics_port: int = setting("YIWANG_METRICS_PORT", 0, _port,
                                "`yiwang worker` serves /metrics on this port; 0: not at all")
    metrics_host: str = setting("YIWANG_METRICS_HOST", "127.0.0.1", _text, "... bound to this address",
                                blank_is_unset=True)

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
    def ferry_folder(self) -> Path:
        """Where the ferry's link folders are: `<it>/<channel>/outgoing` and `<it>/<channel>/incoming`."""
        return self.ferry_dir or self.var_dir / "ferry"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'yiwang.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        try:
            for name, declared in _declarations():
                text = env.get(declared.env)
                if text is None or (not text and declared.blank_is_unset):
                    continue  # the field's default
                values[name] = declared.parse(declared.env, text)
        except ValueError as exc:
            raise ConfigError(f"invalid setting: {exc}") from exc
        return cls(**values)


def _declarations() -> list[tuple[str, Setting]]:
    """(field name, its declaration) for every field of `Settings`, in declaration order."""
    return [(each.name, each.metadata[_SETTING]) for each in fields(Settings)]


def declared_defaults() -> dict[str, tuple[Setting, object]]:
    """Each variable's declaration and its field's default (for the settings table test, docs/configuration.md)."""
    defaults = Settings()
    return {declared.env: (declared, getattr(defaults, name)) for name, declared in _declarations()}
