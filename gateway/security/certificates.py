"""The gateway's certificate store: built from settings, watched for expiry, shown as metrics.

`open_cert_store` hands `certstore.store.CertStore` the gateway's tables and engine (certstore imports
nothing of ours). `ExpiryWatch.check` runs on the dispatcher's clock tick and from `yiwang certs check`:
each certificate's warning at 30 and 7 days before it expires (and once expired) is emitted once — a
stored row, a structured log event `certificate expiring`, and the counter
`yiwang_certificate_warnings_total{threshold}`. The gauge `yiwang_certificate_expiry_seconds{name,sector}`
is read from the database at each scrape, so every process shows the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import structlog
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from certstore import CertStore, ExpiryWarning
from gateway.config import Settings
from gateway.domain.clock import Clock
from gateway.persistence.cert_tables import CERT_TABLES
from gateway.persistence.engine import READ_ONLY

log = structlog.get_logger("yiwang.certs")
OWN = ""  # the `sector` label of the gateway's own certificates


def open_cert_store(engine: Engine, settings: Settings, clock: Clock) -> CertStore:
    return CertStore(engine, CERT_TABLES, settings.master_keys(), clock,
                     overlap=timedelta(days=settings.cert_overlap_days), refresh_s=settings.cert_refresh_ms / 1000,
                     cipher=settings.field_cipher, read_options={READ_ONLY: True})


class ExpiryWatch:
    """Emits the expiry warnings that are due; registers its metrics on `registry`."""

    def __init__(self, store: CertStore, registry: CollectorRegistry) -> None:
        self.store = store
        self.warnings = Counter("yiwang_certificate_warnings", "Certificate expiry warnings emitted by this process",
                                ["threshold"], registry=registry)
        registry.register(_ExpiryGauge(store))

    def check(self) -> int:
        """Emit what is due now; how many warnings (the dispatcher's periodic chores return counts)."""
        due = self.store.check_expiry()
        for warning in due:
            self._emit(warning)
        return len(due)

    def _emit(self, warning: ExpiryWarning) -> None:
        self.warnings.labels(warning.threshold).inc()
        log.warning("certificate expiring", name=warning.name, sector=warning.sector or OWN,
                    version=warning.version, threshold=warning.threshold, not_after=warning.not_after.isoformat(),
                    subject=warning.subject)


class _ExpiryGauge(Collector):
    """Seconds until each current certificate expires (negative once expired), read at scrape time."""

    def __init__(self, store: CertStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("yiwang_certificate_expiry_seconds",
                                  "Seconds until the current certificate under a name expires",
                                  labels=["name", "sector"])
        now = self.store.clock.now()
        for name, sector, not_after in self.store.expiries():
            gauge.add_metric([name, sector or OWN], (not_after - now).total_seconds())
        yield gauge

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected live: nothing to describe at registration (no database call then)
