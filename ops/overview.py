"""The operators' overview: the figures the console's first page shows, and `GET /v1/ops/overview` and `yiwang ops
overview` show the same — one service, `Overview.overview(scope)`, built by the composition root from the gateway's
parts.

The figures:
- cases by state, and the open ones e-supervision has flagged overdue (past their deadline, the clock running);
- the outbox: messages pending, queued (handed to the broker), leased (being delivered now), and how long the
  oldest one that is due has waited;
- queues: with `YIWANG_AMQP_URL`, each of our RabbitMQ queues' ready messages (a passive declare on a short-lived
  connection, `ops.readiness.BrokerProbe`: a queue not declared yet, or a broker that does not answer, is shown
  as unknown — never an error); in process, the one queue is the outbox's pending messages;
- dead letters waiting (status dead) by sector and error class, and the trend: new dead letters (any status
  since) per Beijing day, the last 7 days, today last;
- circuits: each active sector's two breakers (deliveries, queries) *in this process* — a `yiwang` command is a
  process of its own that has called no sector, so its circuits are closed;
- adapters: each sector's active version and whether this process could build it, and every version not
  retired with its last test and last rehearsal (outcome, time, items passed);
- certificates expiring within the expiry warnings' widest window (30 days; `certstore.EXPIRY_THRESHOLDS`),
  or expired, with the days left;
- ferry links: lag, open gaps (and the oldest one's age), batches not receipted, the far side's last signal.

Every figure carries a `Link`: the console page of the list it counts and that list's filter (dead letters of
sector X and class Y: `Link("dead-letters", {"sector": "X", "error_class": "Y"})`), so that each figure leads to
what it counts. A filter's times are Beijing time without a zone, as the desk's API and CLI read them.

Scope (`Scope.of(identity)`): operators, system, security and audit administrators see the whole gateway. A
sector administrator sees their own sector: its dead letters, circuits and adapters, its certificates and its
ferry link; the gateway-wide figures — cases, the outbox, the queues — are left out (None), since cases and
queues are shared by every sector and their counts would tell of the others. Nobody else sees an overview.

The queries are the ones `/metrics` runs (`ops.gateway_metrics.read_outbox`, `read_cases`; the desk's counts;
`ops.readiness.adapter_states`), so the console, the API and the dashboards agree. Nothing here holds personal
data: counts, states, versions, sectors, certificate and channel names.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, Literal

from sqlalchemy import Engine, and_, case, func, select

from certstore import EXPIRY_THRESHOLDS, CertStore
from gateway.domain.case import CaseState
from gateway.domain.clock import SHANGHAI, Clock, shanghai_date
from gateway.domain.roles import Identity, NotAllowed, Role
from gateway.persistence import tables as t
from gateway.persistence.bundle_tables import RETIRED
from gateway.persistence.repository import OutboxRepository
from gateway.sectors.bundle_records import BundleStore, BundleVersion
from gateway.sectors.ferry_channels import FerryChannels, LinkReport, age_s
from gateway.transport.amqp_topology import DEAD_LETTER_QUEUE, queue_name
from ops.dead_letters import DeadLetterDesk, DeadLetterFilter, conditions
from ops.gateway_metrics import days_left, read_cases, read_outbox
from ops.readiness import AdapterHealthSource, BrokerProbe, adapter_states

__all__ = ["ALL_SEEING", "OVERVIEW_ROLES", "TREND_DAYS", "AdapterFigure", "CaseFigures", "CertificateFigure",
           "CircuitFigure", "Count", "DayCount", "DeadLetterCount", "DeadLetterFigures", "FerryFigure", "Link",
           "Overview", "OverviewFigures", "OutboxFigures", "Page", "QueueFigure", "QueueFigures", "Scope",
           "StateCount", "VersionFigure", "beijing_midnight"]

Page = Literal["cases", "dead-letters", "replays", "adapters", "certificates", "ferry", "audit"]
ALL_SEEING = (Role.OPERATOR, Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDITOR)
OVERVIEW_ROLES = (*ALL_SEEING, Role.SECTOR_ADMIN)
TREND_DAYS = 7
CERTIFICATE_WINDOW = max(before for _, before in EXPIRY_THRESHOLDS)  # the expiry warnings' first: 30 days ahead
IN_PROCESS_QUEUE = "outbox"  # without a broker the outbox is the queue


# --------------------------------------------------------------------------- who sees what


@dataclass(frozen=True)
class Scope:
    """The whole gateway (`sector` None), or one sector's part of it."""

    sector: str | None = None

    @classmethod
    def of(cls, identity: Identity) -> Scope:
        """An identity's scope; `NotAllowed` for a role that sees no overview."""
        if identity.has(*ALL_SEEING):
            return cls()
        if identity.has(Role.SECTOR_ADMIN):
            return cls(identity.sector or "")  # no sector named: a scope nothing falls in
        raise NotAllowed("总览只对运维、系统管理员、安全管理员、审计管理员和部门系统管理员开放")

    @property
    def whole(self) -> bool:
        return self.sector is None

    def covers(self, sector: str | None) -> bool:
        """Whether a thing of `sector` (None: the gateway's own) is in scope."""
        return self.sector is None or sector == self.sector

    @property
    def sectors(self) -> frozenset[str] | None:
        """As the desk's filter takes it: None for all."""
        return None if self.sector is None else frozenset({self.sector})


