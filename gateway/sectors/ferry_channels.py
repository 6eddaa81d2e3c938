"""What operators see of each ferry link, and what they do to one: the seam between the near side's stations
(filled by the composition root, `gateway.bootstrap`) and the operators' API (`ops.ferry_api`), CLI (`yiwang
ferry status|gaps|quarantine|resend`, `gateway.cli.ferry`) and metrics (`ops.gateway_metrics`).

A link is named by its bundle's `ferry.channel` (`public_security`) and is two channels: `<link>.down` (near →
far: messages, control) and `<link>.up` (far → near: answers, decisions). The near side sends on `down` and
receives on `up`. `LinkReport` shows both ways — last batch, lag, unacknowledged batches, open gaps, the last
signal (a beacon or receipts) — and how many batches were quarantined; `GapReport` and `QuarantinedBatch` the
detail.

`FerryChannels.resend` writes kept batches of the channel this side sends on again: the range is checked here
(`check_range`), before anything is written, so a bad one changes nothing (`BadRange`); a link nobody
configured is `UnknownLink`. Nothing here holds personal data: sequence numbers, times, counts, file names,
refusal codes and reasons (which never quote a batch's content).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

DOWN, UP = "down", "up"  # near → far, far → near
DIRECTIONS = (DOWN, UP)
MAX_RESEND = 10_000  # batches one resend may write again: a typo in a range must not flood the link


@dataclass(frozen=True)
class ChannelWay:
    """One direction of a link as this side sees it. Sending: `last_seq` is the last batch sealed,
    `acknowledged` the highest the peer receipted (two-way), `lag` how many batches since then. Receiving:
    `last_seq` the highest applied with nothing missing below, `highest_seen` the highest applied at all, `lag`
    what the peer says it sent (its beacon) or what arrived, less `last_seq`."""

    channel: str  # public_security.down
    direction: str  # down | up
    sending: bool  # this side sends on it
    last_seq: int
    last_batch_at: datetime | None
    lag: int = 0
    unacknowledged: int = 0  # sending: batches the peer has not receipted (two-way)
    oldest_unacknowledged_at: datetime | None = None
    unwritten: int = 0  # sending: recorded but the file not written (a full disk, a crash): written on the next pass
    highest_seen: int = 0  # receiving
    open_gaps: int = 0  # receiving: ranges named missing and not filled
    oldest_gap_at: datetime | None = None
    last_signal_at: datetime | None = None  # receiving: the peer's last beacon or receipt
    duplicates: int = 0  # receiving: batches met again after they were applied (resends, copies, replays)
    replayed_signals: int = 0  # receiving: old receipts or beacons sent again, ignored


@dataclass(frozen=True)
class LinkReport:
    """A link both ways, with what this side was configured to expect of it."""

    link: str  # the bundle's ferry.channel
    sector: str
    mode: str  # two_way | one_way
    down: ChannelWay
    up: ChannelWay
    quarantined: Mapping[str, int] = field(default_factory=dict)  # refusal code -> batches quarantined
    resend_after: timedelta | None = None  # two_way: unreceipted batches are written again after this
    beacon_every: timedelta | None = None  # one_way: the peer's beacons are due this often

    @property
    def ways(self) -> tuple[ChannelWay, ChannelWay]:
        return self.down, self.up

    @property
    def sent(self) -> ChannelWay:
        return self.down if self.down.sending else self.up

    @property
    def received(self) -> ChannelWay:
        return self.up if self.down.sending else self.down


@dataclass(frozen=True)
class GapReport:
    """Batches of a received channel named missing: `seq_from`..`seq_to`, since `named_at`."""

    link: str
    channel: str
    seq_from: int
    seq_to: int
    named_at: datetime


@dataclass(frozen=True)
class QuarantinedBatch:
    """A file that was refused (it stays in the quarantine folder beside its reason)."""

    link: str
    channel: str
    file: str
    code: str  # stable: bad_signature, expired_key, broken_chain, …
    reason: str
    at: datetime


class UnknownLink(LookupError):
    """No active ferry bundle names this link."""

    def __init__(self, link: str) -> None:
        super().__init__(f"没有名为 {link} 的摆渡链路（启用的摆渡适配包的 ferry.channel）")
        self.link = link


class BadRange(ValueError):
    """A resend range that names nothing this side sent (or too much): nothing was written."""


class FerryChannels(Protocol):
    """The near side's ferry links, as the composition root finds them (the active ferry bundles)."""

    def links(self) -> list[LinkReport]:
        """Every link, both ways, sorted by name."""

    def gaps(self, link: str | None = None) -> list[GapReport]:
        """Open gaps, of one link or of all; `UnknownLink` for a link not configured."""

    def quarantined(self, link: str | None = None, limit: int = 100) -> list[QuarantinedBatch]:
        """The latest quarantined files first, of one link or of all; `UnknownLink` for a link not configured."""

    def resend(self, link: str, seq_from: int, seq_to: int) -> int:
        """Write the kept batches `seq_from`..`seq_to` of the channel this side sends on again; how many.
        `UnknownLink`, or `BadRange` (see `check_range`) before anything is written."""


