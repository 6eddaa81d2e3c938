"""`yiwang ops`: operators' commands on dead letters — list and count by filter, show one with its whole
story, replay one or many (resumable), discard with a reason.

Replay sends the message again with the idempotency key of every earlier attempt, so a sector that had
applied it after all recognises the repeat. Personal data is shown masked, as in the logs. Every command
that changes something is audited by the root (`gateway.cli.audit.audit_commands`): its options (the
filter, the reason) are the record's detail, and the text it returns (how many) joins the outcome.
Bad input exits with code 2 and changes nothing.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, get_type_hints

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from certstore import CryptoError
from gateway.cases.views import event_view
from gateway.cli.common import BAD_INPUT
from gateway.domain.clock import SHANGHAI, to_shanghai
from gateway.observability.logs import mask_text, mask_value
from gateway.persistence.repository import DeadLetter
from ops.dead_letters import (
    SORTS,
    BadInput,
    DeadLetterDesk,
    DeadLetterFilter,
    DeadLetterNotFound,
    NotDiscardable,
    NotReplayable,
    ReplayRun,
    ReplayRunNotFound,
    case_outcome_of,
    check_reason,
)

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
    "case": Annotated[str | None, typer.Option(help="a case number")],
    "error_class": Annotated[str | None, typer.Option(help="transport, timeout, sector_fault, mapping, …")],
    "since": Annotated[datetime | None, typer.Option(formats=TIME_FORMATS, metavar="TIME",
                                                     help="created at or after (Beijing time, 2026-11-24T10:00)")],
    "until": Annotated[datetime | None, typer.Option(formats=TIME_FORMATS, metavar="TIME",
                                                     help="created before (Beijing time)")],
    "min_attempts": Annotated[int | None, typer.Option(min=0, help="at least this many calls in the last delivery")],
    "max_attempts": Annotated[int | None, typer.Option(min=0, help="at most this many")],
    "status": Annotated[str, typer.Option(help="dead, replayed, discarded, superseded or any")],
}


def make_ops_app(open_desk: Callable[[], DeadLetterDesk], actor: Actor, console: Console) -> typer.Typer:
    app = typer.Typer(help="Operators' tools: dead letters — list, count, show, replay, discard.",
                      no_args_is_help=True)

    @app.command("dead-letters")
    @_filtered
    def dead_letters(chosen: DeadLetterFilter,
                     sort: Annotated[str, typer.Option(help=" | ".join(SORTS))] = "-created_at",
                     limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
                     cursor: Annotated[str | None, typer.Option(help="the next cursor a page printed")] = None,
                     ) -> None:
        """List dead letters by filter, newest first: messages that outlasted their retry policy."""
        with _reported(console):
            page = open_desk().page(chosen, sort=sort, limit=limit, cursor=cursor)
        console.print(_letters_table(page.items, f"dead letters: {len(page.items)} of {page.total}"))
        if page.next_cursor:
            console.print(f"next page: --cursor {page.next_cursor}", highlight=False, soft_wrap=True)

    @app.command()
    @_filtered
    def counts(chosen: DeadLetterFilter) -> None:
        """How many dead letters match, by sector and error class."""
        with _reported(console):
            rows = open_desk().counts(chosen)
        table = Table("sector", "error class", "count", title=f"{sum(n for _, _, n in rows)} in all")
        for sector, error_class, n in rows:
            table.add_row(sector, error_class, str(n))
        console.print(table)

    @app.command("dead-letter")
    def dead_letter(letter_id: LetterId) -> None:
        """Show one dead letter whole: error, every attempt, the sector's last answer, what was sent, and the
        case's timeline (personal data masked)."""
        with _reported(console):
            desk = open_desk()
            letter = desk.get(letter_id)
            timeline = [event_view(e) for e in desk.timeline(letter.case_no)]
        story = {**describe(letter), "case_timeline": timeline}
        console.print_json(json.dumps(mask_value(story), ensure_ascii=False, default=str))

    @app.command()
    def replay(letter_id: LetterId, reason: Reason, mapping: MappingOption = "active") -> str:
        """Deliver a dead letter's message again (same idempotency key); the dead letter is marked replayed."""
        with _reported(console):
            letter = open_desk().replay(letter_id, by=actor(), reason=reason, mapping=mapping)
        console.print(f"replayed dead letter {letter.id}: {letter.operation} of case {letter.case_no} to "
                      f"{letter.sector} is due again (idempotency key {letter.idempotency_key})")
        return f"replayed {letter.id}"

    @app.command("replay-many")
    @_filtered
    def replay_many(chosen: DeadLetterFilter,
                    reason: Annotated[str | None, typer.Option(help=REASON_HELP + "; not with --resume")] = None,
                    mapping: MappingOption = "active", dry_run: DryRun = False, yes: Yes = False,
                    resume: Annotated[int | None, typer.Option(help="carry on this unfinished run")] = None,
                    ) -> str:
        """Replay every dead letter matching the filter, in batches, resumable after an interruption:
        `--dry-run` first says how many and which; `--resume RUN_ID` carries on a run."""
        with _reported(console):
            desk = open_desk()
            if resume is not None:
                return _ran(console, desk, desk.run(resume))
            if not dry_run:
                check_reason(reason)  # before the operator is asked anything
            plan = desk.plan(chosen)
            console.print(_letters_table(plan.sample, f"{plan.count} dead letters would be replayed"
                                         + (f" (the first {len(plan.sample)})" if plan.sample else "")))
            if dry_run or plan.count == 0:
                return f"dry run: {plan.count} would be replayed" if dry_run else "nothing to replay"
            if not yes:
                _confirm(console, f"Replay {plan.count} dead letters ({mapping} mapping)?")
            run = desk.start_replay(chosen, by=actor(), reason=reason or "", mapping=mapping)
            console.print(f"replay run {run.id}: {run.total} dead letters (resume with --resume {run.id})")
            return _ran(console, desk, run)

    @app.command("replay-runs")
    def replay_runs(limit: Annotated[int, typer.Option(min=1, max=500)] = 20) -> None:
        """Bulk replays, newest first: who asked, why, how far they got."""
        with _reported(console):
            runs = open_desk().runs(limit)
        table = Table("run", "status", "replayed", "skipped", "total", "mapping", "by", "started (Beijing)",
                      "reason", "filter", title="replay runs")
        for r in runs:
            table.add_row(str(r.id), r.status, str(r.replayed), str(r.skipped), str(r.total), r.mapping,
                          r.requested_by, _shown(r.created_at), mask_text(r.reason),
                          json.dumps(r.filter, ensure_ascii=False))
        console.print(table)

    @app.command()
    def discard(letter_id: LetterId, reason: Reason, case_outcome: CaseOutcome) -> str:
        """Set a dead letter aside for good, with a reason, and give its case a way forward in the same step: no
        replay will ever take it, and no case is left accepted with nothing in flight."""
        with _reported(console):
            open_desk().discard_one(letter_id, by=actor(), reason=reason, case_outcome=case_outcome)
        console.print(f"discarded dead letter {letter_id}; its case: {case_outcome}")
        return f"discarded {letter_id}, case outcome {case_outcome}"

    @app.command("discard-many")
    @_filtered
    def discard_many(chosen: DeadLetterFilter, reason: Reason, case_outcome: CaseOutcome, dry_run: DryRun = False,
                     yes: Yes = False) -> str:
        """Discard every dead letter (status dead) matching the filter, with a reason, giving each one's case (for a
        parallel case, its task) the one way forward chosen. Letters whose case cannot take it stay dead."""
        with _reported(console):
            case_outcome_of(case_outcome)  # refused before anything is shown or asked
            desk = open_desk()
            page = desk.page(replace(chosen, status="dead"), sort="created_at", limit=20)
            console.print(_letters_table(page.items, f"{page.total} dead letters would be discarded"))
            if dry_run or page.total == 0:
                return f"dry run: {page.total} would be discarded" if dry_run else "nothing to discard"
            if not yes:
                _confirm(console, f"Discard {page.total} dead letters for good, their cases: {case_outcome}?")
            done = desk.discard(chosen, by=actor(), reason=reason, case_outcome=case_outcome)
        for letter_id, why in done.kept:
            console.print(f"[yellow]kept dead letter {letter_id}:[/yellow] {why}")
        console.print(f"discarded {done.count} dead letters; their cases: {case_outcome}")
        return f"discarded {done.count}, kept {len(done.kept)}, case outcome {case_outcome}"

    return app


