"""`yiwang ferry ...`: the ferry across an isolated network (网闸, one-way link).

The far-side agent's commands, run on the front-end processor (前置机) with the agent's own configuration file
(docs/ferry-agent.md): `init` (state, master key file, the agent's key pair; prints its certificate for the near
side), `serve` (the loop, until SIGTERM or SIGINT), `run-once` (one pass), `state` (channels, certificates,
bundles, polls, what waits to be sent). They call the `ferry` package's public functions only; a configuration
the agent cannot use is one red line naming the key and exit code 2, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

import ferry
from certstore import CertificateError, CredentialMissing, MasterKeyError
from gateway.cli import output
from gateway.cli.common import BAD_INPUT
from gateway.cli.output import Column, JsonOption

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="the agent's configuration (YAML)")]


def make_ferry_app(service_logs: Callable[[], None]) -> typer.Typer:
    """`service_logs()`: log lines as a service writes them (info and above), for `serve`."""
    app = typer.Typer(help="The ferry across an isolated network: the far-side agent.", no_args_is_help=True)
    add_agent_commands(app, service_logs)
    return app


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
        """How the agent stands: channels, certificates, bundles, open polls, what waits to be sent."""
        with agent_errors():
            found = ferry.agent_state(ferry.load_config(config))
        if as_json:
            output.print_object(found, as_json=True)
            return
        output.print_rows(found["channels"], CHANNEL_COLUMNS, as_json=False, title=f"agent {found['name']}: channels")
        output.print_rows([_certificate_row(c) for c in found["certificates"]], CERTIFICATE_COLUMNS, as_json=False,
                          title="certificates")
        output.print_rows(found["bundles"], BUNDLE_COLUMNS, as_json=False, title="bundles")
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
POLL_COLUMNS = (Column("case_no", "case", identifier=True), Column("task_id", "task", identifier=True),
                Column("sector"), Column("sector_ref", "sector ref", identifier=True),
                Column("last_status", "status"), Column("polls"), Column("next_at", "next at"),
                Column("last_error", "last error"))
