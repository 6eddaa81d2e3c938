"""`yiwang ferry`: the ferry for sectors behind an isolation gateway, at the command line.

Two blocks of commands in one group:

- **Operators (near side)**, against the gateway's database like `yiwang ops`: `status` (every link both ways:
  last batch, lag, unacknowledged batches, open gaps, the age of the far side's last beacon, quarantined files),
  `gaps`, `quarantine [--channel]` and `resend CHANNEL FROM TO --reason` (the kept batches written to the link
  again; audited by the root like every command that changes something). They read and act through
  `gateway.sectors.ferry_channels.FerryChannels`, which the composition root builds from the active ferry
  bundles. Listings take `--json` (gateway.cli.output). A link nobody configured exits 3, a bad range 2;
  nothing is written then.
- **The far-side agent** (`init`, `serve`, `run-once`, `state`): added by the agent's own block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Annotated

import typer

from gateway.cli import output
from gateway.cli.common import BAD_INPUT, NOT_FOUND
from gateway.cli.output import Column, JsonOption
from gateway.sectors.ferry_channels import (
    BadRange,
    FerryChannels,
    UnknownLink,
    gap_view,
    link_named,
    link_view,
    quarantined_view,
)

HELP = "The ferry across an isolation gateway: links' status, gaps, quarantine, resend; the far-side agent."
Now = Callable[[], datetime]
OpenChannels = Callable[[], AbstractContextManager[FerryChannels]]  # the links, and what closes behind them
ChannelOption = Annotated[str | None, typer.Option("--channel", help="one link (its bundle's ferry.channel)")]


def make_ferry_app() -> typer.Typer:
    return typer.Typer(help=HELP, no_args_is_help=True)


# --- operators (near side) ---------------------------------------------------------------------------------


def add_operator_commands(app: typer.Typer, open_channels: OpenChannels, now: Now) -> None:
    """`status`, `gaps`, `quarantine`, `resend` on `app`; `open_channels` finds the gateway's links."""

    @app.command()
    def status(channel: ChannelOption = None, as_json: JsonOption = False) -> None:
        """Every ferry link both ways: last batch and its age, lag, unacknowledged batches, open gaps, the age of
        the far side's last beacon or receipt, quarantined files."""
        with _reported(), open_channels() as channels:
            at = now()
            reports = [link_named(channels, channel)] if channel else channels.links()
        views = [link_view(report, at) for report in reports]
        if as_json:
            output.print_rows(views, (), as_json=True)
            return
        rows = [{"channel": view["channel"], "quarantined": view["quarantined"], "mode": view["mode"],
                 **view[direction]} for view in views for direction in ("down", "up")]
        output.print_rows(rows, STATUS_COLUMNS, as_json=False, title=f"ferry links: {len(views)}")

    @app.command()
    def gaps(channel: ChannelOption = None, as_json: JsonOption = False) -> None:
        """Batches named missing and not filled yet, oldest first: ask the far side's operator, or wait for the
        resend (two-way); `yiwang ferry resend` on the side that sent them."""
        with _reported(), open_channels() as channels:
            at = now()
            found = channels.gaps(channel)
        output.print_rows([gap_view(gap, at) for gap in found], GAP_COLUMNS, as_json=as_json,
                          title=f"open gaps: {len(found)}")

    @app.command()
    def quarantine(channel: ChannelOption = None,
                   limit: Annotated[int, typer.Option(min=1, max=1000)] = 100, as_json: JsonOption = False) -> None:
        """Files refused (signature, key, envelope, chain …) and kept in the quarantine folder, newest first."""
        with _reported(), open_channels() as channels:
            found = channels.quarantined(channel, limit)
        output.print_rows([quarantined_view(batch) for batch in found], QUARANTINE_COLUMNS, as_json=as_json,
                          title=f"quarantined files: {len(found)}")

    @app.command()
    def resend(channel: Annotated[str, typer.Argument(help="the link (its bundle's ferry.channel)")],
               seq_from: Annotated[int, typer.Argument(help="the first batch to write again")],
               seq_to: Annotated[int, typer.Argument(help="the last one")],
               reason: Annotated[str, typer.Option("--reason", help="why (required; audited)")]) -> str:
        """Write the kept batches SEQ_FROM..SEQ_TO of the channel the gateway sends on to the link again (the far side
        drops what it already applied)."""
        if not reason.strip():
            output.stderr().print("error: --reason must say why (it is audited)", markup=False)
            raise typer.Exit(BAD_INPUT)
        with _reported(), open_channels() as channels:
            report = link_named(channels, channel)
            resent = channels.resend(channel, seq_from, seq_to)
        output.stdout().print(f"resent {resent} batches {seq_from}..{seq_to} on {report.sent.channel}", markup=False)
        return f"resent {resent} batches {seq_from}..{seq_to} on {report.sent.channel}"


def _age(field: str) -> Callable[[output.Row], str]:
    def shown(row: output.Row) -> str:
        return duration(row.get(field))

    return shown


def duration(seconds: float | None) -> str:
    """An age as people read it: 45s, 3m 12s, 2h 05m, 3d 04h; nothing when it never happened."""
    if seconds is None:
        return ""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


STATUS_COLUMNS = (Column("channel", "link", identifier=True), Column("direction", "way"),
                  Column("last_seq", "last seq"), Column("last_batch_at", "last batch (Beijing)"),
                  Column("last_batch_age_s", "age", shown=_age("last_batch_age_s")),
                  Column("lag"), Column("unacknowledged", "unacked"), Column("open_gaps", "gaps"),
                  Column("last_signal_age_s", "beacon age", shown=_age("last_signal_age_s")),
                  Column("quarantined"), Column("mode"))
GAP_COLUMNS = (Column("channel", identifier=True), Column("seq_from", "from"), Column("seq_to", "to"),
               Column("named_at", "named (Beijing)"), Column("age_s", "open for", shown=_age("age_s")))
QUARANTINE_COLUMNS = (Column("channel", identifier=True), Column("at", "at (Beijing)"), Column("code"),
                      Column("file", identifier=True), Column("reason"))


@contextmanager
def _reported() -> Iterator[None]:
    """A link nobody configured: exit 3; a bad range: exit 2 — one readable line on stderr, nothing written."""
    console = output.stderr()
    try:
        yield
    except UnknownLink as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(NOT_FOUND) from exc
    except BadRange as exc:
        console.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(BAD_INPUT) from exc