def check_range(report: LinkReport, seq_from: int, seq_to: int) -> None:
    """A resend names batches this side sent: 1 ≤ from ≤ to ≤ the last sent, at most `MAX_RESEND` of them."""
    last = report.sent.last_seq
    if seq_from < 1 or seq_to < seq_from:
        raise BadRange(f"范围无效：应为 1 ≤ from ≤ to，收到 {seq_from}..{seq_to}")
    if seq_to > last:
        raise BadRange(f"通道 {report.sent.channel} 只发出了 {last} 批，不能重发 {seq_from}..{seq_to}")
    if seq_to - seq_from + 1 > MAX_RESEND:
        raise BadRange(f"一次最多重发 {MAX_RESEND} 批，{seq_from}..{seq_to} 有 {seq_to - seq_from + 1} 批")


def age_s(now: datetime, since: datetime | None) -> float | None:
    """Seconds since `since` (never negative: clocks across a gap drift), None when it never happened."""
    return None if since is None else max(0.0, (now - since).total_seconds())


def _way_view(way: ChannelWay, now: datetime) -> dict[str, Any]:
    return {**asdict(way), "last_batch_age_s": age_s(now, way.last_batch_at),
            "oldest_unacknowledged_age_s": age_s(now, way.oldest_unacknowledged_at),
            "oldest_gap_age_s": age_s(now, way.oldest_gap_at), "last_signal_age_s": age_s(now, way.last_signal_at)}


def link_view(report: LinkReport, now: datetime) -> dict[str, Any]:
    """A link as operators read it: the names of the API (`GET /v1/ops/ferry/channels`) and of `yiwang ferry
    status --json`, times as datetimes, ages in seconds at `now`."""
    return {"channel": report.link, "sector": report.sector, "mode": report.mode,
            "down": _way_view(report.down, now), "up": _way_view(report.up, now),
            "quarantined": sum(report.quarantined.values()), "quarantined_by_code": dict(report.quarantined),
            "resend_after_s": report.resend_after.total_seconds() if report.resend_after else None,
            "beacon_every_s": report.beacon_every.total_seconds() if report.beacon_every else None}


def gap_view(gap: GapReport, now: datetime) -> dict[str, Any]:
    return {"channel": gap.channel, "seq_from": gap.seq_from, "seq_to": gap.seq_to, "named_at": gap.named_at,
            "age_s": age_s(now, gap.named_at)}


def quarantined_view(batch: QuarantinedBatch) -> dict[str, Any]:
    return {"channel": batch.channel, "file": batch.file, "code": batch.code, "reason": batch.reason, "at": batch.at}


def link_named(channels: FerryChannels, link: str) -> LinkReport:
    """The link's report; `UnknownLink` when no active ferry bundle names it."""
    report = next((r for r in channels.links() if r.link == link), None)
    if report is None:
        raise UnknownLink(link)
    return report