def describe(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as an operator reads it (and as `dead-letter` prints it, masked)."""
    return {"id": letter.id, "status": letter.status, "case_no": letter.case_no, "sector": letter.sector,
            "operation": letter.operation, "idempotency_key": letter.idempotency_key, "outbox_id": letter.outbox_id,
            "bundle_version": letter.bundle_version, "error_class": letter.error_class,
            "error_message": letter.error_message, "attempts": letter.attempts, "deliveries": letter.deliveries,
            "history": list(letter.history), "last_response": letter.last_response,
            "rendered_request": letter.rendered_request, "canonical_payload": letter.canonical_payload,
            "created_at": letter.created_at, "replayed_at": letter.replayed_at, "replayed_by": letter.replayed_by,
            "replay_reason": letter.replay_reason, "replay_run_id": letter.replay_run_id,
            "discarded_at": letter.discarded_at, "discarded_by": letter.discarded_by,
            "discard_reason": letter.discard_reason, "case_outcome": letter.case_outcome,
            "superseded_at": letter.superseded_at}


def _ran(console: Console, desk: DeadLetterDesk, run: ReplayRun) -> str:
    """Carry a run to its end in the foreground, with a progress bar; the outcome for the audit record."""
    with Progress(TextColumn(f"replay run {run.id}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("replaying", total=run.total, completed=run.replayed)
        run = desk.continue_replay(run.id, lambda now: bar.update(task, completed=now.replayed + now.skipped))
    console.print(f"replay run {run.id} {run.status}: {run.replayed} replayed, {run.skipped} skipped "
                  f"of {run.total}")
    return f"run {run.id} {run.status}: {run.replayed} replayed, {run.skipped} skipped of {run.total}"


def _confirm(console: Console, question: str) -> None:
    """Ask; a "no" ends the command with exit code 1 (audited as such), nothing changed."""
    if not typer.confirm(question):
        console.print("nothing changed")
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
        case_no=options["case"], error_class=options["error_class"], created_from=_beijing(options["since"]),
        created_to=_beijing(options["until"]), min_attempts=options["min_attempts"],
        max_attempts=options["max_attempts"], status=None if status == "any" else status)


def _beijing(instant: datetime | None) -> datetime | None:
    """Times typed at the command line are Beijing time (DESIGN: shown and reckoned in Asia/Shanghai)."""
    return None if instant is None else instant.replace(tzinfo=SHANGHAI)


def _letters_table(letters: list[DeadLetter], title: str) -> Table:
    table = Table("id", title=title)
    # A case number is copied whole into the next command: never wrapped, never cut (the error text gives way).
    table.add_column("case", no_wrap=True, min_width=max((len(d.case_no) for d in letters), default=4))
    for column in ("sector", "class", "tries", "status", "created (Beijing)"):  # the rest: `dead-letter ID`
        table.add_column(column, no_wrap=True)
    table.add_column("error")
    for d in letters:
        table.add_row(str(d.id), d.case_no, d.sector, d.error_class, str(d.attempts), d.status,
                      _shown(d.created_at)[:16], str(mask_value(d.error_message))[:60])
    return table


def _shown(instant: datetime | None) -> str:
    return "" if instant is None else to_shanghai(instant).strftime("%Y-%m-%d %H:%M:%S")


@contextmanager
def _reported(console: Console) -> Iterator[None]:
    """The desk's refusals as one readable line and exit code 2 (nothing was changed)."""
    try:
        yield
    except (DeadLetterNotFound, ReplayRunNotFound) as exc:
        console.print(f"[red]{exc}[/red]")  # names what was not found
        raise typer.Exit(BAD_INPUT) from exc
    except (NotReplayable, NotDiscardable) as exc:
        console.print(f"[red]refused: {exc}[/red]")
        raise typer.Exit(BAD_INPUT) from exc
    except BadInput as exc:
        console.print(f"[red]error: {exc}[/red]")
        raise typer.Exit(BAD_INPUT) from exc
    except CryptoError as exc:  # sealed data cannot be opened (another master key)
        console.print(f"[red]{exc}: is YIWANG_MASTER_KEY (or YIWANG_VAR_DIR) the one the data was written with?[/red]")
        raise typer.Exit(BAD_INPUT) from exc
