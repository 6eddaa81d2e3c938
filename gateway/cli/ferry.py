"""`yiwang ferry ...`: the ferry across an isolated network (网闸, one-way link), at the command line.

Two blocks of commands in one group:

- **Operators** (`status`, `gaps`, `quarantine`, `resend`): every link both ways — last batch, lag,
  unacknowledged batches, open gaps, the age of the far side's last beacon, quarantined files — and a resend of
  a range of kept batches (`resend CHANNEL FROM TO --reason`). Against the gateway's database and link folders
  like `yiwang ops` (the composition root builds the gateway's links); with `--config AGENT.yaml`, against the
  agent's own state on the 前置机, where an operator of a one-way link resends what the gateway never got. They
  read and act through `gateway.sectors.ferry_channels.FerryChannels`. Listings take `--json`
  (gateway.cli.output). A link nobody configured exits 3, a bad range 2; nothing is written then. A resend is
  audited by the root (on the gateway's ledger; on the 前置机, in the agent's log).
- **The far-side agent**, run on the front-end processor (前置机) with the agent's own configuration file
  (docs/ferry-agent.md): `init` (state, master key file, the agent's key pair; prints its certificate for the near
  side), `serve` (the loop, until SIGTERM or SIGINT), `run-once` (one pass), `state` (channels, certificates,
  bundles, polls, what waits to be sent). They call the `ferry` package's public functions only; a configuration
  the agent cannot use is one red line naming the key and exit code 2, never a traceback.
"""


from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

import ferry
from certstore import CertificateError, CredentialMissing, MasterKeyError
from gateway.cli import output
from gateway.cli.common import BAD_INPUT, NOT_FOUND
from gateway.cli.output import Column, JsonOption
from gateway.domain.clock import duration_text
from gateway.sectors.ferry_channels import (
    BadRange,
    FerryChannels,
    UnknownLink,
    gap_view,
    link_named,
    link_view,
    quarantined_view,
)

Now = Callable[[], datetime]
# The links (of the gateway; of the agent whose configuration is given), and what closes behind them.
OpenChannels = Callable[[Path | None], AbstractContextManager[FerryChannels]]
ChannelOption = Annotated[str | None, typer.Option("--channel", help="one link (its bundle's ferry.channel)")]
AgentOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="the agent's configuration: its own state on the 前置机, not the gateway's")]
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="the agent's configuration (YAML)")]
HELP = "The ferry across an isolated network: links' status, gaps, quarantine, resend; the far-side agent."


def make_ferry_app(service_logs: Callable[[], None], open_channels: OpenChannels, now: Now) -> typer.Typer:
    """`service_logs()`: log lines as a service writes them (info and above), for `serve`; `open_channels(config)`:
    the gateway's links (None) or the agent's (its configuration file)."""
    app = typer.Typer(help=HELP, no_args_is_help=True)
    add_operator_commands(app, open_channels, now)
    add_agent_commands(app, service_logs)
    return app


# -- operators (the gateway; with --config, the agent) ------------------------------------------------------------


