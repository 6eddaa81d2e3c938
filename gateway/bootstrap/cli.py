"""`yiwang`: one command, a subcommand per user and process. Composition root (DESIGN.md).

A command starts in well under a second: this module imports only typer, click and rich. The command groups
(`keys`, `ops`, …) are listed from the static table `GROUPS` (name and help text) and a group's module is
imported only when the group is invoked or its own --help is asked (`CommandGroups`); `serve`, `worker` and
`demo` import the web app, the broker client and the simulators in their bodies.
tests/integration/test_cli_start.py holds it: importing this module loads none of fastapi, uvicorn, zeep,
lxml, pika, httpx; `make bench` reports the CPU time of `yiwang --version` (`cli.version_cpu_s`).

The root also owns what every command shares: `--version`; `-v`/`--verbose` (log lines go to stderr, at
warning level and above unless -v: info, -vv: debug; stdout is for results); and the exit codes
(gateway/cli/common.py): a command that raises one of the domain's "not found", "refused" or "service
unavailable" exceptions ends with its code and one line on stderr, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from gateway.cli.common import EXIT_CODES, ending

if TYPE_CHECKING:  # what the commands build, imported in their bodies (the start time)
    from fastapi import FastAPI

    from certstore import CertStore
    from gateway.audit.ledger import Ledger
    from gateway.bootstrap.app import Gateway
    from gateway.config import ConfigError, Settings
    from gateway.sectors.ferry_channels import FerryChannels
    from ops.overview import Overview

console = Console(width=None if Console().is_terminal else 140)  # CI logs are wide enough for the timelines


@dataclass(frozen=True)
class Group:
    """A command group as `yiwang --help` lists it, and how its typer app is built."""

    help: str  # the group's own help text; tests/integration/test_cli_start.py compares the two
    build: Callable[[], typer.Typer]  # imports the group's module: called only when the group is named


EPILOG = "Exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES)


class CommandGroups(TyperGroup):
    """The root group: its own commands as typer made them, and the groups of `GROUPS` loaded on demand
    (`LazyCommands`). Listing them for --help uses the table; naming one (to run it, for its --help, or
    through `commands[name]`) imports and builds it. A command raising an exception that
    `gateway.cli.common.ENDINGS` names ends with that exit code and one line on stderr."""

    # The contexts and commands are typer's (its own copy of click, typer._click, no public name): typed Any.
    _listing = False  # while --help lists the commands: the table's entries stand in for the groups

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names only: nothing is loaded

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        group = GROUPS.get(cmd_name)
        if self._listing and group is not None:
            return TyperCommand(cmd_name, help=group.help)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            known = ending(exc)
            if known is None:
                raise  # a bug: its traceback is what a report needs
            typer.echo(f"error: {known.line(exc)}", err=True)
            raise typer.Exit(known.exit_code) from exc


class LazyCommands(MutableMapping[str, Any]):
    """The root's commands by name: its own, then the groups of `GROUPS`, each built when first looked up. Code
    that walks `group.commands` (typer's suggestions, the tests' walks of the command tree) sees every group."""

    def __init__(self, own: MutableMapping[str, Any]) -> None:
        self.loaded = dict(own)

    def __getitem__(self, name: str) -> Any:
        if name not in self.loaded and name in GROUPS:
            self.loaded[name] = load_group(name)
        return self.loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:  # the root's own commands, then the groups in the table's order
        return iter([*(name for name in self.loaded if name not in GROUPS), *GROUPS])

    def __len__(self) -> int:
        return len(set(self.loaded) | set(GROUPS))


def load_group(name: str) -> Any:
    """The group `name` of `GROUPS`, its module imported and its typer app built."""
    command = typer.main.get_group(GROUPS[name].build())  # a subgroup: no --install-completion of its own
    command.name = name
    return command


app = typer.Typer(cls=CommandGroups, help="Yiwang (一网) integration gateway.", epilog=EPILOG, no_args_is_help=True)

_verbosity = 0  # -v: 1, -vv: 2


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"yiwang {version('yiwang')}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False,
                                         help="Log lines on stderr: info with -v, debug with -vv (default: warnings "
                                              "and errors only). Standard output carries only results.")] = 0,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="Print `yiwang <version>` and exit.")] = False,
) -> None:
    """Yiwang (一网) integration gateway."""
    global _verbosity
    _verbosity = verbose
    _log_to_stderr(_command_log_level())  # before anything logs: nothing a command logs reaches stdout


def _command_log_level() -> str:
    return ("warning", "info", "debug")[min(_verbosity, 2)]


def _log_to_stderr(level: str, fmt: str = "console") -> None:
    from gateway.observability.logs import configure_logging

    configure_logging(level, fmt)


# -- what the command groups open -------------------------------------------------------------------------------

@contextmanager
def _open_ledger() -> Iterator[Ledger]:
    from certstore import FieldSealer
    from gateway.bootstrap.stores import build_ledger, open_database

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
    from gateway.cli.audit import cli_actor

    try:
        with _open_ledger() as ledger:
            ledger.audit(cli_actor(), action, subject, detail, outcome=outcome)
    except Exception as exc:  # noqa: BLE001 - typer.Exit from bad settings too
        known = ending(exc)  # e.g. the database is down: one line, as the command's own error says it
        why = known.line(exc) if known is not None else str(exc)
        Console(stderr=True).print(f"[yellow]warning:[/yellow] the audit record of `{action}` was not written: "
                                   f"{escape(why)}", highlight=False, soft_wrap=True)


def _settings(*, service: bool = False) -> Settings:
    """The settings from the environment, logging configured: a command logs to stderr at the level -v chose; a
    service (`serve`, `worker`), or any command writing its log to YIWANG_LOG_FILE (where the logs' signed
    checkpoints are kept as anchors), at YIWANG_LOG_LEVEL unless -v asks for more."""
    from gateway.config import ConfigError, Settings

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        _refused(exc)
    from gateway.observability.logs import configure_logging

    kept = service or settings.log_file is not None
    level = settings.log_level if kept and _verbosity == 0 else _command_log_level()
    configure_logging(level, settings.log_format, settings.log_file, settings.log_retention_days)
    return settings


def _gateway(settings: Settings) -> Gateway:
    """`build_gateway`; what it refuses (a strict start's findings, a malformed master key) is a readable
    message and exit 2, not a traceback."""
    from gateway.bootstrap.app import build_gateway
    from gateway.config import ConfigError

    try:
        return build_gateway(settings)
    except ConfigError as exc:
        _refused(exc)


def _refused(exc: ConfigError) -> NoReturn:
    Console(stderr=True).print(f"[red]configuration error:[/red] {escape(str(exc))}", highlight=False)
    raise typer.Exit(2) from exc


def _four_eyes() -> bool:
    return _settings().four_eyes


def ops_group() -> typer.Typer:
    from gateway.bootstrap.stores import open_database, personal_data
    from gateway.cli.audit import audit_commands, cli_actor
    from gateway.domain.clock import SystemClock
    from gateway.persistence.uow import UnitsOfWork
    from gateway.sectors.bundle_records import BundleStore
    from ops.cli import add_journey_command, make_ops_app
    from ops.dead_letters import DeadLetterDesk
    from ops.journey import CaseJourney

    def open_desk() -> DeadLetterDesk:  # the operators' dead-letter desk without the rest of a gateway
        settings = _settings()
        engine, clock = open_database(settings), SystemClock()
        # A discard may close a case: its subscribers hear of it, as from a gateway.
        subscribers = BundleStore(engine, clock).subscribers
        return DeadLetterDesk(UnitsOfWork(engine, personal_data(settings), subscribers=subscribers), clock)

    @contextmanager
    def open_overview() -> Iterator[Overview]:
        """The overview of a gateway built for the command (its dispatcher not started), closed after it."""
        gateway = _gateway(_settings())
        try:
            yield gateway.overview
        finally:
            gateway.close()

    @contextmanager
    def open_journey() -> Iterator[CaseJourney]:  # a case's journey reads the message log too
        settings = _settings()
        with _open_ledger() as ledger:
            yield CaseJourney(UnitsOfWork(ledger.units.engine, personal_data(settings)), ledger)

    app = make_ops_app(open_desk, cli_actor, open_overview)
    add_journey_command(app, open_journey, cli_actor)
    return audit_commands(app, "ops", _audit)


def simulators_group() -> typer.Typer:
    from gateway.cli.simulators import make_simulators_app

    return make_simulators_app(console)


def keys_group() -> typer.Typer:
    from gateway.bootstrap.stores import open_database
    from gateway.cli.audit import audit_commands
    from gateway.cli.keys import make_keys_app
    from gateway.security.api_keys import ApiKeyStore

    return audit_commands(make_keys_app(lambda: ApiKeyStore(open_database(_settings()))), "keys", _audit)


def catalogue_group() -> typer.Typer:
    from gateway.bootstrap.stores import open_database
    from gateway.catalogue.matters import Catalogue
    from gateway.cli.audit import audit_commands
    from gateway.cli.catalogue import make_catalogue_app

    return audit_commands(make_catalogue_app(lambda: Catalogue(open_database(_settings())), _four_eyes),
                          "catalogue", _audit)


def adapters_group() -> typer.Typer:
    from gateway.bootstrap.stores import open_database
    from gateway.cli.adapters import make_adapters_app
    from gateway.cli.audit import audit_commands
    from gateway.domain.clock import SystemClock
    from gateway.sectors.bundle_records import BundleStore

    return audit_commands(make_adapters_app(lambda: BundleStore(open_database(_settings()), SystemClock()),
                                            lambda: _gateway(_settings()).sector_calls, _four_eyes),
                          "adapters", _audit)


def audit_group() -> typer.Typer:
    from gateway.cli.audit import audit_commands, make_audit_app

    def retention_now(progress: Callable[[int], None]) -> int:
        """The scheduled retention purge, run once now (`yiwang audit retention`); how many rows it purged."""
        from gateway.bootstrap.app import retention  # a whole gateway's imports: only this command's
        from gateway.domain.clock import SystemClock

        settings = _settings()
        with _open_ledger() as ledger:
            return retention(settings, ledger.units.engine, ledger, SystemClock()).run(progress)

    return audit_commands(make_audit_app(_open_ledger, retention_now), "audit", _audit)


def certs_group() -> typer.Typer:
    from gateway.bootstrap.stores import open_database
    from gateway.cli.audit import audit_commands
    from gateway.cli.certs import make_certs_app
    from gateway.domain.clock import SystemClock
    from gateway.security.certificates import open_cert_store

    def open_store() -> CertStore:
        settings = _settings()
        return open_cert_store(open_database(settings), settings, SystemClock())

    def rewrap(progress: Callable[[int], None]) -> str:
        from gateway.bootstrap.app import rewrap_beyond_the_store  # a whole gateway's imports: only rewrap's

        return rewrap_beyond_the_store(_settings(), progress)

    def open_agent_store(config: Path) -> CertStore:  # `--agent`: the far-side agent's own store
        import ferry

        return ferry.open_agent_store(ferry.load_config(config))

    def audit(action: str, subject: str | None, detail: dict[str, Any], outcome: str) -> None:
        if detail.get("agent") is None:  # the agent's store is on the 前置机, beside no gateway ledger
            _audit(action, subject, detail, outcome)

    return audit_commands(make_certs_app(open_store, rewrap, open_agent_store), "certs", audit)


def ferry_group() -> typer.Typer:
    from gateway.cli.audit import audit_commands
    from gateway.cli.ferry import make_ferry_app
    from gateway.domain.clock import SystemClock

    def service_logs() -> None:  # `yiwang ferry serve` logs as a service does: info and above unless -vv
        _log_to_stderr("debug" if _verbosity >= 2 else "info")

    @contextmanager
    def open_links(config: Path | None) -> Iterator[FerryChannels]:
        """The links an operator's command reads: the agent's, from its own state (`--config`); else the
        gateway's, its stations on the gateway's database and YIWANG_FERRY_DIR as a running gateway has them (a
        gateway built, its dispatcher not started)."""
        if config is not None:
            from gateway.bootstrap.ferry_links import agent_links

            with agent_links(config) as links:
                yield links
            return
        gateway = _gateway(_settings())
        try:
            yield gateway.ferry_channels
        finally:
            gateway.close()

    def audit(action: str, subject: str | None, detail: dict[str, Any], outcome: str) -> None:
        """On the gateway's ledger; the agent's commands (and operators' with --config) run on the 前置机, beside
        no gateway ledger: an operator's resend there is a log line on stderr (and in YIWANG_LOG_FILE)."""
        if detail.get("config") is None:
            _audit(action, subject, detail, outcome)
        elif action == "ferry resend":
            import structlog

            from gateway.cli.audit import cli_actor

            structlog.get_logger("yiwang.ferry").warning("operator resend on the agent", actor=cli_actor(),
                                                         subject=subject, reason=detail.get("reason"),
                                                         outcome=outcome)

    return audit_commands(make_ferry_app(service_logs, open_links, SystemClock().now), "ferry", audit)


GROUPS: dict[str, Group] = {  # in the order `yiwang --help` lists them, after serve, worker, demo
    "ops": Group("Operators' tools: the overview; dead letters — list, count, causes, export, show, replay, discard.",
                 ops_group),
    "simulators": Group("Sector simulators for development, tests and rehearsal (adapters/simulators/SECTORS.md).",
                        simulators_group),
    "keys": Group("API keys: who may call the gateway, with which roles.", keys_group),
    "catalogue": Group("The matter catalogue (事项目录): import, export, validate.",
                       catalogue_group),
    "adapters": Group("Sector bundles: validate, register, test, rehearse, activate, roll back, retire.",
                      adapters_group),
    "audit": Group("The tamper-evident audit and message logs: verify, list, tail; the retention purge.",
                   audit_group),
    "certs": Group("Certificates, private keys and bundle secrets, encrypted at rest.",
                   certs_group),
    "ferry": Group("The ferry across an isolated network: links' status, gaps, quarantine, resend; the far-side "
                   "agent.", ferry_group),
}


# -- the services ---------------------------------------------------------------------------------------------

# uvicorn's factory for each of `serve --workers N`'s processes
API_PROCESS_APP = "gateway.bootstrap.cli:api_process_app"


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000,
          workers: Annotated[int | None, typer.Option(
              min=1, show_default=False, help="API processes on this port, each with its own gateway (dispatcher, "
                                              "audit chain, metrics); default: YIWANG_API_WORKERS, or 1")] = None,
          ) -> None:
    """Run the unified HTTP endpoints (and, by default, an in-process dispatcher)."""
    from gateway.bootstrap.app import create_app
    from gateway.bootstrap.serving import serve_forever, serve_processes

    settings = _settings(service=True)
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
    from gateway.bootstrap.app import build_gateway, create_app

    return create_app(build_gateway(_settings(service=True)), close_gateway=True)


@app.command()
def worker() -> None:
    """Run a dispatcher only: deliver outbox messages to sectors (over RabbitMQ when YIWANG_AMQP_URL is set)
    until SIGTERM or Ctrl-C."""
    import signal
    import threading

    from ops.gateway_metrics import serve_metrics

    gateway = _gateway(_settings(service=True))
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
def demo(keep: bool = typer.Option(False, help="Keep var/demo from the last run instead of starting fresh."),
         stay: bool = typer.Option(False, help="After the scenes, keep the gateway, its console and the sector "
                                                "simulators running until Ctrl-C"),
         port: int = typer.Option(0, min=0, max=65535, help="the gateway's port (0: any free one)")) -> None:
    """Run the simulator and the gateway, submit sample cases as the hall would, print their timelines."""
    from gateway.bootstrap.demo import run_demo
    from gateway.config import ConfigError

    settings = _settings()  # warnings only unless -v: the timelines tell the story
    try:
        succeeded = run_demo(console, settings, fresh=not keep, stay=stay, port=port)
    except ConfigError as exc:  # e.g. a strict start: the demo's secrets are the published ones
        _refused(exc)
    raise typer.Exit(0 if succeeded else 1)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
