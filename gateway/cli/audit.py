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
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from gateway.audit.ledger import AUDIT, MESSAGE, Anchor, Filters, Ledger, LedgerRecord
from gateway.cli.common import BAD_INPUT
from gateway.domain.clock import SHANGHAI, to_shanghai

PROBLEMS_FOUND = 1
# Commands that change nothing are not audited (a read of unmasked data is audited where it happens).
READ_ONLY_COMMANDS = frozenset({"list", "validate", "preview", "export", "show", "verify", "tail", "dead-letters",
                                "dead-letter", "counts", "replay-runs"})
# Arguments never written to the audit log, even sealed: what a person types as a secret.
SECRET_WORDS = ("password", "passphrase", "secret", "token")
AuditSink = Callable[[str, str | None, dict[str, Any], str], None]  # action, subject, detail, outcome


def cli_actor() -> str:
    """Who acts at the command line: the operating-system user on this machine."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def make_audit_app(open_ledger: Callable[[], AbstractContextManager[Ledger]]) -> typer.Typer:
    app = typer.Typer(help="The tamper-evident audit and message logs: verify, list, tail.", no_args_is_help=True)

    @app.command()
    def verify(anchors: Annotated[Path | None, typer.Option(
            help="anchors kept outside the database (`yiwang audit anchors`, or JSON log lines of "
                 "'ledger checkpoint'): catches a whole chain deleted with its checkpoints")] = None) -> None:
        """Check every hash chain and signed checkpoint; name each changed, removed or reordered record."""
        kept = _anchors(anchors) if anchors is not None else []
        with open_ledger() as ledger:
            report = ledger.verify(kept)
        summary = f"{report.chains} chains, {report.records} records, {report.checkpoints} checkpoints"
        if report.intact:
            _console().print(f"[green]intact:[/green] {summary}", highlight=False)
            return
        table = Table("problem", "chain", "seq", "record id", "detail", title=f"{len(report.problems)} problems")
        for p in report.problems:
            table.add_row(p.kind, p.chain, _text(p.seq), _text(p.record_id), p.detail)
        console = _console()
        console.print(table)
        console.print(f"[red]NOT intact:[/red] {summary}", highlight=False)
        raise typer.Exit(PROBLEMS_FOUND)

    @app.command("anchors")
    def export_anchors() -> None:
        """Print every signed checkpoint as a JSON line, to keep outside the database (append to WORM storage)."""
        with open_ledger() as ledger:
            for anchor in ledger.anchors():
                print(anchor.to_json())

    @app.command("list")
    def list_records(
        kind: str = typer.Option(AUDIT, help="audit | message"),
        actor: str | None = typer.Option(None, help="e.g. identity:id_0123456789ab or cli:root@host"),
        action: str | None = typer.Option(None, help="e.g. 'keys issue'; for messages: sent | received"),
        sector: str | None = None,
        case_no: str | None = None,
        since: str | None = typer.Option(None, help="ISO time (Beijing time unless it names a zone)"),
        until: str | None = None,
        after_id: int | None = typer.Option(None, help="the paging cursor: records after this id"),
        limit: int = 100,
    ) -> None:
        """Records oldest first, filtered (bodies are not shown)."""
        filters = Filters(_kind(kind), actor=actor, action=action, sector=sector, case_no=case_no,
                          since=_time("--since", since), until=_time("--until", until), after_id=after_id)
        with open_ledger() as ledger:
            _print(ledger.records(filters, limit), kind)

    @app.command()
    def tail(kind: str = typer.Option(AUDIT, help="audit | message"), count: int = 20) -> None:
        """The newest records."""
        with open_ledger() as ledger:
            _print(ledger.tail(Filters(_kind(kind)), count), kind)

    return app


def audit_commands(app: typer.Typer, group: str, audit: AuditSink) -> typer.Typer:
    """Wrap each state-changing command of `app` so that running it writes an audit record."""
    for info in app.registered_commands:
        assert info.callback is not None
        name = info.name or info.callback.__name__.rstrip("_").replace("_", "-")
        if name not in READ_ONLY_COMMANDS:
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
    _console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(BAD_INPUT)


def _print(records: list[LedgerRecord], kind: str) -> None:
    who = ("actor", "action", "subject", "outcome") if kind == AUDIT else ("sector", "action", "subject", "case_no",
                                                                           "outcome")
    table = Table("id", "at (Beijing)", "chain", "seq", *who, title=f"{kind} log")
    for r in records:
        table.add_row(str(r.id), to_shanghai(r.at).strftime("%Y-%m-%d %H:%M:%S"), r.chain, str(r.seq),
                      *(_text(getattr(r, name)) for name in who))
    _console().print(table)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _console(*, stderr: bool = False) -> Console:
    """A console per command, bound to the sys.stdout/stderr of the moment (CliRunner swaps them)."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=200)
