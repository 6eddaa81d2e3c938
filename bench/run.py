"""The benchmark entry: runs the sections it knows, prints a table, writes `bench-report.json`.

How to run
----------
    make bench                  # every section, full counts (the virtualenv is built first)
    make bench QUICK=1          # smaller counts: a smoke run for CI, under 2 minutes in all
    .venv/bin/python -m bench.run [--quick] [--section mapping ...] [--profile] [--output PATH]

Run it from the repository root (`make` does). The report goes to `bench-report.json` at the repository
root (git-ignored). Sections run now replace their earlier entry; sections not run now are kept from the
previous report if it was written on the same machine (same `machine` facts), so `--section X` refreshes
one section without losing the others. Run on a quiet machine: the figures are throughputs.

What the report holds
---------------------
    {"format": 1, "timestamp": "<UTC, ISO-8601>", "quick": bool,
     "machine": {"cpu_count", "usable_cpus", "python", "implementation", "platform", "machine", "versions"},
     "<section>": {"measured_at", "quick", "seconds", ..., "<figure>": {"median", "min", "max", "runs", "unit"},
                   "target"?, "met"?, ...}}

Every figure is the median of repeated runs (>= 5, 3 with --quick) after a warm-up, with its spread; build
figures with `bench.figure` and measure with `bench.calibrate` / `bench.interleaved` (bench/__init__.py)
so they all mean the same. A section that fails gets {"error": "..."} and the run exits non-zero; a missed
target does not fail the run (it is reported as `"met": false`).

How to add a section
--------------------
1. Write `bench/<name>.py` with a docstring saying what is measured and a function
   `run(options: bench.Options) -> dict` returning the section's entry: figures (`bench.figure(...)`),
   plus any facts worth keeping (counts, sizes, `target` and `met` when the issue sets a target, notes
   such as `limited_by`). Honour `options.quick` (smaller counts, 3 repetitions) and `options.profile`.
   Build expensive things (adapters, zeep clients, databases, servers) once, outside the timed loops,
   and clean up what you start.
2. Add it to `SECTIONS` below, in the order it should run ("bench.name" for its `run`, "bench.name:function"
   for another function: one module may hold several sections). The table shows every figure,
   `target`/`met` and the `limited_by`/`note` strings of every section without further work.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench import Options, is_figure

# name -> "module" holding `run(options) -> dict`, or "module:function", in running order. Imported only
# when its section runs, so one section's heavy imports (or missing services) do not stop the others.
SECTIONS: Mapping[str, str] = {
    "cli": "bench.cli",
    "mapping": "bench.mapping",
    "sync_query": "bench.sync_query",
    "startup": "bench.startup",
    "e2e_embedded": "bench.e2e:embedded",
    "e2e_postgres_rabbitmq": "bench.e2e:postgres_rabbitmq",
    "scaling": "bench.e2e:scaling",
    "replay": "bench.replay",
    "ferry": "bench.ferry",
}

REPORT = Path(__file__).resolve().parents[1] / "bench-report.json"
FORMAT = 1
_META = frozenset({"format", "timestamp", "quick", "machine"})
_NOTES = ("limited_by", "note", "error")
_VERSIONS = ("zeep", "lxml", "SQLAlchemy", "fastapi", "httpx")


def machine() -> dict[str, Any]:
    """The facts a figure depends on; a report from another machine's run is not merged with this one."""
    affinity = getattr(os, "sched_getaffinity", None)
    versions = {}
    for name in _VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(affinity(0)) if affinity else os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "versions": versions,
    }


def run_section(name: str, options: Options) -> dict[str, Any]:
    started = time.perf_counter()
    measured_at = _now()
    try:
        module, _, function = SECTIONS[name].partition(":")
        section: Callable[[Options], dict[str, Any]] = getattr(importlib.import_module(module), function or "run")
        entry = dict(section(options))
    except Exception as exc:  # one broken section must not lose the others' figures
        traceback.print_exc()
        entry = {"error": f"{type(exc).__name__}: {exc}"}
    seconds = round(time.perf_counter() - started, 1)
    return {"measured_at": measured_at, "quick": options.quick, "seconds": seconds, **entry}


def merge(previous: Mapping[str, Any], fresh: Mapping[str, dict[str, Any]], options: Options) -> dict[str, Any]:
    """The new report: this run's sections, plus the previous report's others if made on this machine."""
    facts = machine()
    kept = {}
    if previous.get("format") == FORMAT and previous.get("machine") == facts:
        kept = {key: value for key, value in previous.items() if key not in _META and key not in fresh}
    report: dict[str, Any] = {"format": FORMAT, "timestamp": _now(), "quick": options.quick, "machine": facts}
    ordered = [name for name in SECTIONS if name in kept or name in fresh]
    ordered += sorted(name for name in kept if name not in SECTIONS)  # sections this version no longer runs
    for name in ordered:
        report[name] = fresh.get(name, kept.get(name))
    return report


def read_report(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)  # atomic: a reader never sees half a report


def table(report: Mapping[str, Any], names: Sequence[str]) -> Table:
    grid = Table(title=f"bench-report ({'quick' if report['quick'] else 'full'}) {report['timestamp']}",
                 box=box.SIMPLE_HEAD)
    for column in ("section", "figure", "median", "min", "max", "runs"):  # figure names carry the unit
        grid.add_column(column, justify="left" if column in ("section", "figure") else "right", no_wrap=True)
    for name in names:
        entry = report.get(name) or {}
        shown = name
        for key, value in entry.items():
            if is_figure(value):
                grid.add_row(shown, key, *(_number(value[k]) for k in ("median", "min", "max")), str(value["runs"]))
                shown = ""
        if "target" in entry:
            met = entry.get("met")
            verdict = "[green]met[/green]" if met else "[red]missed[/red]"
            grid.add_row(shown, "target", _number(entry["target"]), "", "", verdict)
            shown = ""
        if "error" in entry:
            grid.add_row(shown, "[red]error[/red]", "", "", "", "")
    return grid


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and abs(value) < 10:
        return f"{value:.3f}"
    return f"{value:.1f}" if isinstance(value, float) and abs(value) < 1000 else f"{value:,.0f}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (CI smoke run, < 2 minutes)")
    parser.add_argument("--section", action="append", choices=list(SECTIONS), metavar="NAME",
                        help=f"run only this section (repeatable; known: {', '.join(SECTIONS)})")
    parser.add_argument("--profile", action="store_true", help="profile even where the target is met")
    parser.add_argument("--output", type=Path, default=REPORT, help=f"report path (default: {REPORT.name})")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, profile=args.profile)
    names = [name for name in SECTIONS if not args.section or name in args.section]

    console = Console()
    fresh = {}
    for name in names:
        console.print(f"[bold]{name}[/bold]{' (quick)' if options.quick else ''}…")
        fresh[name] = run_section(name, options)
    report = merge(read_report(args.output), fresh, options)
    write_report(args.output, report)

    console.print(table(report, names))
    for name in names:
        for key in _NOTES:
            if key in fresh[name]:
                console.print(f"[bold]{name}.{key}[/bold]: {fresh[name][key]}", highlight=False)
    console.print(f"written: {args.output}")
    return 1 if any("error" in entry for entry in fresh.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
