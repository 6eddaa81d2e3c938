"""The gateway's Prometheus metrics, beyond the certificate gauges of `gateway.security.certificates`.

Two kinds, both on the gateway's own registry (`Gateway.metrics`, served at `GET /metrics` and, in a worker,
on `YIWANG_METRICS_PORT`):

- **Per process**, counted as deliveries end (`DeliveryMetrics`, the dispatcher's observer):
  `yiwang_deliveries_total{sector,operation,outcome}` and `yiwang_delivery_duration_seconds{sector,operation}`
  (the sector call, retries included); as sector answers are refused (`SectorAnswerMetrics`, the case
  service's observer): `yiwang_callback_mismatches_total{sector,source}`, `yiwang_sector_ref_clashes_total{sector}`.
  Sum them over processes.
- **Shared state**, read at scrape time by collectors, each one cheap GROUP BY query, reused for
  `YIWANG_METRICS_CACHE_MS` so a scrape storm cannot hammer the database: the outbox, dead letters, cases,
  the certificates' days to expiry, the broker's queues, the ferry's links (`yiwang_ferry_*`); plus this
  process's circuits and readiness. Every process shows the same shared numbers: take `max` over instances,
  not `sum`.

A collector that fails (the database is down) yields nothing and logs a warning at most once a minute:
`/metrics` keeps answering, and `yiwang_ready`/`yiwang_database_up` say what is wrong. Nothing here carries
personal data: counts, ages, sectors, certificate names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func, select, type_coerce

from adapters import DELIVERY_BREAKER, QUERY_BREAKER, FailureClass
from certstore import CertStore
from gateway.domain.case import OPEN_CASES, CaseState
from gateway.domain.clock import Clock, as_utc
from gateway.persistence import tables as t
from gateway.persistence.repository import DeadLetterRepository, OutboxRepository
from gateway.sectors.delivery import CIRCUIT_OPEN, CONFIGURATION_ERROR, INTERNAL_ERROR, MATERIAL_ERROR, Outcome
from gateway.sectors.ferry_channels import FerryChannels, age_s
from gateway.security.certificates import OWN
from gateway.transport.amqp_worker import UNHANDLED
from ops.readiness import AdapterHealthSource, BrokerProbe, Readiness

log = structlog.get_logger("yiwang.metrics")
Gather = Callable[[], list[Metric]]
WARN_EVERY_S = 60.0
# From a fast REST answer (5 ms) to a SOAP call retried to its limit (60 s).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Every class a dead letter can have: each active sector shows a 0 for each, so that an alert on the change
# (`delta`) sees a sector's first dead letter of a class too, not only the second.
ERROR_CLASSES = (*(str(c) for c in FailureClass), INTERNAL_ERROR, CONFIGURATION_ERROR, MATERIAL_ERROR, UNHANDLED,
                 CIRCUIT_OPEN)
CIRCUIT_STATES = ("closed", "open", "half_open")
SECONDS_PER_DAY = 86_400


class DeliveryMetrics:
    """The dispatcher's `DeliveryObserver`: counts each delivery's outcome and times its sector call."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter("yiwang_deliveries", "Deliveries by how they ended (this process)",
                                  ["sector", "operation", "outcome"], registry=registry)
        self.duration = Histogram("yiwang_delivery_duration_seconds", "Sector calls of deliveries, retries included "
                                  "(this process)", ["sector", "operation"], buckets=DURATION_BUCKETS,
                                  registry=registry)

    def __call__(self, sector: str, operation: str, outcome: Outcome) -> None:
        self.deliveries.labels(sector, operation, outcome.name).inc()
        if outcome.call_s is not None:
            self.duration.labels(sector, operation).observe(outcome.call_s)