# --------------------------------------------------------------------------- the figures


@dataclass(frozen=True)
class Link:
    """Where a figure leads: a console page and the filter of the list the figure counts."""

    page: Page
    filter: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Count:
    count: int | None  # None: unknown (a queue the broker did not tell of)
    link: Link


@dataclass(frozen=True)
class StateCount:
    state: str
    count: int
    link: Link


@dataclass(frozen=True)
class CaseFigures:
    by_state: list[StateCount]  # every state, in the lifecycle's order
    overdue: Count


@dataclass(frozen=True)
class OutboxFigures:
    pending: Count
    queued: Count  # handed to the broker, a worker will take it
    leased: Count  # of the pending and queued ones, those a dispatcher or worker is delivering now
    oldest_due_age_s: float | None  # how long the oldest message that is due has waited; None: none waits
    oldest_due_link: Link


@dataclass(frozen=True)
class QueueFigure:
    queue: str
    count: int | None  # None: unknown (not declared yet, or the broker did not answer)
    link: Link


@dataclass(frozen=True)
class QueueFigures:
    transport: Literal["amqp", "in_process"]
    broker: Literal["up", "down"] | None  # None: in process
    items: list[QueueFigure]


@dataclass(frozen=True)
class DeadLetterCount:
    sector: str
    error_class: str
    count: int
    link: Link


@dataclass(frozen=True)
class DayCount:
    day: date  # a Beijing calendar day
    count: int
    link: Link


@dataclass(frozen=True)
class DeadLetterFigures:
    waiting: Count  # status dead: an operator's to decide
    by_class: list[DeadLetterCount]  # the largest first
    trend: list[DayCount]  # new dead letters per day, oldest first, today last


@dataclass(frozen=True)
class CircuitFigure:
    sector: str
    delivery: str | None  # closed | open | half_open; None: no breaker (the bundle could not be built here)
    query: str | None
    link: Link


@dataclass(frozen=True)
class VersionFigure:
    version: str
    status: str  # registered | active | inactive
    test_outcome: str | None  # of the last test: unreachable | refused | accepted; None: never tested
    rehearsal_outcome: str | None  # of the last rehearsal: passed | failed; None: never rehearsed
    rehearsed_at: datetime | None
    rehearsal_passed: int | None  # items that passed of `rehearsal_total`
    rehearsal_total: int | None
    link: Link


@dataclass(frozen=True)
class AdapterFigure:
    sector: str
    active_version: str | None  # None: no version active
    health: Literal["built", "unbuildable", "none"]  # the active version in this process; none: nothing active
    versions: list[VersionFigure]  # every version not retired, in the order registered
    link: Link


@dataclass(frozen=True)
class CertificateFigure:
    name: str
    sector: str | None  # None: the gateway's own
    not_after: datetime
    days_left: float  # negative: expired
    link: Link


@dataclass(frozen=True)
class FerryFigure:
    channel: str  # the link, as its bundle's ferry.channel names it
    sector: str
    mode: str
    lag: int  # batches the far side sent that are not applied yet
    open_gaps: int
    oldest_gap_age_s: float | None
    unacknowledged: int  # batches sent and not receipted (two-way)
    last_signal_age_s: float | None  # the far side's last beacon or receipt
    link: Link


