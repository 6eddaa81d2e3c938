"""The far-side ferry agent: runs on the front-end processor (前置机) inside an isolated network, behind the
isolation gateway (网闸) or one-way link that carries files between it and the Yiwang gateway.

It reads the gateway's batches from a folder, verifies and opens them, installs the sector bundles signed
`control` entries carry, delivers each `message` to its sector with the same adapter kinds the gateway uses
(SOAP, REST), polls the sector for decisions itself, and writes answer and decision batches back. Its state is
its own SQLite file under its own master key: it never reaches the gateway's database.

Public API (what the `yiwang ferry` commands and the operators' tools call):
- configuration: `load_config(path)` -> `AgentConfig`, `ConfigInvalid` (names every key at fault);
- `init_agent(config, algorithm)`: master key file, state, own key pair; its certificate for the near side;
  `check_ready(config)` (`AgentNotReady`: what is missing, and the command that makes it);
- `open_agent_store(config)`: the agent's certificate store (`yiwang certs import --agent`);
- `Agent` (one pass: `run_once`; `serve(stop)`), `run_once(config)`, `serve(config)` (until SIGTERM/SIGINT);
- `agent_state(config)`: channels, certificates, bundles, polls, what waits to be sent.
Imports `adapters`, `certstore` and `mappings` through their public API, never `gateway` or `ops`.
"""

from __future__ import annotations

from certstore import CertStore
from ferry.agent import Agent, PassReport, run_once, serve
from ferry.config import AgentConfig, ConfigInvalid, load_config
from ferry.report import agent_state
from ferry.state import (
    ALGORITHMS,
    MASTER_KEY_ENV,
    AgentNotReady,
    check_initialised,
    check_ready,
    init_state,
    open_state,
)


def init_agent(config: AgentConfig, algorithm: str = "sm2", days: float = 730) -> tuple[str, bytes]:
    """`yiwang ferry init`: (a line saying what exists now, the agent's certificate PEM)."""
    stored, certificate = init_state(config, algorithm, days)
    return (f"{config.own_certificate} version {stored.version} ({stored.key_algorithm}) in {config.state}",
            certificate)


def open_agent_store(config: AgentConfig) -> CertStore:
    """The agent's certificate store, for `yiwang certs` (a command's process: its engine goes with it);
    `AgentNotReady` before `init`."""
    check_initialised(config)
    return open_state(config).store


__all__ = [
    "ALGORITHMS", "MASTER_KEY_ENV",
    "Agent", "AgentConfig", "AgentNotReady", "ConfigInvalid", "PassReport",
    "agent_state", "check_ready", "init_agent", "load_config", "open_agent_store", "run_once", "serve",
]  # fmt: skip
