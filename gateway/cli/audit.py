"""`yiwang audit …`: verify, list and tail the tamper-evident logs; and the wrapper that audits admin commands.

The root (`gateway.bootstrap.cli`) passes a callable opening the ledger, so this module needs no settings. `verify`
exits 0 when every chain and checkpoint holds, 1 when it found problems (each named), 2 on bad input.
`audit_commands(app, group, sink)` makes every state-changing command of a subcommand group write an
audit record (who, which command, its arguments, how it ended), without the group's module knowing.
"""

from __future__ import annotations

import functools
import getpass
import json
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from gateway.audit.ledger import AUDIT, MESSAGE, Anchor, Filters, Ledger, LedgerRecord
from gateway.cli import output
from gateway.cli.common import BAD_INPUT, PROBLEMS_FOUND
from gateway.cli.output import Column, JsonOption, QuietOption
from gateway.domain.clock import SHANGHAI

# Commands that change nothing are not audited (a read of unmasked data is audited where it happens: `ops journey
# --unmasked` by ops.journey before it shows anything).
READ_ONLY_COMMANDS = frozenset({"list", "validate", "preview", "export", "show", "verify", "tail", "dead-letters",
                                "dead-letter", "counts", "replay-runs", "anchors", "status", "gaps",
                                "quarantine", "overview", "causes", "journey"})
# Reads that are audited all the same: a bulk export of dead letters (who took which, how many).
AUDITED_READS = frozenset({"ops export"})
# Arguments never written to the audit log, even sealed: what a person types as a secret.
SECRET_WORDS = ("password", "passphrase", "secret", "token")
AuditSink = Callable[[str, str | None, dict[str, Any], str], None]  # action, subject, detail, outcome