class SectorAnswerMetrics(Collector):
    """The case service's `AnswerObserver` (this process): sector answers refused for naming another task
    (`yiwang_callback_mismatches_total{sector,source}`, source `callback` or `poll`) and submit answers with a
    reference another task already holds (`yiwang_sector_ref_clashes_total{sector}`). Every active sector shows
    a 0 before its first, so that an alert on `increase` sees the first one too."""

    SOURCES = ("callback", "poll")

    def __init__(self, sectors: Callable[[], Iterable[str]]) -> None:
        self._sectors = sectors
        self._lock = threading.Lock()
        self._mismatches: dict[tuple[str, str], int] = {}
        self._clashes: dict[str, int] = {}

    def mismatch(self, sector: str, source: str) -> None:
        with self._lock:
            self._mismatches[sector, source] = self._mismatches.get((sector, source), 0) + 1

    def reference_clash(self, sector: str) -> None:
        with self._lock:
            self._clashes[sector] = self._clashes.get(sector, 0) + 1

    def collect(self) -> Iterator[Metric]:
        try:
            sectors = list(self._sectors())
        except Exception:  # noqa: BLE001 - the database is down: the counts alone, /metrics keeps answering
            sectors = []
        with self._lock:
            mismatches = {(s, source): 0 for s in sectors for source in self.SOURCES} | self._mismatches
            clashes = dict.fromkeys(sectors, 0) | self._clashes
        refused = CounterMetricFamily("yiwang_callback_mismatches", "Sector answers refused because their identifiers "
                                      "name another task, or none they may bind (this process)", labels=["sector",
                                                                                                        "source"])
        for labels, count in sorted(mismatches.items()):
            refused.add_metric(list(labels), count)
        held = CounterMetricFamily("yiwang_sector_ref_clashes", "Submit answers with a reference another task of the "
                                   "sector already holds, made dead letters (this process)", labels=["sector"])
        for sector, count in sorted(clashes.items()):
            held.add_metric([sector], count)
        return iter([refused, held])

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected live


