"""The CLI's start: CPU seconds of `yiwang --version`, side by side with `yiwang --help`.

`version_cpu_s` is what any command pays before it does anything (the interpreter, typer, the root's imports;
the issue's goal: at most 0.3 s); `help_cpu_s` adds rendering the root's help from the table of command
groups (gateway/bootstrap/cli.py), without importing any group. Each figure is the CPU time (user + system)
of the child process, from `resource.getrusage(RUSAGE_CHILDREN)` before and after it ran: less bent than
wall time by whatever else runs on the machine. The two commands run in turn (the order flipped each round)
after one warm-up run of each, 7 runs each (3 with --quick); the project's modules are compiled to bytecode
first, as an install leaves them. The console script is the installed `yiwang` beside this interpreter.
"""

from __future__ import annotations

import os
import resource
import subprocess

from bench import Options, figure
from bench.harness import YIWANG
from bench.startup import compile_bytecode

TARGET_VERSION_CPU_S = 0.3
COMMANDS = {"version_cpu_s": ("--version",), "help_cpu_s": ("--help",)}


def run(options: Options) -> dict[str, object]:
    compile_bytecode()
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    for args in COMMANDS.values():  # warm-up: the page cache holds the interpreter and the modules
        child_cpu_s(args, env)
    runs = 3 if options.quick else 7
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for round_ in range(runs):
        names = list(COMMANDS) if round_ % 2 == 0 else list(reversed(COMMANDS))
        for name in names:
            samples[name].append(child_cpu_s(COMMANDS[name], env))
    entry: dict[str, object] = {name: figure(values, "s", 3) for name, values in samples.items()}
    median = figure(samples["version_cpu_s"], "s", 3)["median"]
    entry.update(target=TARGET_VERSION_CPU_S, met=median <= TARGET_VERSION_CPU_S)
    return entry


def child_cpu_s(args: tuple[str, ...], env: dict[str, str]) -> float:
    """CPU seconds (user + system) one `yiwang ARGS` spent, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([YIWANG, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