def cli_actor() -> str:
    """Who acts at the command line: the operating-system user on this machine."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def make_audit_app(open_ledger: Callable[[], AbstractContextManager[Ledger]],
                   run_retention: Callable[[Callable[[int], None]], int] | None = None) -> typer.Typer:
    """`run_retention(progress)`: the retention purge run now, telling `progress` how many rows so far; without
    it there is no `retention` command."""
    app = typer.Typer(help="The tamper-evident audit and message logs: verify, list, tail; the retention purge.",
                      no_args_is_help=True)

    @app.command()
    def verify(anchors: Annotated[Path | None, typer.Option(
            help="anchors kept outside the database (`yiwang audit anchors`, or shipped JSON log lines of 'ledger "
                 "checkpoint'): each chain is read only from its newest signed anchor on, which must still match; "
                 "also catches a whole chain deleted with its checkpoints. Without it every record is read")] = None,
               as_json: JsonOption = False, quiet: QuietOption = False) -> None:
        """Check every hash chain and signed checkpoint; name each changed, removed or reordered record."""
        kept = _anchors(anchors) if anchors is not None else []
        with open_ledger() as ledger, output.progress("verifying records", None, quiet=quiet) as advance:
            report = ledger.verify(kept, advance)
        summary = (f"{report.chains} chains, {report.records} records, {report.checkpoints} checkpoints"
                   + (f", {report.anchored} chains from their anchor" if anchors is not None else ""))
        if as_json:
            output.print_object({**report.public(), "anchored_chains": report.anchored}, as_json=True)
        elif report.intact:
            output.stdout().print(f"[green]intact:[/green] {summary}")
        else:
            output.print_rows([asdict(p) for p in report.problems], PROBLEM_COLUMNS, as_json=False,
                              title=f"{len(report.problems)} problems")
            output.stdout().print(f"[red]NOT intact:[/red] {summary}")
        if not report.intact:
            raise typer.Exit(PROBLEMS_FOUND)

    @app.command("anchors")
    def export_anchors() -> None:
        """Print every signed checkpoint (chain, seq, head hash, time, key, signature) as a JSON line, to keep
        outside the database (append to WORM storage) and give to `verify --anchors`."""
        with open_ledger() as ledger:
            for anchor in ledger.anchors():
                print(anchor.to_json())

    if run_retention is not None:
        @app.command()
        def retention(quiet: QuietOption = False) -> str:
            """Run the retention purge now, as the scheduled job does (YIWANG_RETENTION_DAYS and the rest): old
            message bodies, sent notifications and log records purged, archived first when so configured."""
            with output.progress("purging (rows)", None, quiet=quiet) as advance:
                purged = run_retention(advance)
            output.stdout().print(f"retention: {purged} rows purged or deleted")
            return f"purged {purged}"

    @app.command("list")
    def list_records(
        kind: str = typer.Option(AUDIT, help="audit | message"),
        actor: str | None = typer.Option(None, help="e.g. identity:id_0123456789ab or cli:root@host"),
        action: str | None = typer.Option(None, help="e.g. 'keys issue'; for messages: sent | received"),
        direction: str | None = typer.Option(None, help="messages: sent | received (GET /v1/messages' name for "
                                                        "--action)"),
        sector: str | None = None,
        case_no: str | None = None,
        since: str | None = typer.Option(None, help="ISO time (Beijing time unless it names a zone)"),
        until: str | None = None,
        after_id: int | None = typer.Option(None, help="the paging cursor: records after this id"),
        limit: int = typer.Option(100, min=1, max=1000, help="records on this page (as the API: at most 1000)"),
        as_json: JsonOption = False,
    ) -> None:
        """Records oldest first, filtered (bodies are not shown)."""
        if direction is not None and (kind != MESSAGE or direction not in ("sent", "received")):
            _fail(f"--direction is sent or received, of --kind message (not {direction!r} of {kind!r})")
        filters = Filters(_kind(kind), actor=actor, action=direction or action, sector=sector, case_no=case_no,
                          since=_time("--since", since), until=_time("--until", until), after_id=after_id)
        with open_ledger() as ledger:
            _print(ledger.records(filters, limit), kind, as_json)

    @app.command()
    def tail(kind: str = typer.Option(AUDIT, help="audit | message"),
             limit: int = typer.Option(20, min=1, help="how many of the newest"),
             count: int | None = typer.Option(None, hidden=True, help="deprecated: --limit"),
             as_json: JsonOption = False) -> None:
        """The newest records."""
        newest = output.deprecated(limit, count, new="--limit", old="--count")
        with open_ledger() as ledger:
            _print(ledger.tail(Filters(_kind(kind)), newest), kind, as_json)

    return app


def audit_commands(app: typer.Typer, group: str, audit: AuditSink) -> typer.Typer:
    """Wrap each state-changing command of `app` so that running it writes an audit record."""
    for info in app.registered_commands:
        assert info.callback is not None
        name = info.name or info.callback.__name__.rstrip("_").replace("_", "-")
        if name not in READ_ONLY_COMMANDS or f"{group} {name}" in AUDITED_READS:
            info.callback = _audited(info.callback, f"{group} {name}", audit)
    return app


def _audited(command: Callable[..., Any], action: str, audit: AuditSink) -> Callable[..., Any]:
    @functools.wraps(command)  # typer reads the parameters through __wrapped__
    def run(*args: Any, **kwargs: Any) -> Any:
        outcome = "failed"
        try:
            result = command(*args, **kwargs)
            outcome = "ok" if result is None else f"ok: {result}"  # a command may say what it did (how many)
            return result
        except typer.Exit as exc:
            outcome = "ok" if exc.exit_code == 0 else f"exit {exc.exit_code}"
            raise
        finally:
            detail = {k: "(not recorded)" if _secret(k) else v for k, v in kwargs.items()}
            subject = " ".join(f"{k}={v}" for k, v in kwargs.items()
                               if isinstance(v, (str, int)) and not isinstance(v, bool) and not _secret(k))
            audit(action, subject or None, detail, outcome)

    return run


def _secret(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_WORDS)


def _anchors(path: Path) -> list[Anchor]:
    """Anchors from a file of JSON lines; lines of other log events (no `head_hash`) are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        _fail(f"--anchors: cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        _fail(f"--anchors: {path} is not text (UTF-8 JSON lines)")
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and "head_hash" in data:
                kept.append(Anchor.from_json(line))
        except (ValueError, KeyError, TypeError):
            _fail(f"--anchors: {path}:{number}: not a JSON anchor line")
    if not kept:
        _fail(f"--anchors: {path} holds no anchor (JSON lines with chain, seq and head_hash, as `yiwang audit "
              "anchors` prints them)")
    return kept


def _kind(kind: str) -> str:
    if kind not in (AUDIT, MESSAGE):
        _fail(f"--kind is audit or message, not {kind!r}")
    return kind


def _time(option: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option}: not an ISO time: {text!r} (e.g. 2026-11-24T10:00)")
    return instant.replace(tzinfo=SHANGHAI) if instant.tzinfo is None else instant


def _fail(message: str) -> NoReturn:
    output.stderr().print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(BAD_INPUT)


PROBLEM_COLUMNS = (Column("kind", "problem"), Column("chain", identifier=True), Column("seq"),
                   Column("record_id", "record id", identifier=True), Column("detail"))
AUDIT_COLUMNS = (Column("id", identifier=True), Column("at", "at (Beijing)"), Column("chain", identifier=True),
                 Column("seq"), Column("actor"), Column("action"), Column("subject"), Column("outcome"))
MESSAGE_COLUMNS = (*AUDIT_COLUMNS[:4], Column("sector"), Column("action"), Column("subject"),
                   Column("case_no", "case", identifier=True), Column("outcome"))


def _print(records: list[LedgerRecord], kind: str, as_json: bool) -> None:
    """Records as the API lists them (no body), their time an instant for the output to show."""
    output.print_rows([{**r.public(), "at": r.at} for r in records],
                      AUDIT_COLUMNS if kind == AUDIT else MESSAGE_COLUMNS, as_json=as_json, title=f"{kind} log")
