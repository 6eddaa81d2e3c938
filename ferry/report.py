"""How to read an agent's state (`yiwang ferry state`, and the operators' `yiwang ferry status --config`): its
channels as the station sees them, its certificates, the bundles installed, the open polls and what waits to be
sent. Read only; identifiers only (no message body is kept to show).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from certstore import CredentialMissing, UnknownEntry
from ferry.agent import Agent
from ferry.config import AgentConfig
from ferry.state import check_initialised


def agent_state(config: AgentConfig, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`AgentNotReady` for an agent never initialised (nothing is created to answer)."""
    check_initialised(config, env)
    agent = Agent(config, env=env)
    try:
        return {
            "name": config.name, "channel": config.channel, "state": str(config.state), "mode": config.mode,
            "channels": [_plain(status) for status in agent.station.status()],
            "certificates": _certificates(agent),
            "bundles": [asdict(b) for b in agent.bundles.listed()],
            "polls": agent.polls.listed(open_only=True),
            "pending": agent.outbox.counts(),
        }
    finally:
        agent.close()


def _certificates(agent: Agent) -> list[dict[str, Any]]:
    shown = []
    for role, name in (("own", agent.config.own_certificate), ("near", agent.config.near_certificate)):
        try:
            versions = [v.public() for v in agent.state.store.versions(name) if v.status in ("current", "superseded")]
        except (UnknownEntry, CredentialMissing):
            versions = []
        shown.append({"role": role, "name": name, "versions": versions,
                      "problem": None if versions else f"no certificate named {name!r} in the agent's store"})
    return shown


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value
