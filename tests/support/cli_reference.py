"""The command tables of docs/cli.md, made from the typer tree so the reference cannot drift from the CLI.

docs/cli.md is prose written by hand around one table per command group; each table sits between the markers
`<!-- cli:GROUP -->` and `<!-- /cli:GROUP -->` and is what `table(GROUP)` renders: a row per command, its
synopsis (arguments in capitals, `[ ]` around what may be left out, `…` after what may be repeated) and the
first paragraph of its help. tests/unit/test_docs.py holds the page equal to `current()`; `make cli-reference`
(`python -m tests.support.cli_reference`) rewrites the tables after a change to the CLI."""

from __future__ import annotations

import re
import sys
from typing import Any

from typer.main import get_command

from gateway.bootstrap.cli import app as cli_app
from tests.support.markdown import ROOT

PAGE = ROOT / "docs" / "cli.md"
SECTION = re.compile(r"(?P<open><!-- cli:(?P<group>[a-z]+) -->\n)(?P<table>.*?)(?P<close><!-- /cli:(?P=group) -->)",
                     re.DOTALL)


def _word(param: Any) -> str:
    """How a parameter reads in a synopsis: `NAME`, `--opt NAME`, `--flag`, with `…` when repeated."""
    metavar = param.name.upper()
    if param.param_type_name == "argument":
        text = metavar
    elif param.is_flag:
        text = param.opts[0]
    else:
        text = f"{param.opts[0]} {metavar}"
    return f"{text} …" if param.multiple or getattr(param, "nargs", 1) == -1 else text


def synopsis(path: str, command: Any) -> str:
    """`yiwang GROUP NAME ARGS [--optional X] --required Y`: required options after the arguments, then the
    optional ones, in the order the command declares them (hidden ones, such as deprecated spellings, left
    out)."""
    params = [param for param in command.params if not getattr(param, "hidden", False) and param.name != "help"]
    arguments = [_word(param) if param.required else f"[{_word(param)}]"
                 for param in params if param.param_type_name == "argument"]
    options = [param for param in params if param.param_type_name == "option"]
    required = [_word(param) for param in options if param.required]
    optional = [f"[{_word(param)}]" for param in options if not param.required]
    return " ".join([path, *arguments, *required, *optional])


def summary(command: Any) -> str:
    """The first paragraph of the command's help, on one line (`|` escaped for the table)."""
    first = (command.help or "").strip().split("\n\n", 1)[0]
    return " ".join(first.split()).replace("|", "\\|")


def table(group: str) -> str:
    """The Markdown table of the group's commands, in the order `yiwang GROUP --help` lists them."""
    commands = get_command(cli_app).commands[group].commands
    rows = [f"| `{synopsis(f'yiwang {group} {name}', command)}` | {summary(command)} |"
            for name, command in commands.items() if not command.hidden]
    return "\n".join(["| command | what it does |", "|---|---|", *rows, ""])


def current(text: str) -> str:
    """The page with every marked table rendered anew from the CLI."""
    return SECTION.sub(lambda found: found["open"] + table(found["group"]) + found["close"], text)


def groups(text: str) -> list[str]:
    """The groups whose tables the page marks."""
    return [found["group"] for found in SECTION.finditer(text)]


if __name__ == "__main__":  # make cli-reference
    before = PAGE.read_text(encoding="utf-8")
    after = current(before)
    PAGE.write_text(after, encoding="utf-8")
    sys.stdout.write("docs/cli.md: " + ("rewritten\n" if after != before else "already current\n"))
