"""`yiwang catalogue …`: import, export, list and validate the matter catalogue.

The composition root (gateway/bootstrap/cli.py) wires the group with `make_catalogue_app(open_catalogue)`, so
this module never builds an engine itself. Every failure is a readable message and an exit code:
1 for problems with the catalogue, 2 for a database that cannot be used — never a traceback.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from gateway.catalogue.matters import (
    Catalogue,
    CatalogueError,
    InvalidMatter,
    dump_catalogue,
    load_catalogue_file,
    validate_catalogue,
)
from gateway.cli.common import PROBLEMS_FOUND, exit_code
from gateway.domain.matter import Matter, TimeUnit
from gateway.security.approvals import cli_refusal


class Format(StrEnum):
    yaml = "yaml"
    json = "json"


FileArg = Annotated[Path, typer.Argument(help="a catalogue file, YAML or JSON ({matters: [...]})")]


def make_catalogue_app(open_catalogue: Callable[[], Catalogue], four_eyes: Callable[[], bool] = lambda: False
                       ) -> typer.Typer:
    catalogue_app = typer.Typer(name="catalogue", help="The matter catalogue (事项目录): import, export, validate.",
                                no_args_is_help=True)

    @catalogue_app.command("import")
    def import_(
        file: FileArg,
        draft: Annotated[bool, typer.Option("--draft", help="store as drafts instead of publishing")] = False,
        actor: Annotated[str, typer.Option(help="recorded as the versions' author")] = f"cli:{_user()}",
    ) -> None:
        """Store every matter of FILE as its next version (all or nothing), published unless --draft.
        With four-eyes on only --draft is allowed: publish each draft over the API."""
        with _readable_errors():
            if four_eyes() and not draft:
                raise cli_refusal("publishing", "import with --draft, then POST "
                                  "/v1/catalogue/matters/{code}/versions/{version}/publish")
            stored = open_catalogue().import_matters(load_catalogue_file(file), actor, publish=not draft)
        what = "drafts" if draft else "published versions"
        _out().print(f"imported {len(stored)} matters as {what}")
        for m in stored:
            _out().print(f"  {m.implementation_code}  v{m.version}  {m.name}")

    @catalogue_app.command("export")
    def export(
        fmt: Annotated[Format, typer.Option("--format", help="yaml or json")] = Format.yaml,
        out: Annotated[Path | None, typer.Option("--out", help="write here instead of standard output")] = None,
    ) -> None:
        """Write the published catalogue in the file format `import` reads."""
        with _readable_errors():
            text = dump_catalogue(open_catalogue().export(), fmt.value)
            if out is None:
                typer.echo(text, nl=False)
            else:
                out.write_text(text, encoding="utf-8")
        if out is not None:
            _out().print(f"wrote {out}")

    @catalogue_app.command("list")
    def list_() -> None:
        """The published matters, one line each."""
        with _readable_errors():
            matters = open_catalogue().export()
        _out().print(_table(matters))

    @catalogue_app.command("validate")
    def validate(file: FileArg) -> None:
        """Check FILE against the catalogue rules without touching the database (exit 1 on problems)."""
        with _readable_errors():
            matters = load_catalogue_file(file)
        problems = validate_catalogue(matters)
        for problem in problems:
            _err().print(problem, markup=False, highlight=False)
        if problems:
            _err().print(f"{file}: {len(problems)} problem(s) in {len(matters)} matters")
            raise typer.Exit(1)
        _out().print(f"{file}: {len(matters)} matters, no problems")

    return catalogue_app


@contextmanager
def _readable_errors() -> Iterator[None]:
    try:
        yield
    except InvalidMatter as exc:
        _err().print(exc.summary, markup=False, highlight=False)
        for problem in exc.problems:
            _err().print(f"  {problem}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except (CatalogueError, OSError) as exc:
        _err().print(str(exc), markup=False, highlight=False)
        raise typer.Exit(exit_code(exc, PROBLEMS_FOUND)) from None  # 4: four eyes (a PermissionError)
    except SQLAlchemyError as exc:
        _err().print(f"database error: {type(exc).__name__}: {exc.args[0] if exc.args else exc}",
                     markup=False, highlight=False)
        raise typer.Exit(exit_code(exc)) from None  # 5: the database did not answer


def _table(matters: list[Matter]) -> Table:
    table = Table(title=f"published matters: {len(matters)}")
    for column in ("implementation code", "v", "name", "type", "level", "departments", "sectors", "promised"):
        # fold: Chinese text has no spaces to wrap at, and a truncated name is no use
        table.add_column(column, no_wrap=column == "implementation code", overflow="fold")
    for m in matters:
        departments = m.implementing_body.name + (f" +{len(m.co_departments)}" if m.co_departments else "")
        sectors = ", ".join(sorted({d.sector for d in m.departments if d.sector})) or "-"
        limit = "即办" if m.on_the_spot else f"{m.promised_limit.value} {_UNITS[m.promised_limit.unit]}"
        table.add_row(m.implementation_code, str(m.version), m.name, m.type.value, str(int(m.level)), departments,
                      sectors, limit)
    return table


_UNITS = {TimeUnit.WORKING_DAYS: "工作日", TimeUnit.CALENDAR_DAYS: "自然日"}


def _out() -> Console:
    # Created per call so the console writes to whatever stdout is current (CliRunner swaps it);
    # soft wrap keeps each message and problem on one line, whole for grep.
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"
