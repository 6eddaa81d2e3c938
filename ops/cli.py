"""`yiwang ops`: the operators' overview (ops/overview.py, the whole gateway, as tables or `--json`), and
operators' commands on dead letters — list and count by filter (also by correlation id, cause and a part of the
cause), group them by cause, export them as CSV, show one with its whole story, replay one or many (resumable,
cancellable), discard with a reason — and a case's journey (`add_journey_command`).

Replay sends the message again with the idempotency key of every earlier attempt, so a sector that had
applied it after all recognises the repeat. Personal data is shown masked, as in the logs. Every command
that changes something is audited by the root (`gateway.cli.audit.audit_commands`): its options (the
filter, the reason) are the record's detail, and the text it returns (how many) joins the outcome.
Bad input exits with code 2 (a dead letter or run that does not exist: 3) and changes nothing. Listings and
shows take `--json` (gateway.cli.output); a bulk replay draws its progress on stderr.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, fields, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer
from rich.markup import escape

from certstore import CryptoError
from gateway.cases.views import event_view
from gateway.cli import output
from gateway.cli.common import BAD_INPUT, NOT_FOUND, exit_code
from gateway.cli.output import Column, JsonOption, QuietOption
from gateway.domain.clock import SHANGHAI
from gateway.observability.logs import mask_text, mask_value
from gateway.persistence.repository import DeadLetter
from ops import letter_actions
from ops.dead_letters import (
    SORTS,
    BadInput,
    DeadLetterDesk,
    DeadLetterFilter,
    DeadLetterNotFound,
    NotCancellable,
    NotDiscardable,
    NotReplayable,
    ReplayRun,
    ReplayRunNotFound,
    case_outcome_of,
    check_reason,
)
from ops.journey import CaseJourney, CaseNotFound, Journey

if TYPE_CHECKING:  # the overview's service loads the web framework and the broker client: only `overview` pays
    from ops.overview import Overview, OverviewFigures

Actor = Callable[[], str]
TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]
REASON_HELP = "why (required; kept with the dead letter and audited)"
Reason = Annotated[str, typer.Option("--reason", help=REASON_HELP)]
MappingOption = Annotated[str, typer.Option(
    "--mapping", help="original: the bundle version the message died with; active: the sector's active one")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="only say how many and which; change nothing")]
Yes = Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")]
LetterId = Annotated[int, typer.Argument(help="the dead letter's id")]
CaseOutcome = Annotated[str, typer.Option(
    "--case-outcome", help="what becomes of the case (for a parallel case, the letter's task): back_office (its "
                           "department's clerk decides through the back-office API), return (returned to the "
                           "applicant with the reason) or void (作废)")]

# The filter options every listing and bulk command takes, once: `_filtered` adds them to a command.
_FILTER_OPTIONS: dict[str, Any] = {
    "sector": Annotated[str | None, typer.Option(help="the sector (it names the adapter)")],
    "version": Annotated[str | None, typer.Option(help="the bundle version the message died with")],
    "matter": Annotated[str | None, typer.Option(help="the case's matter (implementation code)")],
    "case_no": Annotated[str | None, typer.Option(help="a case number")],
    "case": Annotated[str | None, typer.Option(hidden=True, help="deprecated: --case-no")],
    "error_class": Annotated[str | None, typer.Option(help="transport, timeout, sector_fault, mapping, …")],
    "since": Annotated[datetime | None, typer.Option(formats=TIME_FORMATS, metavar="TIME",
                                                     help="created at or after (Beijing time, 2026-11-24T10:00)")],
    "until": Annotated[datetime | None, typer.Option(formats=TIME_FORMATS, metavar="TIME",
                                                     help="created before (Beijing time)")],
    "min_attempts": Annotated[int | None, typer.Option(min=0, help="at least this many calls in the last delivery")],
    "max_attempts": Annotated[int | None, typer.Option(min=0, help="at most this many")],
    "status": Annotated[str, typer.Option(help="dead, replayed, discarded, superseded or any")],
    "correlation_id": Annotated[str | None, typer.Option(
        help="the correlation id of the request or job that wrote the letter's message")],
    "cause": Annotated[str | None, typer.Option(help="a cause exactly as `yiwang ops causes` prints it")],
    "text": Annotated[str | None, typer.Option(
        help="a part of the cause, any case (error messages rest sealed: words are found, not ids or numbers)")],
}


def make_ops_app(open_desk: Callable[[], DeadLetterDesk], actor: Actor,
                 open_overview: Callable[[], AbstractContextManager[Overview]]) -> typer.Typer:
    """`open_overview`: the overview service of a gateway built for the command, closed after it."""
    app = typer.Typer(help="Operators' tools: the overview; dead letters — list, count, causes, export, show, replay, "
                           "discard.",
                      no_args_is_help=True)

    @app.command()
    def overview(as_json: JsonOption = False) -> None:
        """The operators' overview, the whole gateway: cases by state and overdue, the outbox, the queues, dead
        letters by sector and class and per day (the last 7), circuits (this command's own process: closed),
        adapters' versions with their last test and rehearsal, certificates expiring within 30 days, ferry links'
        lag and gaps. Each figure names the list it counts (`--json`: the API's answer)."""
        from ops.overview import Scope

        with _reported(), open_overview() as service:
            figures = service.overview(Scope())
        if as_json:
            output.print_object(figures.public(), as_json=True)
            return
        print_overview(figures)

    @app.command("dead-letters")
    @_filtered
    def dead_letters(chosen: DeadLetterFilter,
                     sort: Annotated[str, typer.Option(help=" | ".join(SORTS))] = "-created_at",
                     limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
                     cursor: Annotated[str | None, typer.Option(help="the next cursor a page printed")] = None,
                     as_json: JsonOption = False) -> None:
        """List dead letters by filter, newest first: messages that outlasted their retry policy."""
        with _reported():
            page = open_desk().page(chosen, sort=sort, limit=limit, cursor=cursor)
        output.print_rows([_listed(d) for d in page.items], LETTER_COLUMNS, as_json=as_json,
                          title=f"dead letters: {len(page.items)} of {page.total}")
        if page.next_cursor:
            output.note(f"next page: --cursor {page.next_cursor}", as_json=as_json)

    @app.command()
    @_filtered
    def counts(chosen: DeadLetterFilter, as_json: JsonOption = False) -> None:
        """How many dead letters match, by sector and error class."""
        with _reported():
            rows = open_desk().counts(chosen)
        counted = [{"sector": sector, "error_class": error_class, "count": n} for sector, error_class, n in rows]
        output.print_rows(counted, COUNT_COLUMNS, as_json=as_json, title=f"{sum(n for _, _, n in rows)} in all")

    @app.command("dead-letter")
    def dead_letter(letter_id: LetterId, as_json: JsonOption = False) -> None:
        """Show one dead letter whole: error, every attempt, the sector's last answer, what was sent, and the
        case's timeline (personal data masked)."""
        with _reported():
            desk = open_desk()
            letter = desk.get(letter_id)
            timeline = [{**event_view(e), "at": e.at} for e in desk.timeline(letter.case_no)]
        output.print_object({**_whole(letter), "masked": True, "timeline": timeline}, as_json=as_json)

    @app.command()
    def replay(letter_id: LetterId, reason: Reason, mapping: MappingOption = "active") -> str:
        """Deliver a dead letter's message again (same idempotency key); the dead letter is marked replayed."""
        with _reported():
            letter = open_desk().replay(letter_id, by=actor(), reason=reason, mapping=mapping)
        output.stdout().print(f"replayed dead letter {letter.id}: {letter.operation} of case {letter.case_no} to "
                              f"{letter.sector} is due again (idempotency key {letter.idempotency_key})",
                              markup=False)
        return f"replayed {letter.id}"

    @app.command("replay-many")
    @_filtered
    def replay_many(chosen: DeadLetterFilter,
                    reason: Annotated[str | None, typer.Option(help=REASON_HELP + "; not with --resume")] = None,
                    mapping: MappingOption = "active", dry_run: DryRun = False, yes: Yes = False,
                    resume: Annotated[int | None, typer.Option(help="carry on this unfinished run")] = None,
                    quiet: QuietOption = False) -> str:
        """Replay every dead letter matching the filter, in batches, resumable after an interruption:
        `--dry-run` first says how many and which; `--resume RUN_ID` carries on a run."""
        with _reported():
            desk = open_desk()
            if resume is not None:
                return _ran(desk, desk.run(resume), quiet)
            if not dry_run:
                check_reason(reason)  # before the operator is asked anything
            plan = desk.plan(chosen)
            _plan_table(plan.sample, f"{plan.count} dead letters would be replayed"
                        + (f" (the first {len(plan.sample)})" if plan.sample else ""))
            if dry_run or plan.count == 0:
                return f"dry run: {plan.count} would be replayed" if dry_run else "nothing to replay"
            if not yes:
                _confirm(f"Replay {plan.count} dead letters ({mapping} mapping)?")
            run = desk.start_replay(chosen, by=actor(), reason=reason or "", mapping=mapping)
            output.stdout().print(f"replay run {run.id}: {run.total} dead letters (resume with --resume {run.id})")
            return _ran(desk, run, quiet)

    @app.command("replay-runs")
    def replay_runs(limit: Annotated[int, typer.Option(min=1, max=500)] = 20, as_json: JsonOption = False) -> None:
        """Bulk replays, newest first: who asked, why, how far they got."""
        with _reported():
            runs = open_desk().runs(limit)
        rows = [{**{f.name: getattr(r, f.name) for f in fields(r)}, "reason": mask_text(r.reason)} for r in runs]
        output.print_rows(rows, RUN_COLUMNS, as_json=as_json, title="replay runs")

    @app.command()
    def discard(letter_id: LetterId, reason: Reason, case_outcome: CaseOutcome) -> str:
        """Set a dead letter aside for good, with a reason, and give its case a way forward in the same step: no
        replay will ever take it, and no case is left accepted with nothing in flight."""
        with _reported():
            open_desk().discard_one(letter_id, by=actor(), reason=reason, case_outcome=case_outcome)
        output.stdout().print(f"discarded dead letter {letter_id}; its case: {case_outcome}", markup=False)
        return f"discarded {letter_id}, case outcome {case_outcome}"

    @app.command("discard-many")
    @_filtered
    def discard_many(chosen: DeadLetterFilter, reason: Reason, case_outcome: CaseOutcome, dry_run: DryRun = False,
                     yes: Yes = False) -> str:
        """Discard every dead letter (status dead) matching the filter, with a reason, giving each one's case (for a
        parallel case, its task) the one way forward chosen. Letters whose case cannot take it stay dead."""
        with _reported():
            case_outcome_of(case_outcome)  # refused before anything is shown or asked
            desk = open_desk()
            page = desk.page(replace(chosen, status="dead"), sort="created_at", limit=20)
            _plan_table(page.items, f"{page.total} dead letters would be discarded")
            if dry_run or page.total == 0:
                return f"dry run: {page.total} would be discarded" if dry_run else "nothing to discard"
            if not yes:
                _confirm(f"Discard {page.total} dead letters for good, their cases: {case_outcome}?")
            done = desk.discard(chosen, by=actor(), reason=reason, case_outcome=case_outcome)
        console = output.stdout()
        for letter_id, why in done.kept:
            console.print(f"[yellow]kept dead letter {letter_id}:[/yellow] {escape(why)}")
        console.print(f"discarded {done.count} dead letters; their cases: {case_outcome}", markup=False)
        return f"discarded {done.count}, kept {len(done.kept)}, case outcome {case_outcome}"

    @app.command()
    @_filtered
    def causes(chosen: DeadLetterFilter, limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
               as_json: JsonOption = False) -> None:
        """The matching dead letters grouped by cause (the error text without its ids, times and numbers), the
        largest group first; a cause is a filter (--cause) for listing, replaying or discarding the group."""
        with _reported():
            found = open_desk().causes(chosen)
        output.print_rows([asdict(c) for c in found[:limit]], CAUSE_COLUMNS, as_json=as_json,
                          title=f"{len(found)} causes, {sum(c.count for c in found)} dead letters")

    @app.command()
    @_filtered
    def export(chosen: DeadLetterFilter, to: Annotated[Path | None, typer.Option(
            "--output", dir_okay=False, writable=True, help="the CSV file to write (default: standard output)")] = None
               ) -> str:
        """Write the matching dead letters as CSV (UTF-8 with BOM for Excel; personal data masked; Beijing times;
        at most 100000: narrow the filter otherwise). Audited: who, the filter, how many."""
        with _reported():
            desk = open_desk()
            count = letter_actions.bounded_count(desk, chosen)
            lines = letter_actions.csv_lines(desk.letters(chosen))
            if to is None:
                sys.stdout.writelines(lines)
                sys.stdout.flush()
            else:
                with to.open("w", encoding="utf-8", newline="") as file:
                    file.writelines(lines)
                output.stderr().print(f"wrote {count} dead letters to {to}", markup=False)
        return f"exported {count} dead letters"

    @app.command("cancel-replay")
    def cancel_replay(run_id: Annotated[int, typer.Argument(help="the replay run's id")], reason: Reason) -> str:
        """Stop a running bulk replay: what it replayed stays replayed; its letters not yet replayed are released
        (still dead, replayable again)."""
        with _reported():
            run, released = open_desk().cancel_replay(run_id, by=actor(), reason=reason)
        output.stdout().print(f"replay run {run.id} cancelled: {run.replayed} replayed, {released} released of "
                              f"{run.total}", markup=False)
        return f"run {run.id} cancelled: {run.replayed} replayed, {released} released of {run.total}"

    return app


# A dead letter's bodies and keys: shown whole (`dead-letter ID`), not listed — as the API's list leaves them out.
BODIES = ("outbox_id", "idempotency_key", "canonical_payload", "rendered_request", "last_response", "history")
LETTER_COLUMNS = (Column("id", identifier=True), Column("case_no", "case", identifier=True), Column("sector"),
                  Column("error_class", "class"), Column("attempts", "tries"), Column("status"),
                  Column("created_at", "created (Beijing)"), Column("error_message", "error"))
COUNT_COLUMNS = (Column("sector"), Column("error_class", "error class"), Column("count"))
CAUSE_COLUMNS = (Column("count"), Column("sector"), Column("error_class", "class"), Column("cause"),
                 Column("first_at", "first (Beijing)"), Column("last_at", "last (Beijing)"),
                 Column("sample_id", "e.g.", identifier=True))
RUN_COLUMNS = (Column("id", "run", identifier=True), Column("status"), Column("replayed"), Column("skipped"),
               Column("total"), Column("mapping"), Column("requested_by", "by"),
               Column("created_at", "started (Beijing)"), Column("reason"), Column("filter"))


def _whole(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as an operator reads it, every field (the API's names), personal data masked."""
    return {f.name: _masked(getattr(letter, f.name)) for f in fields(letter)}


def _masked(value: Any) -> Any:
    """Personal data masked wherever it nests; times stay times, for a table to show them short."""
    return value if isinstance(value, datetime) else mask_value(output.jsonable(value))


def _listed(letter: DeadLetter) -> dict[str, Any]:
    return {name: value for name, value in _whole(letter).items() if name not in BODIES}


def _plan_table(letters: list[DeadLetter], title: str) -> None:
    """What a bulk command would act on, for the operator to read before saying yes (always a table)."""
    output.print_rows([_listed(d) for d in letters], LETTER_COLUMNS, as_json=False, title=title)


def _ran(desk: DeadLetterDesk, run: ReplayRun, quiet: bool) -> str:
    """Carry a run to its end in the foreground, with a progress bar; the outcome for the audit record."""
    with output.progress(f"replay run {run.id}", run.total, quiet=quiet, done=run.replayed) as advance:
        run = desk.continue_replay(run.id, lambda now: advance(now.replayed + now.skipped))
    output.stdout().print(f"replay run {run.id} {run.status}: {run.replayed} replayed, {run.skipped} skipped "
                          f"of {run.total}")
    return f"run {run.id} {run.status}: {run.replayed} replayed, {run.skipped} skipped of {run.total}"


def _confirm(question: str) -> None:
    """Ask; a "no" ends the command with exit code 1 (audited as such), nothing changed."""
    if not typer.confirm(question):
        output.stdout().print("nothing changed")
        raise typer.Exit(1)


def _filtered(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` the filter options; it receives them as one `DeadLetterFilter` named `chosen`.
    Typer reads the options from the signature set here; the audit record gets them as typed."""
    hints = get_type_hints(command, include_extras=True)
    own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values()
           if p.name != "chosen"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                               default="dead" if name == "status" else None)
             for name, annotation in _FILTER_OPTIONS.items()]
    mandatory = [p for p in own if p.default is inspect.Parameter.empty]

    @functools.wraps(command)
    def run(**options: Any) -> Any:
        chosen = _filter_of({name: options.pop(name) for name in _FILTER_OPTIONS})
        return command(chosen, **options)

    parameters = [*mandatory, *added, *(p for p in own if p not in mandatory)]
    # Functions have no __signature__ in typeshed; inspect.signature (and so typer) reads it when set.
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters], return_annotation=None)
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    del run.__wrapped__  # typer must read the signature set here, not the command's own
    return run


def _filter_of(options: dict[str, Any]) -> DeadLetterFilter:
    status = options["status"]
    return DeadLetterFilter(
        sector=options["sector"], bundle_version=options["version"], matter_code=options["matter"],
        case_no=output.deprecated(options["case_no"], options["case"], new="--case-no", old="--case"),
        error_class=options["error_class"], created_from=_beijing(options["since"]),
        created_to=_beijing(options["until"]), min_attempts=options["min_attempts"],
        max_attempts=options["max_attempts"], status=None if status == "any" else status,
        correlation_id=options["correlation_id"], cause=options["cause"], text=options["text"])


def _beijing(instant: datetime | None) -> datetime | None:
    """Times typed at the command line are Beijing time (DESIGN: shown and reckoned in Asia/Shanghai)."""
    return None if instant is None else instant.replace(tzinfo=SHANGHAI)


@contextmanager
def _reported() -> Iterator[None]:
    """The desk's refusals as one readable line on stderr and an exit code (nothing was changed): 3 for a dead
    letter or run that does not exist, 2 for the rest."""
    console = output.stderr()
    try:
        yield
    except (DeadLetterNotFound, ReplayRunNotFound) as exc:
        console.print(f"[red]{exc}[/red]")  # names what was not found
        raise typer.Exit(exit_code(exc, NOT_FOUND)) from exc
    except (NotReplayable, NotDiscardable, NotCancellable) as exc:
        console.print(f"[red]refused: {exc}[/red]")
        raise typer.Exit(BAD_INPUT) from exc
    except BadInput as exc:
        console.print(f"[red]error: {exc}[/red]")
        raise typer.Exit(BAD_INPUT) from exc
    except CryptoError as exc:  # sealed data cannot be opened (another master key)
        console.print(f"[red]{exc}: is YIWANG_MASTER_KEY (or YIWANG_VAR_DIR) the one the data was written with?[/red]")
        raise typer.Exit(BAD_INPUT) from exc


# --------------------------------------------------------------------------- the overview as tables


def _link_text(row: Mapping[str, Any]) -> str:
    """A figure's link as a person reads it: the page, then the filter (`dead-letters sector=mz error_class=auth`)."""
    link = row["link"]
    return " ".join([link["page"], *(f"{key}={value if isinstance(value, str) else output.json_text(value)}"
                                     for key, value in link["filter"].items())])


def _unknown(field: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda row: "unknown" if row.get(field) is None else output.cell(row[field])


LIST = Column("link", "counts (page filter)", shown=_link_text)
FIGURE_COLUMNS = (Column("figure"), Column("count", shown=_unknown("count")), LIST)
DAY_COLUMNS = (Column("day", "day (Beijing)"), Column("count"), LIST)
CIRCUIT_COLUMNS = (Column("sector"), Column("delivery"), Column("query"), LIST)
VERSION_COLUMNS = (Column("sector"), Column("version", identifier=True), Column("status"), Column("health"),
                   Column("test_outcome", "last test"), Column("rehearsal"),
                   Column("rehearsed_at", "rehearsed (Beijing)"), LIST)
CERTIFICATE_COLUMNS = (Column("name", identifier=True), Column("sector"), Column("not_after", "expires (Beijing)"),
                       Column("days_left", "days left"), LIST)
FERRY_COLUMNS = (Column("channel", identifier=True), Column("sector"), Column("lag"), Column("open_gaps", "open gaps"),
                 Column("oldest_gap_age_s", "oldest gap (s)"), Column("unacknowledged", "not receipted"),
                 Column("last_signal_age_s", "last signal (s)"), LIST)


def print_overview(figures: OverviewFigures) -> None:
    """Each part of the overview as a table (a part out of the scope, or empty, is left out)."""
    shown = figures.public()
    tables: list[tuple[str, list[dict[str, Any]], tuple[Column, ...]]] = []
    if (cases := shown["cases"]) is not None:
        rows = [{**row, "figure": row["state"]} for row in cases["by_state"]]
        tables.append(("cases by state", [*rows, {**cases["overdue"], "figure": "overdue (open)"}], FIGURE_COLUMNS))
    if (outbox := shown["outbox"]) is not None:
        age = outbox["oldest_due_age_s"]
        waited = {"figure": "oldest due waited (s)", "count": "none waits" if age is None else round(age),
                  "link": outbox["oldest_due_link"]}
        rows = [{**outbox[name], "figure": name} for name in ("pending", "queued", "leased")]
        tables.append(("outbox", [*rows, waited], FIGURE_COLUMNS))
    if (queues := shown["queues"]) is not None:
        broker = f", broker {queues['broker']}" if queues["broker"] else ""
        rows = [{**row, "figure": row["queue"]} for row in queues["items"]]
        tables.append((f"queues ({queues['transport']}{broker})", rows, FIGURE_COLUMNS))
    letters = shown["dead_letters"]
    rows = [{**row, "figure": f"{row['sector']} {row['error_class']}"} for row in letters["by_class"]]
    tables.append((f"dead letters waiting ({letters['waiting']['count']}), by sector and class", rows,
                   FIGURE_COLUMNS))
    tables.append((f"new dead letters per day, the last {len(letters['trend'])}", letters["trend"], DAY_COLUMNS))
    tables.append(("circuits (this process)", shown["circuits"], CIRCUIT_COLUMNS))
    versions = [{**version, "sector": adapter["sector"], "health": adapter["health"] if version["status"] == "active"
                 else "", "rehearsal": _rehearsal(version)}
                for adapter in shown["adapters"] for version in adapter["versions"]]
    tables.append(("adapters", versions, VERSION_COLUMNS))
    tables.append(("certificates expiring within 30 days", shown["certificates"], CERTIFICATE_COLUMNS))
    tables.append(("ferry links", shown["ferry"], FERRY_COLUMNS))
    for title, rows, columns in tables:
        if rows:
            output.print_rows(rows, columns, as_json=False, title=title)
        else:
            output.stdout().print(f"{title}: none", markup=False)


def _rehearsal(version: dict[str, Any]) -> str:
    if version["rehearsal_outcome"] is None:
        return ""
    return f"{version['rehearsal_outcome']} {version['rehearsal_passed']}/{version['rehearsal_total']}"


# --- a case's journey -----------------------------------------------------------------------------------------
JOURNEY_COLUMNS = (Column("at", "when (Beijing)"), Column("kind"), Column("sector"), Column("title", "what"),
                   Column("links", "ids", shown=lambda row: " ".join(f"{k}={v}" for k, v in row["links"].items())))
MAX_LOOKED_UP = 64  # characters of a case number (50) or a correlation id (64)


def add_journey_command(app: typer.Typer, open_journey: Callable[[], AbstractContextManager[CaseJourney]],
                        actor: Actor) -> None:
    """`yiwang ops journey`: its own command on `app`, reading through `ops.journey.CaseJourney`."""

    @app.command()
    def journey(case_no_or_correlation_id: Annotated[str, typer.Argument(
                    metavar="CASE_NO_OR_CORRELATION_ID", help="a case number, or the correlation id of the request "
                                                               "or job that wrote one of its messages")],
                unmasked: Annotated[bool, typer.Option(
                    "--unmasked", help="personal data in plain text (the read is audited before it is shown)")] = False,
                as_json: JsonOption = False) -> None:
        """Everything that happened to one case, oldest first: its events, messages, exchanges with sectors,
        attempts, callbacks, dead letters and notifications (personal data masked)."""
        wanted = case_no_or_correlation_id.strip()
        if not wanted or len(wanted) > MAX_LOOKED_UP:
            output.stderr().print(f"[red]error: give a case number or a correlation id (1 to {MAX_LOOKED_UP} "
                                  "characters)[/red]")
            raise typer.Exit(BAD_INPUT)
        try:
            with open_journey() as journeys:
                found = _journey_of(journeys, wanted, unmasked, actor())
        except CaseNotFound as exc:
            output.stderr().print(f"[red]{escape(str(exc))}[/red]")
            raise typer.Exit(exit_code(exc, NOT_FOUND)) from exc
        _print_journey(found, as_json)


def _journey_of(journeys: CaseJourney, wanted: str, unmasked: bool, reader: str) -> Journey:
    """By case number, else by correlation id (`CaseJourney.find`)."""
    return journeys.journey(journeys.find(wanted), masked=not unmasked, reader=reader)


def _print_journey(journey: Journey, as_json: bool) -> None:
    rows = [asdict(entry) for entry in journey.entries]
    if as_json:
        output.print_object({"case": asdict(journey.case), "entries": rows, "truncated": journey.truncated,
                             "masked": journey.masked}, as_json=True)
        return
    case = journey.case
    due = case.deadline["due"] if case.deadline else "-"
    output.stdout().print(f"case {case.case_no}: matter {case.matter_code}, {case.state} ({case.state_label}), "
                          f"due {due}{'' if journey.masked else ' — UNMASKED'}", markup=False)
    output.print_rows(rows, JOURNEY_COLUMNS, as_json=False, title=f"{len(rows)} entries, oldest first"
                      + (" (cut: the oldest only)" if journey.truncated else ""))
