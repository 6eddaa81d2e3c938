"""`yiwang`: one command, a subcommand per user and process. Composition root (DESIGN.md)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from fastapi import FastAPI
from rich.console import Console
from rich.markup import escape

from certstore import CertStore, FieldSealer
from gateway.audit.ledger import Ledger
from gateway.bootstrap.app import (
    Gateway,
    build_gateway,
    build_ledger,
    create_app,
    dead_letter_desk,
    open_database,
    personal_data,
    retention,
    rewrap_beyond_the_store,
)
from gateway.bootstrap.demo import run_demo
from gateway.bootstrap.serving import serve_forever, serve_processes
from gateway.catalogue.matters import Catalogue
from gateway.cli.adapters import make_adapters_app
from gateway.cli.audit import audit_commands, cli_actor, make_audit_app
from gateway.cli.catalogue import make_catalogue_app
from gateway.cli.certs import make_certs_app
from gateway.cli.keys import make_keys_app
from gateway.cli.simulators import make_simulators_app
from gateway.config import ConfigError, Settings
from gateway.domain.clock import SystemClock
from gateway.observability.logs import configure_logging
from gateway.persistence.uow import UnitsOfWork
from gateway.sectors.bundle_records import BundleStore
from gateway.security.api_keys import ApiKeyStore
from gateway.security.certificates import open_cert_store
from ops.cli import make_ops_app
from ops.dead_letters import DeadLetterDesk
from ops.gateway_metrics import serve_metrics

app = typer.Typer(help="Yiwang (一网) integration gateway.", no_args_is_help=True)
console = Console(width=None if Console().is_terminal else 140)  # CI logs are wide enough for the timelines


@contextmanager
def _open_ledger() -> Iterator[Ledger]:
    settings = _settings()
    engine = open_database(settings)
    ledger = build_ledger(settings, engine, FieldSealer(settings.master_keys(), settings.field_cipher))
    try:
        yield ledger
    finally:
        ledger.close()  # signs this command's records
        engine.dispose()


def _audit(action: str, subject: str | None, detail: dict[str, Any], outcome: str) -> None:
    """The audit record of an admin command. Written after it ran: if it cannot be, say so loudly."""
    try:
        with _open_ledger() as ledger:
            ledger.audit(cli_actor(), action, subject, detail, outcome=outcome)
    except Exception as exc:  # noqa: BLE001 - typer.Exit from bad settings too
        console.print(f"[yellow]warning:[/yellow] the audit record of `{action}` was not written: {exc}")


app.add_typer(audit_commands(make_ops_app(lambda: _dead_letter_desk(_settings()), cli_actor), "ops", _audit),
              name="ops")
app.add_typer(make_simulators_app(console), name="simulators")
app.add_typer(audit_commands(make_keys_app(lambda: ApiKeyStore(open_database(_settings()))), "keys", _audit),
              name="keys")
app.add_typer(audit_commands(make_catalogue_app(lambda: Catalogue(open_database(_settings())),
                                                lambda: _settings().four_eyes), "catalogue", _audit),
              name="catalogue")
app.add_typer(audit_commands(make_adapters_app(lambda: BundleStore(open_database(_settings()), SystemClock()),
                                               lambda: _gateway(_settings()).sector_calls,
                                               lambda: _settings().four_eyes), "adapters", _audit),
              name="adapters")
app.add_typer(audit_commands(make_audit_app(_open_ledger, lambda progress: _retention_now(progress)), "audit", _audit),
              name="audit")
certs_app = make_certs_app(lambda: _cert_store(_settings()),
                           lambda progress: rewrap_beyond_the_store(_settings(), progress))
app.add_typer(audit_commands(certs_app, "certs", _audit), name="certs")


def _retention_now(progress: Callable[[int], None]) -> int:
    """The scheduled retention purge, run once now (`yiwang audit retention`); how many rows it purged."""
    settings = _settings()
    with _open_ledger() as ledger:
        return retention(settings, ledger.units.engine, ledger, SystemClock()).run(progress)


def _dead_letter_desk(settings: Settings) -> DeadLetterDesk:
    """The operators' dead-letter desk without the rest of a gateway."""
    return dead_letter_desk(UnitsOfWork(open_database(settings), personal_data(settings)), SystemClock())


