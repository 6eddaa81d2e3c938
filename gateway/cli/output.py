"""What every `yiwang` listing and show prints, one way, and how long commands show their progress.

A command hands over rows — mappings from the API's field names to plain values (datetimes, lists,
dicts …), personal data already masked — and the columns a person reads; this module decides the form:

- `--json`: a list is JSON lines, one object per line; a show is one JSON object. Every field of the row
  is there, times as `gateway.domain.clock.beijing_text` (`2026-12-07T20:10:00.123+08:00`).
- stdout a terminal: a rich table that fits the terminal; identifier columns (case numbers, ids, key
  ids, fingerprints) are never wrapped or cut, other text folds — never an ellipsis. When the identifiers
  alone leave no room in the terminal's width, plain columns instead (below).
- stdout piped: plain space-aligned columns, one row per line, nothing wrapped or cut; wide (CJK)
  characters are measured as two cells (rich's `cell_len`), so columns line up in a terminal later.

What is not a row — a title, a "next page" hint — is printed for people: with the rows in a table or in
plain columns (a title first), on stderr with `--json`, so that stdout holds nothing but JSON lines; stderr
stays empty otherwise (a script reads an error there).

Progress bars (`progress`) go to stderr, and only when it is a terminal and the command was not given
`--quiet`. `deprecated` is how a renamed option keeps its old spelling for one
version. Consoles are made per call, bound to the sys.stdout/stderr of the moment (CliRunner swaps them).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import IO, Annotated, Any, Protocol, TypeVar

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.domain.clock import beijing_text, to_shanghai

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for scripts (a list: one object per line, "
                                                         "e.g. `| jq -r .id`); times in Beijing time with +08:00")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar on stderr")]
Row = Mapping[str, Any]
T = TypeVar("T")
GAP = "  "  # between plain columns
FOLDED_AT_LEAST = 8  # cells a folding column needs to be worth reading in a table
SHORT = 20  # a column no value of which is wider than this is kept whole (a time, a count, a status)


@dataclass(frozen=True)
class Column:
    """One column a person reads: the row's `field`, under `header` (default: the field's name in words).
    An `identifier` is copied whole into the next command, so it is never wrapped or cut; `shown` makes the
    cell's text from the whole row when the field's value alone (through `cell`) would not say it well."""

    field: str
    header: str = ""
    identifier: bool = False
    shown: Callable[[Row], str] | None = None

    @property
    def title(self) -> str:
        return self.header or self.field.replace("_", " ")

    def text(self, row: Row) -> str:
        return self.shown(row) if self.shown is not None else cell(row.get(self.field))


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_rows(rows: Sequence[Row], columns: Sequence[Column], *, as_json: bool, title: str | None = None) -> None:
    """A list: JSON lines, a table in a terminal, plain columns when piped (the title, if any, on the line
    before the header). With `--json` the title is left out: the rows say it."""
    if as_json:
        _emit(json_text(row) for row in rows)
        return
    console = stdout()
    if console.is_terminal and _fits(rows, columns, console.width):
        console.print(_table(rows, columns, title))
        return
    _emit([*([title] if title else []), *plain_lines(rows, columns)], console.file)


def print_object(item: Row, *, as_json: bool) -> None:
    """A show: one JSON object on one line with `--json`, otherwise the same indented for people."""
    if as_json:
        _emit([json_text(item)])
        return
    console = stdout()
    indented = json.dumps(jsonable(item), ensure_ascii=False, indent=2)
    if console.is_terminal:
        console.print_json(indented)
    else:
        _emit([indented])


def note(message: str, *, as_json: bool) -> None:
    """A line for people after the rows (the next page's cursor, a count): after them on stdout, or on stderr
    with `--json`, where stdout is JSON lines only."""
    if as_json:
        stderr().print(message, markup=False)
    else:
        _emit([message], stdout().file)


def plain_lines(rows: Sequence[Row], columns: Sequence[Column]) -> list[str]:
    """The header and one line per row, space-aligned by display width; the last column is not padded."""
    cells = [[c.title for c in columns], *([_one_line(c.text(row)) for c in columns] for row in rows)]
    widths = [max(cell_len(line[i]) for line in cells) for i in range(len(columns))]
    return [GAP.join([*(_pad(text, width) for text, width in zip(line[:-1], widths, strict=False)), line[-1]])
            for line in cells]


def cell(value: Any) -> str:
    """A value as a table shows it: times in Beijing time to the second, lists joined, nothing for None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return to_shanghai(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, Mapping):
        return json_text(value)
    return str(value)


def jsonable(value: Any) -> Any:
    """`value` as JSON holds it: instants as `beijing_text`, sets as sorted lists, enums as their values."""
    if isinstance(value, datetime):
        return beijing_text(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def json_text(value: Any) -> str:
    """One line of JSON; Chinese stays readable (no \\u escapes)."""
    return json.dumps(jsonable(value), ensure_ascii=False, default=str)


class Advance(Protocol):
    def __call__(self, done: int, total: int | None = None, /) -> None:
        """How many are done so far; and how many in all, once that is known."""


@contextmanager
def progress(label: str, total: int | None, *, quiet: bool = False, done: int = 0) -> Iterator[Advance]:
    """A progress bar on stderr while the block runs; the block calls the yielded function with how many
    are done so far (and the total, once it knows it). Nothing is drawn when stderr is not a terminal or
    the command was asked to be quiet: piped output and CI logs stay clean."""
    console = Console(stderr=True)
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  disable=quiet or not console.is_terminal) as bar:
        task = bar.add_task(label, total=total, completed=done)

        def advance(now: int, total: int | None = None) -> None:
            bar.update(task, completed=now, total=total if total is not None else bar.tasks[0].total)

        yield advance


def deprecated(new_value: T, old_value: T | None, *, new: str, old: str) -> T:
    """The value of a renamed option: the new spelling's, or the old one's with a warning on stderr (the old
    spelling is kept, hidden, for one version)."""
    if old_value is None:
        return new_value
    stderr().print(f"warning: {old} is deprecated and will be removed in the next version; use {new}",
                   markup=False)
    return old_value


def _fits(rows: Sequence[Row], columns: Sequence[Column], width: int) -> bool:
    """Whether a table can show every whole column whole and leave the folding ones room; when not, plain
    lines (which the terminal may wrap, but nothing is cut) serve better than a crushed table."""
    return sum(_least(column, rows)[0] for column in columns) + 3 * len(columns) + 1 <= width  # padding, rule: 3


def _least(column: Column, rows: Sequence[Row]) -> tuple[int, bool]:
    """The fewest cells a column can have in a table, and whether it is kept whole: an identifier, or any
    column whose values are short (times, counts, codes), is never wrapped; long text folds, but not below its
    header or `FOLDED_AT_LEAST`."""
    widest = max((cell_len(column.text(row)) for row in rows), default=0)
    header = cell_len(column.title)
    if column.identifier or widest <= SHORT:
        return max(widest, header), True
    return max(header, FOLDED_AT_LEAST), False


def _table(rows: Sequence[Row], columns: Sequence[Column], title: str | None) -> Table:
    table = Table(title=title)
    for column in columns:
        least, whole = _least(column, rows)
        # fold: Chinese text has no spaces to wrap at, and a cut name is no use
        table.add_column(column.title, no_wrap=whole, overflow="fold", min_width=least)
    for row in rows:
        table.add_row(*(column.text(row) for column in columns), end_section=False)
    return table


def _emit(lines: Iterable[str], to: IO[str] | None = None) -> None:
    """Lines to stdout; a reader that stops early (`| head`) ends the command quietly, exit 0, as for any
    well-behaved Unix tool: nothing more would be read."""
    out = to or sys.stdout
    try:
        for line in lines:
            out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        # Python would report the failed flush at exit: point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        raise typer.Exit(0) from None


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\t" in text or "\r" in text else text


def _pad(text: str, width: int) -> str:
    return text + " " * (width - cell_len(text))
