"""Tampering with stored log records, as an attacker with database access would."""

from __future__ import annotations

from sqlalchemy import Engine, text

from gateway.persistence.ledger_tables import APPEND_ONLY_TABLES


def tamper(engine: Engine, *statements: str) -> None:
    """Run SQL past the append-only triggers."""
    with engine.begin() as conn:
        for table in APPEND_ONLY_TABLES:
            if engine.dialect.name == "sqlite":
                for verb in ("update", "delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
            else:
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in statements:
            conn.execute(text(statement))