class Cached(Collector):
    """A collector read at scrape time and reused for `cache_s`. A failure is cached too (a database that is
    down is not asked again at once) and yields nothing, warning at most once every `WARN_EVERY_S`."""

    def __init__(self, what: str, gather: Gather, cache_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.gather, self.cache_s, self._clock = what, gather, cache_s, clock
        self._lock = threading.Lock()  # concurrent scrapes share one reading
        self._metrics: list[Metric] = []
        self._read_at: float | None = None
        self._warned_at: float | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.cache_s:
                self._metrics = self._read(now)
                self._read_at = now
            return iter(self._metrics)

    def _read(self, now: float) -> list[Metric]:
        try:
            return self.gather()
        except Exception as exc:  # noqa: BLE001 - /metrics must keep answering
            if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
                log.warning("metrics collector failed", collector=self.what, error=f"{type(exc).__name__}: {exc}")
                self._warned_at = now
            return []

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected live: nothing to read at registration


def gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


# --------------------------------------------------------------------------- the database's shared state


@dataclass(frozen=True)
class OutboxReading:
    """The outbox's messages not yet done: how many per status, how many of the open ones a dispatcher or worker
    holds under a live lease (being delivered now), and when the oldest open one that is due became due."""

    at: datetime  # when it was read
    by_status: Mapping[str, int]
    leased: int
    oldest_due_at: datetime | None

    @property
    def oldest_due_age_s(self) -> float | None:
        """How long the oldest open message that is due has waited (None: none waits)."""
        return age_s(self.at, self.oldest_due_at)


def read_outbox(engine: Engine, clock: Clock) -> OutboxReading:
    """One GROUP BY over the outbox (what `/metrics` and the operators' overview both show)."""
    now = clock.now()
    c = t.outbox.c
    due_since = type_coerce(case((c.available_at <= now, c.available_at)), c.available_at.type)
    held = func.count(case((c.lease_until > now, 1)))  # counts the non-null: the messages under a live lease
    query = select(c.status, func.count(), func.min(due_since), held).where(c.status != OutboxRepository.DONE) \
        .group_by(c.status)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    counts = {status: 0 for status in (*OutboxRepository.OPEN, OutboxRepository.DEAD)} | {r[0]: r[1] for r in rows}
    oldest = [as_utc(r[2]) for r in rows if r[0] in OutboxRepository.OPEN and r[2] is not None]
    leased = sum(r[3] for r in rows if r[0] in OutboxRepository.OPEN)
    return OutboxReading(now, counts, leased, min(oldest) if oldest else None)


def outbox_metrics(engine: Engine, clock: Clock) -> list[Metric]:
    """Open and dead outbox messages by status (done ones only grow: not counted), and the age of the oldest
    open message that is due — it grows while nothing drains the outbox."""
    reading = read_outbox(engine, clock)
    messages = gauge("yiwang_outbox_messages", "Outbox messages not yet done, by status", ["status"])
    for status, count in sorted(reading.by_status.items()):
        messages.add_metric([status], count)
    age = gauge("yiwang_outbox_oldest_due_seconds", "Age of the oldest pending or queued message that is due (0: none)")
    age.add_metric([], reading.oldest_due_age_s or 0.0)
    return [messages, age]


def dead_letter_metrics(engine: Engine, sectors: Callable[[], Iterable[str]]) -> list[Metric]:
    """Dead letters waiting for an operator (status dead), by sector and error class."""
    c = t.dead_letters.c
    query = select(c.sector, c.error_class, func.count()).where(c.status == DeadLetterRepository.DEAD) \
        .group_by(c.sector, c.error_class)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    counts = {(sector, cls): 0 for sector in sectors() for cls in ERROR_CLASSES} | {(r[0], r[1]): r[2] for r in rows}
    letters = gauge("yiwang_dead_letters", "Dead letters waiting for an operator, by sector and error class",
                    ["sector", "error_class"])
    for labels, count in sorted(counts.items()):
        letters.add_metric(list(labels), count)
    return [letters]


@dataclass(frozen=True)
class CaseReading:
    """Cases by state (every state, 0 for none), and the open ones e-supervision has flagged overdue."""

    by_state: Mapping[str, int]
    overdue: int


def read_cases(engine: Engine) -> CaseReading:
    """One query grouping by state and overdue flag (what `/metrics` and the operators' overview both show)."""
    flagged = select(t.cases.c.state, t.cases.c.deadline["overdue"].as_boolean().label("overdue")).subquery()
    query = select(flagged.c.state, flagged.c.overdue, func.count()).group_by(flagged.c.state, flagged.c.overdue)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    by_state = {str(state): 0 for state in CaseState}
    overdue = 0
    for state, is_overdue, count in rows:
        by_state[state] = by_state.get(state, 0) + count
        overdue += count if is_overdue and state in OPEN_CASES else 0
    return CaseReading(by_state, overdue)


def case_metrics(engine: Engine) -> list[Metric]:
    """Cases by state, and open cases e-supervision has flagged overdue."""
    reading = read_cases(engine)
    cases = gauge("yiwang_cases", "Cases by state", ["state"])
    for state, count in sorted(reading.by_state.items()):
        cases.add_metric([state], count)
    flagged_open = gauge("yiwang_cases_overdue", "Open cases past their deadline (flagged by e-supervision)")
    flagged_open.add_metric([], reading.overdue)
    return [cases, flagged_open]


def days_left(now: datetime, not_after: datetime) -> float:
    """Days until `not_after` (negative once past)."""
    return (not_after - now).total_seconds() / SECONDS_PER_DAY


def certificate_metrics(store: CertStore) -> list[Metric]:
    """Days until each current certificate expires (negative once expired), beside the seconds gauge."""
    days = gauge("yiwang_certificate_days_to_expiry", "Days until the current certificate under a name expires",
                 ["name", "sector"])
    now = store.clock.now()
    for name, sector, not_after in store.expiries():
        days.add_metric([name, sector or OWN], days_left(now, not_after))
    return [days]


# --------------------------------------------------------------------------- this process and the broker


def circuit_metrics(adapters: AdapterHealthSource) -> list[Metric]:
    """Each active sector's two circuit breakers in this process (`breaker`: `delivery` or `query`): 1 for the
    current state, 0 for the others."""
    state = gauge("yiwang_circuit_state", "Circuit breaker state of a sector's adapter (this process)",
                  ["sector", "breaker", "state"])
    is_open = gauge("yiwang_circuit_open", "1 while a sector's circuit is open (this process)", ["sector", "breaker"])
    for sector, health in adapters.health().items():
        for breaker, key in ((DELIVERY_BREAKER, "breaker"), (QUERY_BREAKER, "query_breaker")):
            current = health.get(key)
            if current is None:  # a bundle that could not be built here has no breaker
                continue
            for name in CIRCUIT_STATES:
                state.add_metric([sector, breaker, name], 1.0 if current == name else 0.0)
            is_open.add_metric([sector, breaker], 1.0 if current == "open" else 0.0)
    return [state, is_open]


def queue_metrics(broker: BrokerProbe) -> list[Metric]:
    """Ready messages in the delivery and dead-letter queues; none while the broker does not answer."""
    queues = gauge("yiwang_queue_messages", "Messages ready in a RabbitMQ queue", ["queue"])
    for name, count in sorted(broker.read().queues.items()):
        queues.add_metric([name], count)
    return [queues]


# --------------------------------------------------------------------------- the ferry's links


# Every code a quarantined file can carry (the batch format's refusals, then the station's): each link shows 0
# for each, so that an alert on `increase` sees the first quarantined file of a kind too.
QUARANTINE_CODES = ("unreadable", "truncated", "too_large", "content_type", "unknown_signer", "bad_signature",
                    "expired_key", "bad_envelope", "digest_mismatch", "wrong_channel", "broken_chain", "forged",
                    "replayed")


def ferry_metrics(channels: FerryChannels, clock: Clock) -> list[Metric]:
    """Each ferry link, read from its station's tables: the age of the last batch each way, batches not yet
    written to the link folder, batches not yet receipted (and the oldest one's age), open gaps (and the
    oldest one's age), the age of the peer's last beacon or receipt, files quarantined by code; and what the
    link was configured to expect (the resend window, the beacon interval), so that the alert rules compare
    each link with its own settings. A time that never happened (no batch yet) has no sample."""
    now = clock.now()
    families = {name: gauge(name, documentation, labels) for name, (documentation, labels) in FERRY_GAUGES.items()}
    quarantined = CounterMetricFamily("yiwang_ferry_quarantined", "Files refused on a ferry link and quarantined, by "
                                      "refusal code", labels=["channel", "code"])
    met_again = CounterMetricFamily("yiwang_ferry_met_again", "Batches and signals received on a ferry link again "
                                    "after they were taken (resends, a link's copies, replays): refused, not applied",
                                    labels=["channel", "what"])

    def add(name: str, labels: list[str], value: float | None) -> None:
        if value is not None:
            families[name].add_metric(labels, value)

    for link in channels.links():
        for way in link.ways:
            add("yiwang_ferry_last_batch_age_seconds", [link.link, way.direction], age_s(now, way.last_batch_at))
        sent, received = link.sent, link.received
        add("yiwang_ferry_unacknowledged_batches", [link.link], sent.unacknowledged)
        add("yiwang_ferry_unwritten_batches", [link.link], sent.unwritten)
        add("yiwang_ferry_oldest_unacknowledged_seconds", [link.link], age_s(now, sent.oldest_unacknowledged_at))
        add("yiwang_ferry_open_gaps", [link.link], received.open_gaps)
        add("yiwang_ferry_oldest_gap_seconds", [link.link], age_s(now, received.oldest_gap_at))
        add("yiwang_ferry_beacon_age_seconds", [link.link], age_s(now, received.last_signal_at))
        add("yiwang_ferry_lag_batches", [link.link], received.lag)
        add("yiwang_ferry_resend_after_seconds", [link.link],
            link.resend_after.total_seconds() if link.resend_after else None)
        add("yiwang_ferry_beacon_interval_seconds", [link.link],
            link.beacon_every.total_seconds() if link.beacon_every else None)
        for code, count in sorted((dict.fromkeys(QUARANTINE_CODES, 0) | dict(link.quarantined)).items()):
            quarantined.add_metric([link.link, code], count)
        met_again.add_metric([link.link, "batch"], received.duplicates)
        met_again.add_metric([link.link, "signal"], received.replayed_signals)
    return [*families.values(), quarantined, met_again]


FERRY_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "yiwang_ferry_last_batch_age_seconds": ("Seconds since the last batch on a ferry link, by direction (down: "
                                            "sent to the far side, up: received from it)", ("channel", "direction")),
    "yiwang_ferry_unacknowledged_batches": ("Batches sent on a two-way ferry link not yet receipted", ("channel",)),
    "yiwang_ferry_unwritten_batches": ("Batches recorded but not written to the link folder (full disk?)",
                                       ("channel",)),
    "yiwang_ferry_oldest_unacknowledged_seconds": ("Age of the oldest batch not yet receipted (no sample: none)",
                                                   ("channel",)),
    "yiwang_ferry_open_gaps": ("Ranges of batches named missing on a ferry link and not filled", ("channel",)),
    "yiwang_ferry_oldest_gap_seconds": ("Age of the oldest open gap (no sample: none)", ("channel",)),
    "yiwang_ferry_beacon_age_seconds": ("Seconds since the far side's last beacon or receipt", ("channel",)),
    "yiwang_ferry_lag_batches": ("Batches the far side sent that are not applied yet", ("channel",)),
    "yiwang_ferry_resend_after_seconds": ("A two-way link's resend window (its bundle's resend_after_ms)",
                                          ("channel",)),
    "yiwang_ferry_beacon_interval_seconds": ("A one-way link's beacon interval (its bundle's beacon_every_ms)",
                                             ("channel",)),
}


