"""The settings the gateway sends the agent: a `config` control entry beside the carried bundle.

A ferry bundle's `ferry.agent` (adapters/BUNDLE-FORMAT.md, "The ferry kind") crosses as
`{"control": "config", "sector", "version", "settings": {"poll_interval_ms": ..., "keep_keys_days": ...}}` in a
batch the station verified (signed by the near side's certificate). It is read strictly (`read_config`): only
those keys, whole numbers at least each one's minimum (`adapters.FERRY_AGENT_SETTINGS`, the kind's own bounds);
anything else is `SettingsRefused` and changes nothing. Taken settings are stored (`GatewaySettings.store`, one
row per channel: the later batch's win, whatever order batches arrived in — sequence numbers, never clocks) and
laid over the agent's own configuration file (`effective`): they replace the file's values, and an empty
`settings` hands every one back to the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from adapters import FERRY_AGENT_SETTINGS
from ferry.config import AgentConfig
from ferry.tables import AgentTables, utc

BODY_KEYS = ("control", "sector", "version", "settings")


class SettingsRefused(ValueError):
    """A `config` control entry the agent will not take: every problem named."""


@dataclass(frozen=True)
class Received:
    """Settings from the gateway: what they are, the ferry bundle that declared them, the batch that carried them."""

    settings: Mapping[str, int]
    sector: str
    version: str
    batch_seq: int
    received_at: datetime


def read_config(body: Mapping[str, Any]) -> tuple[str, str, dict[str, int]]:
    """(sector, version, settings) of a `config` control entry's body; `SettingsRefused` names every problem."""
    problems = [f"unknown key {key!r}" for key in body if key not in BODY_KEYS]
    problems += [f"{key!r} must be text" for key in ("sector", "version") if not _text(body.get(key))]
    settings = body.get("settings")
    if not isinstance(settings, dict):
        problems.append("'settings' must be a mapping")
        settings = {}
    for name, value in settings.items():
        minimum = FERRY_AGENT_SETTINGS.get(name)
        if minimum is None:
            problems.append(f"unknown setting {name!r} (known: {', '.join(FERRY_AGENT_SETTINGS)})")
        elif isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(f"settings.{name}: expected a whole number of at least {minimum}, got {value!r:.40}")
    if problems:
        raise SettingsRefused("; ".join(problems))
    return str(body["sector"]), str(body["version"]), dict(settings)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def effective(config: AgentConfig, received: Received | None) -> AgentConfig:
    """The agent's configuration file with the gateway's settings over it."""
    if received is None:
        return config
    over: dict[str, Any] = dict(received.settings)  # only the keys read_config lets through
    return replace(config, **over)


class GatewaySettings:
    """The settings row of the agent's channel."""

    def __init__(self, engine: Engine, tables: AgentTables, channel: str) -> None:
        self.engine, self.t, self.channel = engine, tables.settings, channel

    def store(self, sector: str, version: str, settings: Mapping[str, int], batch_seq: int, now: datetime) -> bool:
        """Keep them unless a later batch's are kept already; whether they were kept."""
        values = {"settings": json.dumps(dict(settings), sort_keys=True), "sector": sector, "version": version,
                  "batch_seq": batch_seq, "received_at": now}
        with self.engine.begin() as conn:
            kept = conn.execute(select(self.t.c.batch_seq).where(self.t.c.channel == self.channel)).scalar()
            if kept is None:
                conn.execute(insert(self.t).values(channel=self.channel, **values))
            elif batch_seq >= kept:  # the same batch again (applied again after a crash) changes nothing new
                conn.execute(update(self.t).where(self.t.c.channel == self.channel).values(**values))
            else:
                return False
        return True

    def current(self) -> Received | None:
        """What was kept, checked again (`SettingsRefused` if the row no longer reads as settings)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(self.t).where(self.t.c.channel == self.channel)).mappings().first()
        if row is None:
            return None
        try:
            stored = json.loads(row["settings"])
        except ValueError as exc:
            raise SettingsRefused(f"the stored settings are not JSON: {exc}") from exc
        _, _, settings = read_config({"sector": row["sector"], "version": row["version"], "settings": stored})
        received_at = utc(row["received_at"])
        assert received_at is not None  # NOT NULL
        return Received(settings, row["sector"], row["version"], row["batch_seq"], received_at)


def shown(config: AgentConfig, received: Received | None) -> list[dict[str, Any]]:
    """Each setting the gateway may send: its value now and where it comes from (`yiwang ferry state`)."""
    now = effective(config, received)
    rows = []
    for name in FERRY_AGENT_SETTINGS:
        value = getattr(now, name)
        if received is not None and name in received.settings:
            source = {"from": "gateway", "batch_seq": received.batch_seq, "sector": received.sector,
                      "version": received.version}
        else:
            source = {"from": "agent configuration" if value is not None else "the installed bundle",
                      "batch_seq": None, "sector": None, "version": None}
        rows.append({"setting": name, "value": value, **source})
    return rows
