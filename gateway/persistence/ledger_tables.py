"""Tamper-evident logs: the audit log and the message log, hash-chained, with signed checkpoints.

Both logs share `ledger_records`: each process writes its own chains (`audit:<host>:<pid>:<random>`,
`message:...`), so appends never contend across processes. A record's `hash` covers every stored field
(the body as its sealed token) and `prev_hash`; `ledger_checkpoints` holds signed (chain, seq, head hash)
triples. Rows are read and written only by `gateway.audit.ledger`, which offers no update, and deletes only
what the retention policy purges: records a signed `ledger_retention` marker covers. The triggers below
refuse everything else in the database too (an attacker must drop them or forge a marker first — and
then the chain and the marker's signature still tell).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, String, Table, Text, UniqueConstraint, event
from sqlalchemy.engine import Connection

from gateway.persistence.tables import metadata

ledger_records = Table(
    "ledger_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chain", String(120), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(8), nullable=False),  # audit | message
    Column("actor", String(160), nullable=False),  # who: `identity:<id>`, `cli:<user>@<host>`, or a sector
    Column("action", String(100), nullable=False),  # audit: `POST /v1/cases`; message: sent | received
    Column("subject", String(300)),  # audit: path parameters; message: the operation or query
    Column("sector", String(64)),
    Column("case_no", String(50)),
    Column("outcome", String(64)),  # audit: status code and outcome; message: ok or the failure class
    Column("body", Text),  # sealed token (certstore.keyring.FieldSealer): details, the message body
    Column("prev_hash", String(128), nullable=False),
    Column("hash", String(128), nullable=False),
    UniqueConstraint("chain", "seq", name="uq_ledger_records_chain_seq"),
    Index("ix_ledger_records_kind_at", "kind", "at"),
    Index("ix_ledger_records_sector", "sector"),
    Index("ix_ledger_records_case_no", "case_no"),
)

ledger_checkpoints = Table(
    "ledger_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chain", String(120), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("head_hash", String(128), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("signature", Text, nullable=False),  # base64
    Column("key_id", String(64), nullable=False),
)

# Retention markers (migration 0010): "the records of `chain` up to `seq` were purged under the retention
# policy; the record at `seq` had hash `head_hash`", signed with the ledger key like a checkpoint. A record
# may be deleted only once a marker covers it (`retention_delete_ddl`); `verify()` starts the chain after
# the newest marker whose signature holds.
ledger_retention = Table(
    "ledger_retention",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chain", String(120), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("head_hash", String(128), nullable=False),
    Column("purged_before", DateTime(timezone=True), nullable=False),  # the policy's cut-off at the time
    Column("at", DateTime(timezone=True), nullable=False),
    Column("signature", Text, nullable=False),  # base64
    Column("key_id", String(64), nullable=False),
)

APPEND_ONLY_TABLES = ("ledger_records", "ledger_checkpoints")  # as migration 0005 made them
_PG_FUNCTION = "yiwang_refuse_change"
_PG_RETENTION_FUNCTION = "yiwang_refuse_unretained_delete"
# A record a retention marker covers: the one condition under which ledger_records allows a DELETE.
_COVERED = "SELECT 1 FROM ledger_retention r WHERE r.chain = OLD.chain AND r.seq >= OLD.seq"


def append_only_ddl(dialect: str, table: str) -> list[str]:
    """Statements that make `table` refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL).

    No `%` and no `:` in them: they run through DDL() and op.execute(), which would read those as parameters."""
    if dialect == "sqlite":
        return [f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END" for verb in ("UPDATE", "DELETE")]
    if dialect == "postgresql":
        return [
            f"CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only'; END $$",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()",
        ]
    return []  # another database: the code alone keeps the tables append-only


def drop_append_only_ddl(dialect: str, table: str) -> list[str]:
    """The reverse of `append_only_ddl` (for the migration's downgrade)."""
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {table}_no_{verb}" for verb in ("update", "delete")]
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {table}_{name} ON {table}" for name in ("append_only", "no_truncate")]
    return []


def retention_delete_ddl(dialect: str) -> list[str]:
    """Statements that let `ledger_records` delete the records a retention marker covers, and only those
    (replacing the unconditional refusal of `append_only_ddl`; UPDATE and TRUNCATE stay refused)."""
    if dialect == "sqlite":
        return ["DROP TRIGGER IF EXISTS ledger_records_no_delete",
                f"CREATE TRIGGER ledger_records_no_delete BEFORE DELETE ON ledger_records WHEN NOT EXISTS "
                f"({_COVERED}) BEGIN SELECT RAISE(ABORT, 'ledger_records is append-only'); END"]
    if dialect == "postgresql":
        return [
            "DROP TRIGGER IF EXISTS ledger_records_append_only ON ledger_records",
            f"CREATE TRIGGER ledger_records_append_only BEFORE UPDATE ON ledger_records "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()",
            f"CREATE OR REPLACE FUNCTION {_PG_RETENTION_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF EXISTS ({_COVERED}) THEN RETURN OLD; END IF; "
            f"RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only'; END $$",
            f"CREATE TRIGGER ledger_records_retention BEFORE DELETE ON ledger_records "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_RETENTION_FUNCTION}()",
        ]
    return []


def drop_retention_delete_ddl(dialect: str) -> list[str]:
    """The reverse of `retention_delete_ddl`: every DELETE refused again (the migration's downgrade)."""
    if dialect == "sqlite":
        return ["DROP TRIGGER IF EXISTS ledger_records_no_delete",
                *[s for s in append_only_ddl(dialect, "ledger_records") if "BEFORE DELETE" in s]]
    if dialect == "postgresql":
        return ["DROP TRIGGER IF EXISTS ledger_records_retention ON ledger_records",
                f"DROP FUNCTION IF EXISTS {_PG_RETENTION_FUNCTION}()",
                "DROP TRIGGER IF EXISTS ledger_records_append_only ON ledger_records",
                *[s for s in append_only_ddl(dialect, "ledger_records") if "BEFORE UPDATE OR DELETE" in s]]
    return []


def _install_triggers(table: Table, connection: Connection, **_: object) -> None:
    """`metadata.create_all` (tests, adopted databases) gets the same triggers as the migrations."""
    statements = append_only_ddl(connection.dialect.name, table.name)
    if table is ledger_records:
        statements += retention_delete_ddl(connection.dialect.name)
    for statement in statements:
        connection.exec_driver_sql(statement)


for _table in (ledger_records, ledger_checkpoints, ledger_retention):
    event.listen(_table, "after_create", _install_triggers)
