"""What operators read of a ferry link, without a database: a resend range is checked before anything is
written, ages never go negative (clocks drift across a gap), the metrics show each link both ways with a 0 for
every quarantine code, and ages read as people read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.core import Metric

from gateway.cli.ferry import duration
from gateway.sectors.ferry_channels import (
    MAX_RESEND,
    BadRange,
    ChannelWay,
    GapReport,
    LinkReport,
    QuarantinedBatch,
    UnknownLink,
    check_range,
    link_named,
    link_view,
)
from ops.gateway_metrics import QUARANTINE_CODES, ferry_metrics

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def report(sent: int = 12, *, signal_ago: timedelta | None = timedelta(minutes=4)) -> LinkReport:
    down = ChannelWay("public_security.down", "down", True, sent, NOW - timedelta(seconds=30), lag=2,
                      unacknowledged=2, oldest_unacknowledged_at=NOW - timedelta(minutes=11), unwritten=1)
    up = ChannelWay("public_security.up", "up", False, 7, NOW + timedelta(seconds=5), lag=3, highest_seen=10,
                    open_gaps=1, oldest_gap_at=NOW - timedelta(minutes=20),
                    last_signal_at=None if signal_ago is None else NOW - signal_ago)
    return LinkReport("public_security", "public_security", "one_way", down, up, {"bad_signature": 2},
                      resend_after=timedelta(minutes=5), beacon_every=timedelta(minutes=1))


class Links:
    def __init__(self, *reports: LinkReport) -> None:
        self.reports = list(reports)

    def links(self) -> list[LinkReport]:
        return self.reports

    def gaps(self, link: str | None = None) -> list[GapReport]:
        return []

    def quarantined(self, link: str | None = None, limit: int = 100) -> list[QuarantinedBatch]:
        return []

    def resend(self, link: str, seq_from: int, seq_to: int) -> int:
        return 0


class FixedClock:
    def now(self) -> datetime:
        return NOW


@pytest.mark.parametrize(("seq_from", "seq_to", "says"), [
    (0, 3, "1 ≤ from ≤ to"), (5, 4, "1 ≤ from ≤ to"), (3, 13, "只发出了 12 批"), (-1, -1, "1 ≤ from ≤ to")])
def test_a_resend_range_must_name_batches_this_side_sent(seq_from: int, seq_to: int, says: str) -> None:
    with pytest.raises(BadRange, match=says):
        check_range(report(), seq_from, seq_to)
    check_range(report(), 1, 12)
    check_range(report(), 12, 12)


def test_a_resend_range_is_capped() -> None:
    with pytest.raises(BadRange, match=f"最多重发 {MAX_RESEND}"):
        check_range(report(sent=MAX_RESEND + 5), 1, MAX_RESEND + 1)
    check_range(report(sent=MAX_RESEND + 5), 2, MAX_RESEND + 1)


def test_an_unknown_link_is_named_in_the_refusal() -> None:
    with pytest.raises(UnknownLink, match="civil_affairs"):
        link_named(Links(report()), "civil_affairs")
    assert link_named(Links(report()), "public_security").sector == "public_security"


def test_the_view_shows_both_ways_with_ages_never_negative() -> None:
    view = link_view(report(), NOW)
    assert view["down"]["last_batch_age_s"] == 30 and view["down"]["oldest_unacknowledged_age_s"] == 660
    assert view["up"]["last_batch_age_s"] == 0  # the far side's clock is ahead: no negative age
    assert view["up"]["last_signal_age_s"] == 240 and view["up"]["oldest_gap_age_s"] == 1200
    assert view["quarantined"] == 2 and view["quarantined_by_code"] == {"bad_signature": 2}
    assert (view["resend_after_s"], view["beacon_every_s"]) == (300, 60)
    assert link_view(report(signal_ago=None), NOW)["up"]["last_signal_age_s"] is None


def samples(metrics: list[Metric]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(s.name, tuple(s.labels.values())): s.value for family in metrics for s in family.samples}


def test_the_metrics_show_each_link_from_its_report() -> None:
    shown = samples(ferry_metrics(Links(report()), FixedClock()))
    link = ("public_security",)
    assert shown[("yiwang_ferry_last_batch_age_seconds", ("public_security", "down"))] == 30
    assert shown[("yiwang_ferry_last_batch_age_seconds", ("public_security", "up"))] == 0
    assert shown[("yiwang_ferry_unacknowledged_batches", link)] == 2
    assert shown[("yiwang_ferry_unwritten_batches", link)] == 1
    assert shown[("yiwang_ferry_oldest_unacknowledged_seconds", link)] == 660
    assert shown[("yiwang_ferry_open_gaps", link)] == 1 and shown[("yiwang_ferry_oldest_gap_seconds", link)] == 1200
    assert shown[("yiwang_ferry_beacon_age_seconds", link)] == 240
    assert shown[("yiwang_ferry_beacon_interval_seconds", link)] == 60
    assert shown[("yiwang_ferry_resend_after_seconds", link)] == 300
    quarantined = {labels[1]: value for (name, labels), value in shown.items() if name == "yiwang_ferry_quarantined_total"}
    assert quarantined == dict.fromkeys(QUARANTINE_CODES, 0) | {"bad_signature": 2}  # a 0 before the first of a kind


def test_a_time_that_never_happened_has_no_sample() -> None:
    shown = samples(ferry_metrics(Links(report(signal_ago=None)), FixedClock()))
    assert ("yiwang_ferry_beacon_age_seconds", ("public_security",)) not in shown
    assert samples(ferry_metrics(Links(), FixedClock())) == {}


@pytest.mark.parametrize(("seconds", "text"), [
    (None, ""), (0.4, "0s"), (45, "45s"), (192, "3m 12s"), (7500, "2h 05m"), (273_600, "3d 04h")])
def test_ages_read_as_people_read_them(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text
