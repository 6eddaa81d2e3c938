"""`yiwang simulators`: run a sector simulator, and flip a running one's fault switch.

`run SECTOR` starts one in the foreground, its fault armed from the start if asked (`--fault MODE
[--fault-count N] [--slow-ms N]`) and, for a sector that answers by calling back, told where the gateway
takes its callbacks (`--callback-url`). `fault SECTOR MODE --url URL` sets the fault switch of one that is
running, over HTTP (`POST /_simulator/fault`, adapters/simulators/SECTORS.md); `off` disarms it. Both take
the same mode names, each simulator's own (`--help` lists them). An unknown sector or mode is a usage
error (exit 2) named before anything is started or sent; a simulator that cannot be reached, or that is
another sector's, is exit 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import httpx
import typer
from rich.console import Console

from adapters.simulators.base import CONTROL_FAULT_PATH, FaultPlan
from adapters.simulators.roster import ROSTER, Sector
from gateway.cli.common import UNAVAILABLE

OFF = "off"  # the mode that disarms the switch


# Every simulator on the roster (adapters/simulators/roster.py): a sector's simulator joins there, not here.
SECTORS: Mapping[str, Sector] = ROSTER
_MODES_HELP = "; ".join(f"{name}: {', '.join(sector.modes)}" for name, sector in SECTORS.items())
_SECTOR_HELP = " | ".join(SECTORS)


def make_simulators_app(console: Console) -> typer.Typer:
    app = typer.Typer(help="Sector simulators for development, tests and rehearsal (adapters/simulators/SECTORS.md).",
                      no_args_is_help=True)

    @app.command("run", short_help="Run a sector simulator in the foreground.",
                 help="Run a sector simulator in the foreground until Ctrl-C (its default credentials: "
                      f"adapters/simulators/SECTORS.md). Fault modes — {_MODES_HELP}.")
    def run(sector: Annotated[str, typer.Argument(help=_SECTOR_HELP, show_default=False)],
            port: Annotated[int, typer.Option(help="0: the sector's usual port (8801-8809)")] = 0,
            decision_delay_ms: int = 2000,
            fault: Annotated[str | None, typer.Option(help="a fault armed from the start (modes above)",
                                                      show_default=False)] = None,
            fault_count: Annotated[int | None, typer.Option(help="for this many requests; default: until changed",
                                                            show_default=False)] = None,
            slow_ms: Annotated[int, typer.Option(help="how late the `slow` fault answers")] = 0,
            callback_url: Annotated[str | None, typer.Option(
                help="public_security: where decisions are called back, the gateway's "
                     "http(s)://HOST/callbacks/public_security", show_default=False)] = None,
            ) -> None:
        chosen = _sector(console, sector)
        if fault is not None:
            _mode(console, sector, fault, allow_off=False)
        if callback_url is not None and not chosen.calls_back:
            _usage(console, f"the {sector} simulator does not call back: --callback-url is for "
                            f"{', '.join(n for n, s in SECTORS.items() if s.calls_back)}")
        options: dict[str, Any] = {"port": port or chosen.default_port, "decision_delay_ms": decision_delay_ms,
                                   "fault": FaultPlan(fault, fault_count, slow_ms) if fault else None}
        if callback_url is not None:
            options["callback_url"] = callback_url
        try:
            chosen.serve(**options)
        except ValueError as exc:  # a bad count, delay or address: refused before anything listens
            _usage(console, str(exc))

    @app.command("fault", short_help="Set the fault switch of a running sector simulator.",
                 help="Set the fault switch of a running sector simulator; MODE `off` disarms it. "
                      f"Modes — {_MODES_HELP}. Meanings: adapters/simulators/SECTORS.md.")
    def fault(sector: Annotated[str, typer.Argument(help=_SECTOR_HELP, show_default=False)],
              mode: Annotated[str, typer.Argument(help="off, or one of the sector's modes", show_default=False)],
              url: Annotated[str | None, typer.Option(
                  help="the simulator's address (any URL on it); default: http://127.0.0.1 and the sector's usual "
                       "port", show_default=False)] = None,
              count: Annotated[int | None, typer.Option(help="for this many requests; default: until changed",
                                                        show_default=False)] = None,
              slow_ms: Annotated[int, typer.Option(help="how late the `slow` fault answers")] = 0,
              ) -> None:
        chosen = _sector(console, sector)
        _mode(console, sector, mode, allow_off=True)
        switch = _switch_url(console, url or f"http://127.0.0.1:{chosen.default_port}")
        order = {"sector": sector, "mode": None if mode == OFF else mode, "count": count, "slow_ms": slow_ms}
        try:
            answer = httpx.post(switch, json=order, timeout=5, trust_env=False)
            state = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            console.print(f"[red]no {sector} simulator answered at {switch}: {exc}[/red]")
            raise typer.Exit(UNAVAILABLE) from exc
        if answer.status_code == 409:
            console.print(f"[red]{state.get('error')} (at {switch}); nothing was changed[/red]")
            raise typer.Exit(1)
        if answer.status_code != 200:
            _usage(console, f"the simulator refused: {state.get('error', answer.text)}")
        console.print(f"{sector} simulator at {switch}: {_describe(state.get('fault'))}")

    return app


def _sector(console: Console, name: str) -> Sector:
    found = SECTORS.get(name)
    if found is None:
        _usage(console, f"unknown sector {name!r}; one of: {', '.join(SECTORS)}")
    return found


def _mode(console: Console, sector: str, mode: str, *, allow_off: bool) -> None:
    modes = SECTORS[sector].modes
    if mode not in modes and not (allow_off and mode == OFF):
        offered = ([OFF] if allow_off else []) + modes
        _usage(console, f"the {sector} simulator has no fault mode {mode!r}; one of: {', '.join(offered)}")


def _switch_url(console: Console, url: str) -> str:
    """The switch of the simulator at `url`: any address on it will do (a SOAP endpoint has a path)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        _usage(console, f"--url must be the simulator's http(s) address, not {url!r}")
    return f"{parts.scheme}://{parts.netloc}{CONTROL_FAULT_PATH}"


def _describe(fault: Mapping[str, Any] | None) -> str:
    if not fault:
        return "no fault armed"
    described = f"fault `{fault['mode']}` armed"
    if fault.get("remaining"):
        described += f" for the next {fault['remaining']} request(s)"
    if fault["mode"] == "slow":
        described += f", {fault.get('slow_ms', 0)} ms late"
    return described


def _usage(console: Console, message: str) -> NoReturn:
    console.print(f"[red]{message}[/red]")
    raise typer.Exit(2)
