"""The benchmark's ferry section measures what it says: every message sent across the link is applied at the
civil-affairs simulator exactly once, each has a send-to-applied latency, each batch a size, and the direct
path delivers the same kind of message to the same simulator."""

from __future__ import annotations

import pytest

from adapters.simulators.civil_affairs import CivilAffairsSimulator
from bench import ferry


@pytest.fixture(autouse=True)
def civil_affairs_password(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ferry.SECRETS.items():
        monkeypatch.setenv(name, value)


def test_every_message_sent_across_is_applied_once_with_its_latency() -> None:
    with CivilAffairsSimulator(decision_delay_ms=600_000) as sector:
        deliver = ferry._deliverer(sector.url)
        count = ferry.BATCH_SIZE + 5  # two batches: a full one and the rest
        run = ferry._across(deliver, count, 0)
        assert sector.counters["cases_created"] == count
        assert len(run.latencies_ms) == count and min(run.latencies_ms) > 0 and run.msgs_per_s > 0
        assert len(run.batch_bytes) == 2 and run.batch_bytes[0] > run.batch_bytes[1]
        assert ferry._direct(deliver, 5, 0) > 0
        assert sector.counters["cases_created"] == count + 5
        assert len(ferry._one_at_a_time(deliver, 2)) == 2
        assert sector.counters["cases_created"] == count + 7
