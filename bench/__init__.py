"""Benchmarks of the gateway (`python -m bench.run`, see `bench.run` for how to run and extend them).

This module holds the measuring helpers every section shares, so that every figure in
`bench-report.json` means the same thing: the median of repeated runs, with its spread.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Batch = Callable[[int], None]  # runs the measured operation n times


def figure(samples: Sequence[float], unit: str, digits: int = 1) -> dict[str, Any]:
    """One reported figure: the median of `samples` and their spread (min, max, how many runs)."""
    if not samples:
        raise ValueError("a figure needs at least one sample")
    return {
        "median": round(statistics.median(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "runs": len(samples),
        "unit": unit,
    }


def is_figure(value: Any) -> bool:
    return isinstance(value, Mapping) and {"median", "min", "max", "runs"} <= value.keys()


def timed(batch: Batch, n: int) -> float:
    """Seconds `batch(n)` takes (perf_counter), after a collection so earlier garbage is not billed here."""
    gc.collect()
    start = time.perf_counter()
    batch(n)
    return time.perf_counter() - start


def calibrate(batch: Batch, target_s: float, start: int = 8) -> int:
    """How many iterations make one run last about `target_s`; running it also warms the operation up.

    Doubles n until a run lasts a tenth of the target, then scales. The time spent here is the warm-up
    (caches, lazy imports, zeep's type lookups, the CPU's clock ramping up).
    """
    n = start
    while True:
        elapsed = timed(batch, n)
        if elapsed >= target_s / 10 or n >= 1 << 26:
            return max(1, round(n * target_s / max(elapsed, 1e-9)))
        n *= 2


def interleaved(
    batches: Mapping[str, Batch], counts: Mapping[str, int], repeats: int, slices: int = 10
) -> dict[str, list[float]]:
    """Throughputs (operations per second) of each batch, `repeats` times, measured side by side.

    One repetition runs each batch's `counts[name]` iterations in `slices` slices, taking the batches in
    turn slice by slice (A B C, C B A, A B C, ...: the order flips every round so none always runs
    first), and sums each batch's slice times. Machine noise (other processes, frequency changes)
    thus lands on every batch of a repetition alike, which is what makes ratios between them steady.
    """
    names = list(batches)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        done = dict.fromkeys(names, 0)
        for round_ in range(slices):
            for name in names if round_ % 2 == 0 else reversed(names):
                n = counts[name] * (round_ + 1) // slices - done[name]
                done[name] += n
                spent[name] += timed(batches[name], n) if n else 0.0
        for name in names:
            samples[name].append(done[name] / spent[name])
    return samples


@dataclass(frozen=True)
class Options:
    """What `bench.run` passes every section."""

    quick: bool = False  # smaller counts: a smoke run for CI (< 2 minutes for every section together)
    profile: bool = False  # profile even when a target is met (sections that profile when they miss)