def readiness_metrics(readiness: Readiness) -> list[Metric]:
    """What `GET /readyz` says, as gauges an alert can use."""
    report = readiness.check()
    values: dict[str, tuple[str, Any]] = {
        "yiwang_ready": ("1 when this process is ready for work (GET /readyz answers 200)", report.ready),
        "yiwang_database_up": ("1 when the database answers", report.checks["database"]["status"] == "up")}
    if report.checks["broker"]["status"] != "not_configured":
        values["yiwang_broker_up"] = ("1 when the broker answers", report.checks["broker"]["status"] == "up")
    families: list[Metric] = []
    for name, (documentation, value) in values.items():
        family = gauge(name, documentation)
        family.add_metric([], 1.0 if value else 0.0)
        families.append(family)
    return families


def register_gateway_metrics(registry: CollectorRegistry, *, engine: Engine, clock: Clock,
                             adapters: AdapterHealthSource, certs: CertStore, readiness: Readiness,
                             cache_s: float, ferry: FerryChannels | None = None) -> DeliveryMetrics:
    """Register every collector on the gateway's registry; returns the dispatcher's observer."""
    gathers: dict[str, Gather] = {
        "outbox": lambda: outbox_metrics(engine, clock),
        "dead letters": lambda: dead_letter_metrics(engine, lambda: adapters.sectors),
        "cases": lambda: case_metrics(engine),
        "certificates": lambda: certificate_metrics(certs),
        "circuits": lambda: circuit_metrics(adapters),
        "readiness": lambda: readiness_metrics(readiness),
    }
    if ferry is not None:
        gathers["ferry"] = lambda: ferry_metrics(ferry, clock)
    broker = readiness.broker
    if broker is not None:
        gathers["queues"] = lambda: queue_metrics(broker)
    for what, gather in gathers.items():
        registry.register(Cached(what, gather, cache_s))
    return DeliveryMetrics(registry)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Callable[[], None]:
    """A worker has no HTTP app: serve `registry` at http://host:port/metrics on a thread of its own (nothing
    when `port` is 0). Returns what stops it."""
    if not port:
        return lambda: None
    server, _ = start_http_server(port, addr=host, registry=registry)
    log.info("serving metrics", url=f"http://{host}:{port}/metrics")
    return server.shutdown
