"""The ferry's links as operators see them (`gateway.sectors.ferry_channels.FerryChannels`), over
the stations of the active ferry bundles: what `GET /v1/ops/ferry/...`, `yiwang ferry status|gaps|quarantine|
resend` and the `yiwang_ferry_*` metrics read. Composition root: it alone may reach the ferry kind's stations
(`adapters.kinds.ferry.station`) and say their status in the operators' words.

A station reports the channel it sends on and the one it receives on; a link is named by the channels' common
stem (`public_security` of `public_security.down` / `.up`) and each way by its suffix. Everything is read from
the ferry tables at the moment it is asked (the metrics' collector caches it for `YIWANG_METRICS_CACHE_MS`).
On the 前置机, `agent_links` is the same over the agent's own state file and station (`--config AGENT.yaml`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, select

from adapters import ChannelStatus, FerryKeys, FerryTables, Station
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
class LinkStation:
    """One link and the station working it: on the gateway, of the sector whose active bundle names it; on the
    前置机, of the agent (`sector`: its name)."""

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

    def __init__(self, engine: Engine, tables: FerryTables, stations: Callable[[], Sequence[LinkStation]]) -> None:
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

    def _named(self, link: str) -> LinkStation:
        near = next((near for near in self._stations() if near.name == link), None)
        if near is None:
            raise UnknownLink(link)
        return near

    def _chosen(self, link: str | None) -> Iterable[LinkStation]:
        return self._stations() if link is None else [self._named(link)]

    def _report(self, near: LinkStation) -> LinkReport:
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
                          last_signal_at=status.last_signal_at, duplicates=status.duplicates,
                          replayed_signals=status.replayed_signals)

    def _quarantined_by_code(self, channel: str) -> dict[str, int]:
        q = self._tables.quarantine
        with self._engine.connect() as conn:
            rows = conn.execute(select(q.c.code, func.count()).where(q.c.channel == channel).group_by(q.c.code))
            return {code: count for code, count in rows}


def ferry_channels(near: NearSide) -> FerryChannels:
    """The links of the gateway's active ferry bundles, each on the station the near side keeps for it."""
    return StationLinks(near.engine, near.tables,
                        lambda: [LinkStation(bundle.sector, station) for bundle, station in near.channels()])


@contextmanager
def agent_links(path: Path) -> Iterator[FerryChannels]:
    """The agent's link, from its own state file on the 前置机 (`yiwang ferry status|gaps|quarantine|resend
    --config AGENT.yaml`): the station its configuration describes, sending up and receiving down; what an operator
    resends there is what the agent sent and the gateway never got (a one-way link has no receipts)."""
    from ferry.agent import station_config  # the agent's package: only this command's, never a gateway's
    from ferry.config import load_config
    from ferry.state import check_initialised, open_state

    config = load_config(path)
    check_initialised(config)  # nothing is made for a command that only reads or resends
    state = open_state(config)
    station = Station(state.engine, state.ferry, station_config(config), _no_keys, lambda: datetime.now(UTC))
    try:
        yield StationLinks(state.engine, state.ferry, lambda: [LinkStation(config.name, station)])
    finally:
        state.close()


def _no_keys() -> FerryKeys:
    raise RuntimeError("an operator's command reads the link and writes kept batches again: it never seals one")