def _cert_store(settings: Settings) -> CertStore:
    return open_cert_store(open_database(settings), settings, SystemClock())


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level, settings.log_format, settings.log_file, settings.log_retention_days)
    return settings


def _gateway(settings: Settings) -> Gateway:
    """`build_gateway`; what it refuses (a strict start's findings, a malformed master key) is a readable
    message and exit 2, not a traceback."""
    try:
        return build_gateway(settings)
    except ConfigError as exc:
        _refused(exc)


def _refused(exc: ConfigError) -> NoReturn:
    console.print(f"[red]configuration error:[/red] {escape(str(exc))}")
    raise typer.Exit(2) from exc


# uvicorn's factory for each of `serve --workers N`'s processes
API_PROCESS_APP = "gateway.bootstrap.cli:api_process_app"


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000,
          workers: Annotated[int | None, typer.Option(
              min=1, show_default=False, help="API processes on this port, each with its own gateway (dispatcher, "
                                              "audit chain, metrics); default: YIWANG_API_WORKERS, or 1")] = None,
          ) -> None:
    """Run the unified HTTP endpoints (and, by default, an in-process dispatcher)."""
    settings = _settings()
    processes = workers if workers is not None else settings.api_workers
    if processes > 1:
        # What a process makes on its first start (the schema, the catalogue, the key files under the var
        # dir) is made here once, before N processes start at the same instant: each is safe to race for
        # (certstore.keyfiles.write_once, the migration lock), but N copies of the work would slow the start.
        _gateway(settings).close()
        serve_processes(API_PROCESS_APP, host, port, processes)
        return
    gateway = _gateway(settings)
    try:
        serve_forever(create_app(gateway), host, port)
    finally:
        gateway.close()


def api_process_app() -> FastAPI:
    """The app of one of `yiwang serve --workers N`'s processes: a gateway of its own from the same settings
    (the environment), as `yiwang serve` builds for one process, closed when the app stops."""
    return create_app(build_gateway(_settings()), close_gateway=True)


@app.command()
def worker() -> None:
    """Run a dispatcher only: deliver outbox messages to sectors (over RabbitMQ when YIWANG_AMQP_URL is set)
    until SIGTERM or Ctrl-C."""
    gateway = _gateway(_settings())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"worker {gateway.dispatcher.owner} delivering from {gateway.settings.db_url}"
                  + (" over RabbitMQ" if gateway.settings.amqp_url else ""))
    stop_metrics = serve_metrics(gateway.metrics, gateway.settings.metrics_host, gateway.settings.metrics_port)
    if gateway.settings.amqp_url:  # relay, consumers and scheduled jobs on threads of their own
        gateway.start_dispatcher()
        while not stop.wait(0.5):
            pass
    else:
        gateway.dispatcher.run(stop)
    gateway.close()  # with RabbitMQ: hands back what it holds, finishes what is in flight (YIWANG_LEASE_MS)
    stop_metrics()


@app.command()
def demo(keep: bool = typer.Option(False, help="Keep var/demo from the last run instead of starting fresh.")) -> None:
    """Run the simulator and the gateway, submit sample cases as the hall would, print their timelines."""
    settings = _settings()
    if "YIWANG_LOG_LEVEL" not in os.environ:
        configure_logging("warning", settings.log_format)  # the timelines tell the story
    try:
        succeeded = run_demo(console, settings, fresh=not keep)
    except ConfigError as exc:  # e.g. a strict start: the demo's secrets are the published ones
        _refused(exc)
    raise typer.Exit(0 if succeeded else 1)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
