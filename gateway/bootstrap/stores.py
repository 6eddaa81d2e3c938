"""The parts a command opens from settings without building a gateway: the database, the audit and message
logs, the keys personal data rests under.

`gateway.bootstrap.app` builds a whole gateway from these; the `yiwang` command groups open only the part
they need. This module imports no web framework, broker client or adapter kind, so a command such as
`yiwang keys list` starts quickly (tests/integration/test_cli_start.py).
"""

from __future__ import annotations

from sqlalchemy import Engine

from certstore import FieldSealer, load_or_create_signing_key
from gateway.audit.ledger import Ledger
from gateway.config import Settings
from gateway.domain.clock import Clock
from gateway.persistence.blind_index import BlindIndex, load_or_create_key
from gateway.persistence.engine import make_engine
from gateway.persistence.personal_data import PersonalData
from gateway.persistence.uow import create_schema

LEDGER_KEY_FILE = "ledger-signing.key"  # under the var dir, sealed with the master key


def open_database(settings: Settings) -> Engine:
    """The engine, with the schema in place: what every command that touches the database starts with."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url, settings.db_pool_size, settings.db_max_overflow)
    create_schema(engine)
    return engine


def build_ledger(settings: Settings, engine: Engine, sealer: FieldSealer, clock: Clock | None = None) -> Ledger:
    """The audit and message logs of this process, signing checkpoints with the key sealed in the var dir."""
    signer = load_or_create_signing_key(settings.var_dir / LEDGER_KEY_FILE, settings.master_keys())
    return Ledger(engine, sealer, signer, digest_name=settings.digest, clock=clock,
                  checkpoint_every=settings.checkpoint_every, checkpoint_ms=settings.checkpoint_ms)


def personal_data(settings: Settings, sealer: FieldSealer | None = None) -> PersonalData:
    """The keys personal data rests under: the field sealer and the blind index."""
    index = BlindIndex(load_or_create_key(settings.var_dir / "blind-index.key", settings.blind_index_key))
    return PersonalData(index, sealer or FieldSealer(settings.master_keys(), settings.field_cipher))
