"""`yiwang ops`: operators' commands on dead letters — list, show one with its whole story, replay one.

Replay sends the message again with the idempotency key of every earlier attempt, so a sector that had
applied it after all recognises the repeat. Personal data is shown masked, as in the logs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from certstore.algorithms import CryptoError
from gateway.logs import mask_value
from gateway.persistence.repository import DeadLetter
from gateway.services import CaseService, DeadLetterNotFound, NotReplayable

Actor = Callable[[], str]


def make_ops_app(open_service: Callable[[], CaseService], actor: Actor, console: Console) -> typer.Typer:
    app = typer.Typer(help="Operators' tools: dead letters and their replay.", no_args_is_help=True)

    @app.command("dead-letters")
    def dead_letters(case_no: str | None = None, limit: int = 50) -> None:
        """List dead letters, newest first: messages that outlasted their retry policy."""
        with _opened(console):
            letters = open_service().dead_letters(case_no=case_no, limit=limit)
        table = Table("id", title="dead letters")
        for column in ("case", "sector", "operation", "class", "attempts", "status"):
            table.add_column(column, no_wrap=True)  # a case number is copied whole into the next command
        table.add_column("error")
        for d in letters:
            table.add_row(str(d.id), d.case_no, d.sector, d.operation, d.error_class, str(d.attempts), d.status,
                          str(mask_value(d.error_message))[:80])
        console.print(table)

    @app.command("dead-letter")
    def dead_letter(letter_id: Annotated[int, typer.Argument(help="the dead letter's id")]) -> None:
        """Show one dead letter whole: error, every attempt, the sector's last answer, what was sent."""
        with _opened(console):
            letter = _found(console, lambda: open_service().dead_letter(letter_id))
        console.print_json(json.dumps(mask_value(describe(letter)), ensure_ascii=False, default=str))

    @app.command()
    def replay(letter_id: Annotated[int, typer.Argument(help="the dead letter's id")]) -> None:
        """Deliver a dead letter's message again (same idempotency key); the dead letter is marked replayed."""
        with _opened(console):
            letter = _found(console, lambda: open_service().replay_dead_letter(letter_id, actor()))
        console.print(f"replayed dead letter {letter.id}: {letter.operation} of case {letter.case_no} to "
                      f"{letter.sector} is due again (idempotency key {letter.idempotency_key})")

    return app


def describe(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as an operator reads it (and as `show` prints it, masked)."""
    return {"id": letter.id, "status": letter.status, "case_no": letter.case_no, "sector": letter.sector,
            "operation": letter.operation, "idempotency_key": letter.idempotency_key, "outbox_id": letter.outbox_id,
            "bundle_version": letter.bundle_version, "error_class": letter.error_class,
            "error_message": letter.error_message, "attempts": letter.attempts, "deliveries": letter.deliveries,
            "history": list(letter.history), "last_response": letter.last_response,
            "rendered_request": letter.rendered_request, "canonical_payload": letter.canonical_payload,
            "created_at": letter.created_at, "replayed_at": letter.replayed_at, "replayed_by": letter.replayed_by}


def _found(console: Console, step: Callable[[], DeadLetter]) -> DeadLetter:
    try:
        return step()
    except DeadLetterNotFound as exc:
        console.print(f"[red]no dead letter {exc}[/red]")
        raise typer.Exit(2) from exc
    except NotReplayable as exc:
        console.print(f"[red]not replayed: {exc}[/red]")
        raise typer.Exit(2) from exc


@contextmanager
def _opened(console: Console) -> Iterator[None]:
    """A readable error when sealed data cannot be opened (another master key)."""
    try:
        yield
    except CryptoError as exc:
        console.print(f"[red]{exc}: is YIWANG_MASTER_KEY (or YIWANG_VAR_DIR) the one the data was written with?[/red]")
        raise typer.Exit(2) from exc
