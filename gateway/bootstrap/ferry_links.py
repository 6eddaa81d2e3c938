"""The near side's ferry links as operators see them (`gateway.sectors.ferry_channels.FerryChannels`), over
the stations of the active ferry bundles: what `GET /v1/ops/ferry/...`, `yiwang ferry status|gaps|quarantine|
resend` and the `yiwang_ferry_*` metrics read. Composition root: it alone may reach the ferry kind's stations
(`adapters.kinds.ferry.station`) and say their status in the operators' words.

A station reports the channel it sends on and the one it receives on; a link is named by the channels' common
stem (`public_security` of `public_security.down` / `.up`) and each way by its suffix. Everything is read from
the ferry tables at the moment it is asked (the metrics' collector caches it for `YIWANG_METRICS_CACHE_MS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from adapters.kinds.ferry.station import ChannelStatus, Station
from adapters.kinds.ferry.tables import FerryTables
from gateway.sectors.ferry import NearSide
from gateway.sectors.ferry_channels import (
    ChannelWay,
    FerryChannels,
    GapReport,
    LinkReport,
    QuarantinedBatch,
    UnknownLink,
    check_range,
)


@dataclass(frozen=True)
class NearLink:
    """One link of the gateway: the sector whose active bundle names it, and the station working it."""

    sector: str
    station: Station

    @property
    def name(self) -> str:
        return link_of(self.station.config.send_channel)


def link_of(channel: str) -> str:
    """`public_security` of `public_security.down`."""
    return channel.rsplit(".", 1)[0]


def direction_of(channel: str) -> str:
    """`down` of `public_security.down`."""
    return channel.rsplit(".", 1)[-1]


class StationLinks:
    """`FerryChannels` over the gateway's stations (`stations()` is asked each time: bundles come and go)."""

    def __init__(self, engine: Engine, tables: FerryTables, stations: Callable[[], Sequence[NearLink]]) -> None:
        self._engine, self._tables, self._stations = engine, tables, stations

    def links(self) -> list[LinkReport]:
        return sorted((self._report(near) for near in self._stations()), key=lambda report: report.link)

    def gaps(self, link: str | None = None) -> list[GapReport]:
        return [GapReport(near.name, gap.channel, gap.seq_from, gap.seq_to, gap.named_at)
                for near in self._chosen(link) for gap in near.station.gaps()]

    def quarantined(self, link: str | None = None, limit: int = 100) -> list[QuarantinedBatch]:
        found = [QuarantinedBatch(near.name, q.channel, q.file, q.code, q.reason, q.at)
                 for near in self._chosen(link) for q in near.station.quarantined(limit)]
        return sorted(found, key=lambda batch: batch.at, reverse=True)[:limit]

    def resend(self, link: str, seq_from: int, seq_to: int) -> int:
        near = self._named(link)
        check_range(self._report(near), seq_from, seq_to)  # before anything is written
        return near.station.resend(seq_from, seq_to)

    def _named(self, link: str) -> NearLink:
        near = next((near for near in self._stations() if near.name == link), None)
        if near is None:
            raise UnknownLink(link)
        return near

    def _chosen(self, link: str | None) -> Iterable[NearLink]:
        return self._stations() if link is None else [self._named(link)]

    def _report(self, near: NearLink) -> LinkReport:
        station, config = near.station, near.station.config
        ways = {direction_of(status.channel): self._way(status, station) for status in station.status()}
        two_way = config.mode == "two_way"
        return LinkReport(near.name, near.sector, config.mode, ways["down"], ways["up"],
                          self._quarantined_by_code(config.receive_channel),
                          resend_after=config.resend_after if two_way else None,
                          beacon_every=None if two_way else config.beacon_every)

    @staticmethod
    def _way(status: ChannelStatus, station: Station) -> ChannelWay:
        direction = direction_of(status.channel)
        if status.direction == "send":
            return ChannelWay(status.channel, direction, True, status.last_seq, status.last_at, lag=status.lag,
                              unacknowledged=status.unacked, oldest_unacknowledged_at=status.oldest_unacked_at,
                              unwritten=status.unwritten)
        oldest_gap = min((gap.named_at for gap in station.gaps()), default=None) if status.gaps else None
        return ChannelWay(status.channel, direction, False, status.applied_seq, status.last_at, lag=status.lag,
                          highest_seen=status.last_seq, open_gaps=status.gaps, oldest_gap_at=oldest_gap,
                          last_signal_at=status.last_signal_at)

    def _quarantined_by_code(self, channel: str) -> dict[str, int]:
        q = self._tables.quarantine
        with self._engine.connect() as conn:
            rows = conn.execute(select(q.c.code, func.count()).where(q.c.channel == channel).group_by(q.c.code))
            return {code: count for code, count in rows}


def ferry_channels(near: NearSide) -> FerryChannels:
    """The links of the gateway's active ferry bundles, each on the station the near side keeps for it."""
    return StationLinks(near.engine, near.tables,
                        lambda: [NearLink(bundle.sector, near.station(bundle)) for bundle in near.active.ferries()])