@dataclass(frozen=True)
class OverviewFigures:
    at: datetime
    sector: str | None  # the scope: None for the whole gateway
    cases: CaseFigures | None  # None: out of scope (a sector administrator)
    outbox: OutboxFigures | None
    queues: QueueFigures | None
    dead_letters: DeadLetterFigures
    circuits: list[CircuitFigure]
    adapters: list[AdapterFigure]
    certificates: list[CertificateFigure]  # the soonest first
    ferry: list[FerryFigure]

    def public(self) -> dict[str, Any]:
        """As JSON (times and days left as they are: the API and the CLI show them in Beijing time)."""
        return asdict(self)


# --------------------------------------------------------------------------- the service


class Overview:
    """Reads every figure at once; each read is one query or an in-memory look (circuits, the broker's cached
    reading)."""

    def __init__(self, *, engine: Engine, clock: Clock, desk: DeadLetterDesk, bundles: BundleStore,
                 adapters: AdapterHealthSource, certs: CertStore, ferry: FerryChannels,
                 broker: BrokerProbe | None) -> None:
        self.engine, self.clock, self.desk, self.bundles = engine, clock, desk, bundles
        self.adapters, self.certs, self.ferry, self.broker = adapters, certs, ferry, broker

    def overview(self, scope: Scope) -> OverviewFigures:
        now = self.clock.now()
        whole = scope.whole
        states = {sector: state for sector, state in adapter_states(self.adapters).items() if scope.covers(sector)}
        return OverviewFigures(
            at=now, sector=scope.sector,
            cases=self._cases() if whole else None,
            outbox=self._outbox() if whole else None,
            queues=self._queues() if whole else None,
            dead_letters=self._dead_letters(scope, now),
            circuits=[CircuitFigure(sector, state.get("circuit"), state.get("query_circuit"), _adapter_link(sector))
                      for sector, state in states.items()],
            adapters=self._adapters(scope, states),
            certificates=self._certificates(scope, now),
            ferry=self._ferry(scope, now))

    def _cases(self) -> CaseFigures:
        reading = read_cases(self.engine)
        by_state = [StateCount(str(s), reading.by_state.get(str(s), 0), Link("cases", {"state": str(s)}))
                    for s in CaseState]
        return CaseFigures(by_state, Count(reading.overdue, Link("cases", {"overdue": True})))

    def _outbox(self) -> OutboxFigures:
        reading = read_outbox(self.engine, self.clock)

        def of(status: str) -> Count:
            return Count(reading.by_status.get(status, 0), Link("cases", {"outbox": status}))

        return OutboxFigures(of(OutboxRepository.PENDING), of(OutboxRepository.QUEUED),
                             Count(reading.leased, Link("cases", {"outbox": "leased"})), reading.oldest_due_age_s,
                             Link("cases", {"outbox": "due"}))

    def _queues(self) -> QueueFigures:
        if self.broker is None:
            pending = read_outbox(self.engine, self.clock).by_status.get(OutboxRepository.PENDING, 0)
            return QueueFigures("in_process", None,
                                [QueueFigure(IN_PROCESS_QUEUE, pending, Link("cases", {"outbox": "pending"}))])
        reading = self.broker.read()  # never raises: a broker that does not answer is a reading "down"
        try:
            names = self.broker.queue_names()
            sectors = {queue_name(s, green): s for s in self.adapters.sectors for green in (False, True)}
        except Exception:  # noqa: BLE001 - the active sectors come from the database, which may be down
            names, sectors = sorted(reading.queues), {}
        return QueueFigures("amqp", "up" if reading.up else "down",
                            [QueueFigure(name, reading.queues.get(name), _queue_link(name, sectors)) for name in names])

    def _dead_letters(self, scope: Scope, now: datetime) -> DeadLetterFigures:
        counts = self.desk.counts(DeadLetterFilter(sectors=scope.sectors))
        by_class = [DeadLetterCount(sector, error_class, n,
                                    Link("dead-letters", {"sector": sector, "error_class": error_class}))
                    for sector, error_class, n in counts]
        waiting = Count(sum(n for _, _, n in counts), Link("dead-letters", _sector_filter(scope)))
        return DeadLetterFigures(waiting, by_class, self._trend(scope, now))

    def _trend(self, scope: Scope, now: datetime) -> list[DayCount]:
        """One query: a conditional count per Beijing day."""
        today = shanghai_date(now)
        days = [today - timedelta(days=back) for back in range(TREND_DAYS - 1, -1, -1)]
        bounds = [beijing_midnight(day) for day in (*days, today + timedelta(days=1))]
        created = t.dead_letters.c.created_at
        per_day = [func.count(case((and_(created >= start, created < end), 1))) for start, end in pairwise(bounds)]
        where = conditions(DeadLetterFilter(sectors=scope.sectors, status=None, created_from=bounds[0],
                                            created_to=bounds[-1]))
        with self.engine.connect() as conn:
            row = conn.execute(select(*per_day).where(*where)).one()
        return [DayCount(day, int(count), Link("dead-letters", {
                    **_sector_filter(scope), "status": "any", "since": _beijing_text(start),
                    "until": _beijing_text(end)}))
                for day, count, (start, end) in zip(days, row, pairwise(bounds), strict=True)]

    def _adapters(self, scope: Scope, states: dict[str, Any]) -> list[AdapterFigure]:
        """`states`: the active sectors' circuits, or `unbuildable` (`ops.readiness.adapter_states`)."""
        by_sector: dict[str, list[BundleVersion]] = defaultdict(list)
        for version in self.bundles.versions(scope.sector):
            if version.status != RETIRED:
                by_sector[version.sector].append(version)
        figures = []
        for sector, versions in sorted(by_sector.items()):
            active = next((v.version for v in versions if v.status == "active"), None)
            health: Literal["built", "unbuildable", "none"] = (
                "none" if active is None else "unbuildable" if states.get(sector, {}).get("status") == "unbuildable"
                else "built")
            figures.append(AdapterFigure(sector, active, health, [_version(v) for v in versions],
                                         _adapter_link(sector)))
        return figures

    def _certificates(self, scope: Scope, now: datetime) -> list[CertificateFigure]:
        soon = [(not_after, name, sector) for name, sector, not_after in self.certs.expiries()
                if scope.covers(sector) and not_after - now <= CERTIFICATE_WINDOW]
        return [CertificateFigure(name, sector, not_after, round(days_left(now, not_after), 2),
                                  Link("certificates", {"name": name}))
                for not_after, name, sector in sorted(soon)]

    def _ferry(self, scope: Scope, now: datetime) -> list[FerryFigure]:
        return [_ferry_figure(report, now) for report in self.ferry.links() if scope.covers(report.sector)]