def add_operator_commands(app: typer.Typer, open_channels: OpenChannels, now: Now) -> None:
    """`status`, `gaps`, `quarantine`, `resend` on `app`; `open_channels(config)` finds the links."""

    @app.command()
    def status(channel: ChannelOption = None, config: AgentOption = None, as_json: JsonOption = False) -> None:
        """Every ferry link both ways: last batch and its age, lag, unacknowledged batches, open gaps, the age of
        the far side's last beacon or receipt, quarantined files."""
        with _reported(), agent_errors(), open_channels(config) as channels:
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
    def gaps(channel: ChannelOption = None, config: AgentOption = None, as_json: JsonOption = False) -> None:
        """Batches named missing and not filled yet, oldest first: ask the far side's operator, or wait for the
        resend (two-way); `yiwang ferry resend` on the side that sent them."""
        with _reported(), agent_errors(), open_channels(config) as channels:
            at = now()
            found = channels.gaps(channel)
        output.print_rows([gap_view(gap, at) for gap in found], GAP_COLUMNS, as_json=as_json,
                          title=f"open gaps: {len(found)}")

    @app.command()
    def quarantine(channel: ChannelOption = None, config: AgentOption = None,
                   limit: Annotated[int, typer.Option(min=1, max=1000)] = 100, as_json: JsonOption = False) -> None:
        """Files refused (signature, key, envelope, chain …) and kept in the quarantine folder, newest first."""
        with _reported(), agent_errors(), open_channels(config) as channels:
            found = channels.quarantined(channel, limit)
        output.print_rows([quarantined_view(batch) for batch in found], QUARANTINE_COLUMNS, as_json=as_json,
                          title=f"quarantined files: {len(found)}")

    @app.command()
    def resend(channel: Annotated[str, typer.Argument(help="the link (its bundle's ferry.channel)")],
               seq_from: Annotated[int, typer.Argument(help="the first batch to write again")],
               seq_to: Annotated[int, typer.Argument(help="the last one")],
               reason: Annotated[str, typer.Option("--reason", help="why (required; audited)")],
               config: AgentOption = None) -> str:
        """Write the kept batches SEQ_FROM..SEQ_TO of the channel this side sends on to the link again (the other
        side drops what it already applied): the gateway's, or with --config the agent's."""
        if not reason.strip():
            output.stderr().print("error: --reason must say why (it is audited)", markup=False)
            raise typer.Exit(BAD_INPUT)
        with _reported(), agent_errors(), open_channels(config) as channels:
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
    return "" if seconds is None else duration_text(seconds, ("d", "h", "m", "s"))


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



STATUS_COLUMNS = (Column("channel", "link", identifier=True), Column("direction", "way"),
                  Column("last_seq", "last seq"), Column("last_batch_at", "last batch (Beijing)"),
                  Column("last_batch_age_s", "age", shown=_age("last_batch_age_s")),
                  Column("lag"), Column("unacknowledged", "unacked"), Column("open_gaps", "gaps"),
                  Column("last_signal_age_s", "beacon age", shown=_age("last_signal_age_s")),
                  Column("quarantined"), Column("duplicates", "met again"), Column("mode"))
GAP_COLUMNS = (Column("channel", identifier=True), Column("seq_from", "from"), Column("seq_to", "to"),
               Column("named_at", "named (Beijing)"), Column("age_s", "open for", shown=_age("age_s")))
QUARANTINE_COLUMNS = (Column("channel", identifier=True), Column("at", "at (Beijing)"), Column("code"),
                      Column("file", identifier=True), Column("reason"))



# -- the far-side agent (前置机) ---------------------------------------------------------------------------------

