"""The agent's state: one SQLite file holding the station's channel tables, its certificate store and its own
rows (ferry/tables.py), sealed under its own master key — nothing of the gateway's.

`open_state(config)` opens (and creates, the first time) the file and its tables; `init_state(config, ...)`
is `yiwang ferry init`: the master key file (0600, made once; `YIWANG_FERRY_MASTER_KEY` instead, if set) and
the agent's own key pair (SM2 by default), returning the certificate the near side imports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, MetaData

from adapters import FerryTables, ferry_tables
from certstore import (
    CertStore,
    CertTables,
    MasterKeys,
    StoredVersion,
    UnknownEntry,
    cert_tables,
    self_signed,
    write_once,
)
from ferry.config import AgentConfig
from ferry.engine import state_engine
from ferry.tables import AgentTables, agent_tables

MASTER_KEY_ENV = "YIWANG_FERRY_MASTER_KEY"  # `id:base64key`, first current: instead of the file
ALGORITHMS = {"sm2": "sm2", "rsa": "rsa-2048"}  # what `init --algorithm` takes -> the store's key algorithm
ACTOR = "ferry-agent"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class State:
    engine: Engine
    ferry: FerryTables
    certs: CertTables
    agent: AgentTables
    store: CertStore

    def close(self) -> None:
        self.engine.dispose()


def _metadata() -> tuple[MetaData, FerryTables, CertTables, AgentTables]:
    metadata = MetaData()
    return metadata, ferry_tables(metadata), cert_tables(metadata), agent_tables(metadata)


def master_keys(config: AgentConfig, env: Mapping[str, str] | None = None) -> MasterKeys:
    """The agent's master keys: `YIWANG_FERRY_MASTER_KEY` if set, else the configured file (`MasterKeyError`
    or `OSError` when neither can be read)."""
    env = os.environ if env is None else env
    if env.get(MASTER_KEY_ENV):
        return MasterKeys.parse(env[MASTER_KEY_ENV])
    return MasterKeys.parse(config.master_key_file.read_text(encoding="utf-8"))


def open_state(config: AgentConfig, env: Mapping[str, str] | None = None) -> State:
    """The state, its tables made if missing (`init` makes the file; everyone else checks it is there first:
    `check_initialised`)."""
    keys = master_keys(config, env)  # first: a missing key changes nothing
    metadata, ferry, certs, agent = _metadata()
    engine = state_engine(config.state)
    metadata.create_all(engine)  # new tables only: what is there is kept
    return State(engine, ferry, certs, agent, CertStore(engine, certs, keys, SystemClock(), refresh_s=2.0))


def init_state(config: AgentConfig, algorithm: str = "sm2", days: float = 730,
               env: Mapping[str, str] | None = None) -> tuple[StoredVersion, bytes]:
    """The master key file (unless the key comes from the environment), the state file and the agent's own key
    pair under `own_certificate`; returns it and its certificate PEM. A second `init` changes nothing and gives
    the certificate made the first time."""
    env = os.environ if env is None else env
    if not env.get(MASTER_KEY_ENV):
        write_once(config.master_key_file, MasterKeys.generate("ferry1") + "\n")
    state = open_state(config, env)
    try:
        current = _current(state.store, config.own_certificate)
        if current is not None:
            return current, state.store.current(config.own_certificate).certificate_pem
        certificate, key = self_signed(f"{config.name} (yiwang ferry agent)", ALGORITHMS[algorithm], days,
                                       organization="Yiwang ferry")
        stored = state.store.import_pem(config.own_certificate, certificate, key, actor=ACTOR)
        return stored, certificate
    finally:
        state.close()


class AgentNotReady(RuntimeError):
    """The agent cannot run yet: what is missing, and the command that makes it."""


def check_initialised(config: AgentConfig, env: Mapping[str, str] | None = None) -> None:
    """`AgentNotReady` unless `yiwang ferry init` made the master key and the state file: nothing else makes them."""
    env = os.environ if env is None else env
    if not env.get(MASTER_KEY_ENV) and not config.master_key_file.is_file():
        raise AgentNotReady(f"no master key file {config.master_key_file} (nor {MASTER_KEY_ENV}): {_init(config)}")
    if not config.state.is_file():
        raise AgentNotReady(f"no state file {config.state}: {_init(config)}")


def _init(config: AgentConfig) -> str:
    return f"run `yiwang ferry init --config {config.source}` first"


def check_ready(config: AgentConfig, env: Mapping[str, str] | None = None) -> None:
    """`AgentNotReady` unless the master key, the state, our key pair and the near side's certificate are there."""
    check_initialised(config, env)
    init = _init(config)
    state = open_state(config, env)
    try:
        own = _current(state.store, config.own_certificate)
        if own is None or not own.has_private_key:
            raise AgentNotReady(f"no key pair {config.own_certificate!r} in the agent's store: {init}")
        if _current(state.store, config.near_certificate) is None:
            raise AgentNotReady(f"the near side's certificate {config.near_certificate!r} is not in the agent's "
                                f"store: import it with `yiwang certs import --agent {config.source} "
                                f"{config.near_certificate} --cert near.pem`")
    finally:
        state.close()


def _current(store: CertStore, name: str) -> StoredVersion | None:
    try:
        return next((v for v in store.versions(name) if v.status == "current"), None)
    except UnknownEntry:
        return None
