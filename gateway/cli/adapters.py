"""`yiwang adapters …`: what a sector IT team (or an operator on their behalf) does with bundles.

validate (offline) → register → test and rehearse (against the sector's test endpoint) → activate; rollback and
retire; `sign` shows what a version's signing recipe signs for a sample request.
`activate` needs the version's last test to have ended `accepted` or its last rehearsal to have passed, or `--force`
(the audit record says so).
Every command prints a readable line or table; bad input is a red message and a non-zero exit, never a
traceback.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from adapters import bundle_warnings, load_bundle, validate_bundle
from gateway.cli import output
from gateway.cli.common import PROBLEMS_FOUND, UNAVAILABLE, exit_code
from gateway.cli.output import Column, JsonOption
from gateway.domain.clock import instants_as_beijing_text
from gateway.persistence.bundle_tables import ACCEPTED, PASSED, REFUSED, UNREACHABLE
from gateway.sectors.bundle_records import (
    BundleConflict,
    BundleInvalid,
    BundleStore,
    BundleVersion,
    UnknownBundle,
    VersionUntested,
    read_archive,
)
from gateway.sectors.calls import PreviewFailed, SectorCalls
from gateway.sectors.live_registry import NoActiveAdapter
from gateway.sectors.rehearsals import NoRehearsal
from gateway.security.approvals import cli_refusal

console = Console()
err = Console(stderr=True)


def make_adapters_app(open_store: Callable[[], BundleStore], open_calls: Callable[[], SectorCalls],
                      four_eyes: Callable[[], bool] = lambda: False) -> typer.Typer:
    app = typer.Typer(help="Sector bundles: validate, register, test, rehearse, activate, roll back, retire.",
                      no_args_is_help=True)
    actor = f"cli:{getpass.getuser()}"

    @app.command()
    def validate(folder: Annotated[Path, typer.Argument(help="a bundle folder")]) -> None:
        """Check a bundle without touching any database (exit 1 on problems; warnings are printed, exit 0)."""
        problems = validate_bundle(folder)
        for problem in problems:
            err.print(f"[red]{problem}")
        if problems:
            raise typer.Exit(1)
        for warning in bundle_warnings(load_bundle(folder)):
            err.print(f"[yellow]warning: {warning}")
        console.print(f"{folder}: valid")

    @app.command()
    def register(source: Annotated[Path, typer.Argument(help="a bundle folder or its zip")]) -> None:
        """Validate and store a bundle version (status `registered`; not yet used)."""
        with readable_errors():
            version = open_store().register(read_archive(source), actor)
        for warning in version.summary.get("warnings", []):
            err.print(f"[yellow]warning: {warning}", highlight=False)
        # One line, the version third: scripts read it with `awk '{print $3}'`.
        items = version.summary.get("rehearsal_items", 0)
        console.print(f"registered {version.sector} {version.version} (sha256 {version.sha256[:12]}…; "
                      f"last rehearsal: {rehearsed_text(version.public())}, {items} item(s) in its rehearsal file)",
                      highlight=False, markup=False, soft_wrap=True)

    @app.command("test")
    def test_(sector: str, version: str) -> None:
        """Build the version against the sector's test endpoint and make one harmless call: unreachable (exit 5),
        reachable but our credentials refused (exit 1, with the sector's answer, masked), or accepted."""
        with readable_errors():
            tested = open_calls().test_version(sector, version)
        result = tested.test_result or {}
        console.print(f"{sector} {version}: {TEST_LINES[tested.test_outcome or UNREACHABLE]} "
                      f"({result.get('answer')})", highlight=False, markup=False)
        if result.get("status") is not None and tested.test_outcome != ACCEPTED:
            console.print(f"  the sector answered HTTP {result['status']}: {result.get('body')}",
                          highlight=False, markup=False)
        if tested.test_outcome != ACCEPTED:
            raise typer.Exit(UNAVAILABLE if tested.test_outcome == UNREACHABLE else PROBLEMS_FOUND)

    @app.command()
    def rehearse(sector: str, version: str, as_json: JsonOption = False) -> None:
        """Run the version's rehearsal file against the sector's test endpoint (keys `rehearsal:…`, no gateway
        case; what it created is cancelled where the bundle can) and record the result: exit 1 when an item did
        not answer as expected, 5 when the sector did not answer at all, 2 when the version has no rehearsal file."""
        with readable_errors():
            report = instants_as_beijing_text(open_calls().rehearse(sector, version).rehearsal_result or {})
        if as_json:
            output.print_object(report, as_json=True)
        else:
            _print_rehearsal(sector, version, report)
        if report.get("outcome") != PASSED:
            raise typer.Exit(UNAVAILABLE if report.get("unreachable") else PROBLEMS_FOUND)

    @app.command()
    def activate(sector: str, version: str,
                 force: Annotated[bool, typer.Option(
                     "--force", help="activate although neither the last test ended `accepted` nor the last "
                                     "rehearsal passed (or none ran)")] = False,
                 ) -> str | None:
        """Make this version the one every process uses (no restart). Refused when four-eyes is on, and (exit 2)
        when neither its last test ended `accepted` nor its last rehearsal passed, unless --force."""
        with readable_errors():
            if four_eyes():
                raise cli_refusal(f"activating {sector} {version}",
                                  f"POST /v1/adapters/{sector}/versions/{version}/activate")
            store = open_store()
            before = store.get(sector, version)
            _print(store.activate(sector, version, actor, force=force))
        # What the audit record's outcome says (`ok: …`): a forced activation and the test and rehearsal it went past.
        return before.forced()

    @app.command()
    def rollback(sector: str) -> None:
        """Activate the version that was active before."""
        with readable_errors():
            _print(open_store().rollback(sector, actor))

    @app.command()
    def retire(sector: str, version: str) -> None:
        """Retire a version that is not active."""
        with readable_errors():
            _print(open_store().retire(sector, version, actor))

    @app.command("list")
    def list_(sector: Annotated[str | None, typer.Argument(help="only this sector's versions")] = None,
              as_json: JsonOption = False) -> None:
        """Every registered version, its status, last test and last rehearsal."""
        rows = [{**v.public(), "registered_at": v.registered_at, "activated_at": v.activated_at}
                for v in open_store().versions(sector)]
        output.print_rows(rows, COLUMNS, as_json=as_json, title="bundle versions")

    @app.command()
    def preview(sector: str, operation: str,
                case_no: Annotated[str | None, typer.Option(help="render for this case")] = None,
                param: Annotated[list[str] | None, typer.Option(help="a query parameter, name=value")] = None,
                as_json: JsonOption = False) -> None:
        """Render what the active version would send, without calling the sector."""
        params = dict(p.split("=", 1) for p in param or [] if "=" in p)
        with readable_errors():
            rendered = open_calls().preview(sector, operation, case_no, params)
        output.print_object(rendered, as_json=as_json)

    @app.command()
    def sign(sector: str, version: str,
             sample: Annotated[Path, typer.Option(help="a JSON sample request: {method, path, query?, headers?, "
                                                       "body? (object or string), form?}")],
             as_json: JsonOption = False) -> None:
        """Show what the version's signing recipe signs for a sample request: the signed text, the headers, query
        or body fields added, and the signature (secrets masked), to compare with the sector's own code."""
        with readable_errors():
            try:
                request = json.loads(sample.read_text(encoding="utf-8"))
                shown = open_calls().sign_sample(sector, version, request)
            except ValueError as exc:  # the sample, or a bundle that cannot sign here (a secret missing)
                err.print(f"[red]error: {exc}")
                raise typer.Exit(2) from exc
        output.print_object(shown, as_json=as_json)

    return app


COLUMNS = (Column("sector"), Column("version", identifier=True), Column("status"), Column("kind"),
           Column("registered_at", "registered"), Column("registered_by", "by"),
           Column("test_outcome", "tested", shown=lambda row: row["test_outcome"] or ""),
           Column("rehearsal", "rehearsed", shown=lambda row: rehearsed_text(row) if row["rehearsal"] else ""))
REHEARSAL_COLUMNS = (Column("name", "item"), Column("operation"), Column("passed", "result",
                     shown=lambda row: "pass" if row["passed"] else "FAIL"),
                     Column("reasons", "why"), Column("request", shown=lambda row: output.json_text(row["request"])),
                     Column("answer", shown=lambda row: output.json_text(row["answer"])))
TEST_LINES = {UNREACHABLE: "NOT reachable", REFUSED: "reachable, but our credentials were refused",
              ACCEPTED: "reachable, credentials accepted"}


def rehearsed_text(public: Mapping[str, Any]) -> str:
    """A version's last rehearsal in a few words: "passed 4/4 2026-12-07 19:20"; "none" if never rehearsed."""
    last = public["rehearsal"]
    if last is None:
        return "none"
    return f"{last['outcome']} {last['passed']}/{last['total']} {str(last['at'])[:16].replace('T', ' ')}"


def _print_rehearsal(sector: str, version: str, report: dict[str, Any]) -> None:
    title = f"rehearsal of {sector} {version}: {report['outcome']} {report['passed']}/{report['total']}"
    output.print_rows(report["items"], REHEARSAL_COLUMNS, as_json=False, title=title)
    for cancelled in report["cleanup"]:
        said = "cancelled" if cancelled.get("cancelled") else f"NOT cancelled: {output.json_text(cancelled)}"
        console.print(f"  {cancelled['sector_ref']} ({cancelled['item']}): {said}", highlight=False, markup=False)
    if report.get("note"):
        console.print(f"  {report['note']}", highlight=False, markup=False)


def _print(version: BundleVersion) -> None:
    console.print(f"{version.sector} {version.version}: {version.status}")


@contextmanager
def readable_errors() -> Iterator[None]:
    try:
        yield
    except BundleInvalid as exc:
        for problem in exc.problems:
            err.print(f"[red]{problem}")
        raise typer.Exit(2) from exc
    except (BundleConflict, VersionUntested, UnknownBundle, NoActiveAdapter, PreviewFailed, PermissionError,
            NoRehearsal, OSError) as exc:
        err.print(f"[red]error: {exc}")
        raise typer.Exit(exit_code(exc)) from exc  # 3 for an unknown bundle, 4 for four eyes
