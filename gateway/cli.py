"""`yiwang`: one command, a subcommand per user and process. Composition root (DESIGN.md)."""

from __future__ import annotations

import importlib
import os
import signal
from typing import Annotated
import threading

import typer
from rich.console import Console
from rich.table import Table

from gateway.app import build_gateway, create_app, open_database
from gateway.bundles import BundleStore
from gateway.catalogue import Catalogue
from gateway.cli_adapters import make_adapters_app
from gateway.cli_catalogue import make_catalogue_app
from gateway.cli_keys import make_keys_app
from gateway.config import ConfigError, Settings
from gateway.demo import run_demo
from gateway.domain.clock import SystemClock
from gateway.identities import ApiKeyStore
from gateway.logs import configure_logging
from gateway.persistence.uow import UnitOfWork
from gateway.serving import serve_forever

app = typer.Typer(help="Yiwang (一网) integration gateway.", no_args_is_help=True)
ops = typer.Typer(help="Operators' tools.", no_args_is_help=True)
simulators = typer.Typer(help="Sector simulators for development, tests and rehearsal.", no_args_is_help=True)
app.add_typer(ops, name="ops")
app.add_typer(simulators, name="simulators")
app.add_typer(make_keys_app(lambda: ApiKeyStore(open_database(_settings()))), name="keys")
app.add_typer(make_catalogue_app(lambda: Catalogue(open_database(_settings()))), name="catalogue")
app.add_typer(make_adapters_app(lambda: BundleStore(open_database(_settings()), SystemClock()),
                                lambda: build_gateway(_settings()).sector_calls), name="adapters")
SIMULATORS = {"social_security": "social_security", "housing_fund": "housing_fund",
              "civil_affairs": "civil_affairs", "public_security": "public_security"}
console = Console(width=None if Console().is_terminal else 140)  # CI logs are wide enough for the timelines


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level, settings.log_format)
    return settings


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the unified HTTP endpoints (and, by default, an in-process dispatcher)."""
    gateway = build_gateway(_settings())
    try:
        serve_forever(create_app(gateway), host, port)
    finally:
        gateway.close()


@app.command()
def worker() -> None:
    """Run a dispatcher only: deliver outbox messages to sectors until SIGTERM or Ctrl-C."""
    gateway = build_gateway(_settings())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"worker {gateway.dispatcher.owner} delivering from {gateway.settings.db_url}")
    gateway.dispatcher.run(stop)
    gateway.close()


@app.command()
def demo(keep: bool = typer.Option(False, help="Keep var/demo from the last run instead of starting fresh.")) -> None:
    """Run the simulator and the gateway, submit sample cases as the hall would, print their timelines."""
    settings = _settings()
    if "YIWANG_LOG_LEVEL" not in os.environ:
        configure_logging("warning", settings.log_format)  # the timelines tell the story
    raise typer.Exit(0 if run_demo(console, settings, fresh=not keep) else 1)


@simulators.command("run")
def run_simulator(
    sector: Annotated[str, typer.Argument(help="social_security | housing_fund | civil_affairs | public_security")],
    port: int = 0,
    decision_delay_ms: int = 2000,
) -> None:
    """Run a sector simulator in the foreground (its default credentials: adapters/simulators/SECTORS.md)."""
    module = SIMULATORS.get(sector)
    if module is None:
        console.print(f"[red]unknown sector {sector!r}; one of: {', '.join(SIMULATORS)}")
        raise typer.Exit(2)
    kwargs = {"port": port} if port else {}
    importlib.import_module(f"adapters.simulators.{module}").serve(decision_delay_ms=decision_delay_ms, **kwargs)


@ops.command("dead-letters")
def dead_letters(case_no: str | None = None, limit: int = 50) -> None:
    """List dead letters: messages that outlasted their retry policy."""
    engine = open_database(_settings())
    with UnitOfWork(engine, read_only=True) as uow:
        letters = uow.dead_letters.list(case_no=case_no, limit=limit)
    table = Table("id", "case", "sector", "operation", "class", "attempts", "error", title="dead letters")
    for d in letters:
        table.add_row(str(d.id), d.case_no, d.sector, d.operation, d.error_class, str(d.attempts),
                      d.error_message[:80])
    console.print(table)
    engine.dispose()


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
