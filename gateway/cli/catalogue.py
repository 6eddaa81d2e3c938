"""`yiwang catalogue …`: import, export, list and validate the matter catalogue.

The composition root (gateway/bootstrap/cli.py) wires the group with `make_catalogue_app(open_catalogue)`, so
this module never builds an engine itself. Every failure is a readable message and an exit code:
1 for problems with the catalogue, 2 for a database that cannot be used — never a traceback.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from gateway.catalogue.matters import (
    Catalogue,
    CatalogueError,
    InvalidMatter,
    dump_catalogue,
    load_catalogue_file,
    matter_to_document,
    validate_catalogue,
)
from gateway.cli import output
from gateway.cli.common import PROBLEMS_FOUND, exit_code
from gateway.cli.output import Column, JsonOption, QuietOption, Row
from gateway.domain.matter import Matter, MatterType, ServiceObject, TimeUnit
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
        quiet: QuietOption = False,
    ) -> None:
        """Store every matter of FILE as its next version (all or nothing), published unless --draft.
        With four-eyes on only --draft is allowed: publish each draft over the API."""
        with _readable_errors():
            if four_eyes() and not draft:
                raise cli_refusal("publishing", "import with --draft, then POST "
                                  "/v1/catalogue/matters/{code}/versions/{version}/publish")
            matters = load_catalogue_file(file)
            with output.progress("importing matters", len(matters), quiet=quiet) as advance:
                stored = open_catalogue().import_matters(matters, actor, publish=not draft,
                                                         progress=advance)
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
    def list_(
        department: Annotated[str | None, typer.Option(help="lead or co-department: part of its name, or its "
                                                            "credit code")] = None,
        level: Annotated[int | None, typer.Option(min=1, max=6, help="1 national … 6 village")] = None,
        matter_type: Annotated[MatterType | None, typer.Option("--type", help="事项类型 code")] = None,
        service_object: Annotated[ServiceObject | None, typer.Option(help="服务对象 code")] = None,
        q: Annotated[str | None, typer.Option("--q", help="text in the name, the codes or the materials")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """The published matters, one line each, filtered as GET /v1/matters filters them."""
        with _readable_errors():
            matters = open_catalogue().search(department=department, level=level, type=matter_type,
                                              service_object=service_object, text=q)
        output.print_rows([_summary(m) for m in matters], COLUMNS, as_json=as_json,
                          title=f"published matters: {len(matters)}")

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


# The fields of a catalogue listing's line, as GET /v1/matters answers them (MatterSummary).
SUMMARY_FIELDS = ("implementation_code", "basic_code", "name", "type", "level", "version", "implementing_body",
                  "co_departments", "promised_limit", "service_objects", "handling_forms")
COLUMNS = (Column("implementation_code", "implementation code", identifier=True), Column("version", "v"),
           Column("name"), Column("type"), Column("level"),
           Column("implementing_body", "departments", shown=lambda row: _departments(row)),
           Column("co_departments", "sectors", shown=lambda row: _sectors(row)),
           Column("promised_limit", "promised", shown=lambda row: _promised(row["promised_limit"])))


def _summary(m: Matter) -> dict[str, Any]:
    document = matter_to_document(m)
    return {name: document[name] for name in SUMMARY_FIELDS}


def _departments(row: Row) -> str:
    co = row["co_departments"]
    return str(row["implementing_body"]["name"]) + (f" +{len(co)}" if co else "")


def _sectors(row: Row) -> str:
    return ", ".join(sorted({d["sector"] for d in [row["implementing_body"], *row["co_departments"]] if d["sector"]})) \
        or "-"


def _promised(limit: Mapping[str, Any]) -> str:
    return "即办" if not limit["value"] else f"{limit['value']} {_UNITS[TimeUnit(limit['unit'])]}"


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
