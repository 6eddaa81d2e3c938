"""The order `make test` deals tests to xdist workers in (tests/support/schedule.py): long tests open each
worker's first slice, evenly summed, and nothing is lost or doubled."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.schedule import deal


@dataclass(frozen=True)
class Item:
    nodeid: str
    cluster: bool = False

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "cluster" and self.cluster else None


def first_slices(ordered: list[Item], workers: int) -> list[list[Item]]:
    """What worksteal's first round gives each worker: len(pending) // nodes_remaining, in turn."""
    slices, left = [], list(ordered)
    for w in range(workers):
        size = len(left) // (workers - w)
        slices.append(left[:size])
        left = left[size:]
    return slices


def test_each_worker_opens_with_an_even_share_of_the_long_tests_and_every_test_stays() -> None:
    items = [Item(f"t{i}") for i in range(30)]
    weights = {item.nodeid: 0.1 for item in items} | {"t3": 80.0, "t4": 60.0, "t20": 40.0, "t21": 30.0,
                                                       "t22": 20.0, "t29": 10.0}
    ordered = deal(items, weights, 3)  # type: ignore[arg-type]
    assert sorted(i.nodeid for i in ordered) == sorted(i.nodeid for i in items)
    slices = first_slices(ordered, 3)
    openings = [[i.nodeid for i in s if weights[i.nodeid] >= 4] for s in slices]
    assert openings == [["t3"], ["t4", "t22"], ["t20", "t21", "t29"]]  # 80 seconds each
    for opening, piece in zip(openings, slices, strict=True):
        assert [i.nodeid for i in piece[:len(opening)]] == opening  # the long ones first, longest first
    short = [i.nodeid for i in ordered if weights[i.nodeid] < 4]
    assert short == [i.nodeid for i in items if weights[i.nodeid] < 4]  # the rest keep their order


def test_one_worker_runs_the_long_tests_first() -> None:
    items = [Item("a"), Item("b"), Item("c")]
    ordered = deal(items, {"a": 0.0, "b": 0.0, "c": 9.0}, 1)  # type: ignore[arg-type]
    assert [i.nodeid for i in ordered] == ["c", "a", "b"]


def test_cluster_tests_go_to_two_workers_at_most_and_the_other_long_ones_fill_the_third() -> None:
    clusters = [Item(f"faults{i}", cluster=True) for i in range(6)]
    items = [Item("demo"), *clusters, *(Item(f"short{i}") for i in range(40))]
    weights = {item.nodeid: 0.1 for item in items} | {c.nodeid: 50.0 for c in clusters} | {"demo": 80.0}
    slices = first_slices(deal(items, weights, 3), 3)  # type: ignore[arg-type]
    assert [[i.nodeid for i in s if weights[i.nodeid] >= 4] for s in slices] == [
        ["faults0", "faults2", "faults4"], ["faults1", "faults3", "faults5"], ["demo"]]