# --------------------------------------------------------------------------- helpers


def beijing_midnight(day: date) -> datetime:
    """The instant (UTC) a Beijing calendar day begins."""
    return datetime.combine(day, time(0), tzinfo=SHANGHAI).astimezone(UTC)


def _beijing_text(instant: datetime) -> str:
    """A filter's time as the desk's API and CLI read it: Beijing time, no zone."""
    return instant.astimezone(SHANGHAI).replace(tzinfo=None).isoformat(timespec="seconds")


def _sector_filter(scope: Scope) -> dict[str, Any]:
    return {} if scope.sector is None else {"sector": scope.sector}


def _adapter_link(sector: str, version: str | None = None) -> Link:
    return Link("adapters", {"sector": sector} | ({} if version is None else {"version": version}))


def _queue_link(name: str, sectors: dict[str, str]) -> Link:
    """The dead-letter queue feeds the dead letters; a sector's delivery queue is its adapter's work."""
    if name == DEAD_LETTER_QUEUE:
        return Link("dead-letters")
    sector = sectors.get(name)
    return _adapter_link(sector) if sector is not None else Link("adapters")


def _version(v: BundleVersion) -> VersionFigure:
    report = v.rehearsal_result or {}
    at = report.get("at")
    return VersionFigure(v.version, v.status, v.test_outcome, v.rehearsal_outcome,
                         datetime.fromisoformat(at).astimezone(UTC) if isinstance(at, str) else None,
                         report.get("passed"), report.get("total"), _adapter_link(v.sector, v.version))


def _ferry_figure(report: LinkReport, now: datetime) -> FerryFigure:
    sent, received = report.sent, report.received
    return FerryFigure(report.link, report.sector, report.mode, received.lag, received.open_gaps,
                       age_s(now, received.oldest_gap_at), sent.unacknowledged, age_s(now, received.last_signal_at),
                       Link("ferry", {"channel": report.link}))

