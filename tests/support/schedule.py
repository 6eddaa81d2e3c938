"""Long tests first, one share of them per xdist worker: the order `make test` hands the tests out in.

Contract: under `pytest -n N --dist worksteal` the collection is reordered so that each worker's first share
(worksteal gives worker k the k-th contiguous slice of the collection to start with) opens with its part of
the long tests — split between the workers so their sums are even (longest first, each to the lightest) —
followed by short tests in their usual order; tests marked `cluster` go to two workers at most. An idle
worker steals from the *end* of a busy worker's queue, so the short tests balance the end of the run and no
long test is left to start last. Nothing is added, dropped or skipped; without xdist (or with another
`--dist`) the order is pytest's own.

How long is long: what this test took in the last runs (every test's time, setup and teardown included, is
kept in pytest's cache, `.pytest_cache`, key LAST_DURATIONS); a test not timed yet is weighed by what its
author declared — a `slow` mark or a pytest-timeout above the default — at UNTIMED_SLOW_S.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest

LAST_DURATIONS = "yiwang/durations"
DIST = "yiwang/dist"  # the controller's --dist, handed to the workers
LONG_S = 4.0  # a test at least this long is dealt out with the long ones
UNTIMED_SLOW_S = 30.0  # the weight of a test marked slow (or given a long timeout) that was never timed here
DEFAULT_TIMEOUT_S = 60  # pyproject's [tool.pytest.ini_options] timeout: a test declaring more is a long one
# Tests marked `cluster` (tests/faults/test_faults.py: an API and three workers, up to 46 PostgreSQL connections,
# CPU-bound) are dealt to this many workers only, so no more than two clusters run at once (three would near
# PostgreSQL's max_connections of 100 and starve each other of CPU); the other long tests fill the rest. (In a
# selection of little but cluster tests, say `pytest -n 3 tests/faults`, the slices are too short to hold them
# back: a third worker may start one.)
CLUSTERS_AT_ONCE = 2


def is_cluster(item: pytest.Item) -> bool:
    return item.get_closest_marker("cluster") is not None


def weight(item: pytest.Item, timed: dict[str, float]) -> float:
    """Seconds the test is expected to take: its last time, else what its marks say (0: short)."""
    if item.nodeid in timed:
        return timed[item.nodeid]
    timeout = item.get_closest_marker("timeout")
    declared_long = bool(timeout and timeout.args and float(timeout.args[0]) > DEFAULT_TIMEOUT_S)
    return UNTIMED_SLOW_S if item.get_closest_marker("slow") or declared_long else 0.0


def deal(items: Sequence[pytest.Item], weights: dict[str, float], workers: int) -> list[pytest.Item]:
    """The collection in the order that gives each worker's opening slice its even share of the long tests."""
    long = sorted((i for i in items if weights[i.nodeid] >= LONG_S), key=lambda i: (-weights[i.nodeid], i.nodeid))
    short = [i for i in items if weights[i.nodeid] < LONG_S]
    hands: list[list[pytest.Item]] = [[] for _ in range(workers)]
    sums = [0.0] * workers
    cluster_hands = range(min(workers, CLUSTERS_AT_ONCE))
    for item in sorted(long, key=lambda i: not is_cluster(i)):  # the clusters first: they may take fewer hands
        hands_open = cluster_hands if is_cluster(item) else range(workers)
        lightest = min(hands_open, key=lambda w: (sums[w], w))
        hands[lightest].append(item)
        sums[lightest] += weights[item.nodeid]
    for hand in hands:
        hand.sort(key=lambda i: (-weights[i.nodeid], i.nodeid))
    ordered: list[pytest.Item] = []
    left = len(items)
    for w, hand in enumerate(hands):  # worksteal's first round: len(pending) // nodes_remaining each, in turn
        size = left // (workers - w)
        fill = max(0, size - len(hand))
        ordered += hand + short[:fill]
        short = short[fill:]
        left -= len(hand) + fill
    return ordered + short


def last_durations(config: pytest.Config) -> dict[str, float]:
    cache = getattr(config, "cache", None)
    return dict(cache.get(LAST_DURATIONS, {})) if cache is not None else {}


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """The controller reads the times once and hands them to every worker: their collections must come out in
    the same order, even if another run rewrites the cache while they collect."""
    node.workerinput[LAST_DURATIONS] = last_durations(node.config)
    node.workerinput[DIST] = node.config.getoption("dist")  # a worker's own `dist` option reads "no"


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture scope
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or workerinput.get(DIST) != "worksteal":
        return
    timed: dict[str, float] = workerinput.get(LAST_DURATIONS, {})
    weights = {item.nodeid: weight(item, timed) for item in items}
    items[:] = deal(items, weights, int(workerinput["workercount"]))


_durations: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Every phase's time, on the process that writes the cache (xdist's controller gets every report)."""
    _durations[report.nodeid] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The tests timed in this run replace their old times; the others keep theirs."""
    cache = getattr(session.config, "cache", None)
    if cache is None or hasattr(session.config, "workerinput") or not _durations:
        return
    timed = last_durations(session.config)
    timed.update({nodeid: round(seconds, 2) for nodeid, seconds in _durations.items()})
    cache.set(LAST_DURATIONS, timed)