def add_agent_commands(app: typer.Typer, service_logs: Callable[[], None]) -> None:
    @app.command()
    def init(
        config: ConfigOption,
        algorithm: Annotated[str, typer.Option(help="the agent's key pair: sm2 | rsa")] = "sm2",
        days: Annotated[int, typer.Option(help="how long its certificate is valid", min=1, max=3650)] = 730,
        out: Annotated[Path | None, typer.Option(help="write the certificate here instead of printing it")] = None,
    ) -> None:
        """Create the agent's state, master key file and key pair; print its certificate for the near side."""
        if algorithm not in ferry.ALGORITHMS:
            _fail(f"--algorithm is one of {', '.join(ferry.ALGORITHMS)}, not {algorithm!r}")
        with agent_errors():
            said, certificate = ferry.init_agent(ferry.load_config(config), algorithm, days)
            if out is not None:
                out.write_bytes(certificate)
        output.stderr().print(f"{said}; import the certificate on the near side: yiwang certs import "
                              "<its peer name> <file>", markup=False)
        if out is None:
            output.stdout().print(certificate.decode(), markup=False, soft_wrap=True, end="")

    @app.command()
    def serve(config: ConfigOption) -> None:
        """Run the agent: a pass every interval_ms until SIGTERM or SIGINT (the pass in hand finishes)."""
        with agent_errors():
            loaded = ferry.load_config(config)
            ferry.check_ready(loaded)
            service_logs()
            code = ferry.serve(loaded)
        raise typer.Exit(code)

    @app.command("run-once")
    def run_once(config: ConfigOption, as_json: JsonOption = False) -> None:
        """One pass: receive and deliver, poll, send answers and decisions, resend, beacon."""
        with agent_errors():
            loaded = ferry.load_config(config)
            ferry.check_ready(loaded)
            report = ferry.run_once(loaded)
        shown = {**asdict(report), "received": _plain(report.received)}
        output.print_object(shown, as_json=as_json)

    @app.command()
    def state(config: ConfigOption, as_json: JsonOption = False) -> None:
        """How the agent stands: channels, certificates, bundles, settings (and which came from the gateway), open
        polls, what waits to be sent."""
        with agent_errors():
            found = ferry.agent_state(ferry.load_config(config))
        if as_json:
            output.print_object(found, as_json=True)
            return
        output.print_rows(found["channels"], CHANNEL_COLUMNS, as_json=False, title=f"agent {found['name']}: channels")
        output.print_rows([_certificate_row(c) for c in found["certificates"]], CERTIFICATE_COLUMNS, as_json=False,
                          title="certificates")
        output.print_rows(found["bundles"], BUNDLE_COLUMNS, as_json=False, title="bundles")
        output.print_rows(found["settings"], SETTING_COLUMNS, as_json=False, title="settings")
        output.print_rows(found["polls"], POLL_COLUMNS, as_json=False, title="open polls")
        pending = found["pending"]
        output.stdout().print(f"waiting to be sent: {pending.get('answer', 0)} answer(s), "
                              f"{pending.get('decision', 0)} decision(s)", highlight=False)


@contextmanager
def agent_errors() -> Iterator[None]:
    try:
        yield
    except (ferry.ConfigInvalid, ferry.AgentNotReady, CertificateError, CredentialMissing, MasterKeyError,
            OSError) as exc:
        _fail(str(exc.args[0]) if isinstance(exc, LookupError) and exc.args else str(exc))


def _fail(message: str) -> None:
    output.stderr().print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(BAD_INPUT)


def _plain(value: Any) -> Any:
    return asdict(value) if hasattr(value, "__dataclass_fields__") else value


def _certificate_row(certificate: dict[str, Any]) -> dict[str, Any]:
    current: dict[str, Any] = next(iter(certificate["versions"]), {})
    return {"role": certificate["role"], "name": certificate["name"], "version": current.get("version"),
            "subject": current.get("subject"), "not_after": current.get("not_after"),
            "sha256": current.get("sha256"), "problem": certificate["problem"]}


CHANNEL_COLUMNS = (Column("channel", identifier=True), Column("direction"), Column("mode"),
                   Column("last_seq", "last seq"), Column("last_at", "last at"), Column("lag"),
                   Column("unacked"), Column("gaps"), Column("quarantined"),
                   Column("last_signal_at", "last signal at"))
CERTIFICATE_COLUMNS = (Column("role"), Column("name", identifier=True), Column("version", "v"), Column("subject"),
                       Column("not_after", "not after"), Column("sha256", identifier=True), Column("problem"))
BUNDLE_COLUMNS = (Column("sector", identifier=True), Column("version", identifier=True), Column("active"),
                  Column("batch_seq", "batch"), Column("installed_at", "installed at"), Column("problem"))
SETTING_COLUMNS = (Column("setting", identifier=True), Column("value"), Column("from"), Column("batch_seq", "batch"),
                   Column("version", "ferry bundle version", identifier=True))
POLL_COLUMNS = (Column("case_no", "case", identifier=True), Column("task_id", "task", identifier=True),
                Column("sector"), Column("sector_ref", "sector ref", identifier=True),
                Column("last_status", "status"), Column("polls"), Column("next_at", "next at"),
                Column("last_error", "last error"))
