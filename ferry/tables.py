"""The agent's own rows, beside the station's (`ferry_*`, adapters' ferry kind) and the certificate store's
(`cert_*`) in its one SQLite file.

- `ferry_agent_bundles`: each sector bundle a signed control entry carried here (sector, version, the zip as it
  came, its SHA-256, the batch that carried it), which one is active per sector, and why one was refused.
- `ferry_agent_polls`: each accepted submission the agent asks its sector about (identifiers only: the case
  number, task id, idempotency key, the sector's reference), the last status it saw, when it asks next, done.
- `ferry_agent_outbox`: answers and decisions made here and not yet sent (`sent_seq` NULL), then the batch that
  carried them. An answer names the message it answers (`answer_to`, unique): a message re-applied after a
  crash finds its answer already made and is not delivered again.
Personal data: no message body is kept; an answer holds the sector's canonical result or its error, masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, DateTime, Integer, LargeBinary, MetaData, String, Table, Text


@dataclass(frozen=True)
class AgentTables:
    bundles: Table
    polls: Table
    outbox: Table


def agent_tables(metadata: MetaData) -> AgentTables:
    bundles = Table(
        "ferry_agent_bundles", metadata,
        Column("sector", String(64), primary_key=True),
        Column("version", String(64), primary_key=True),
        Column("archive", LargeBinary, nullable=False),  # the bundle zip as the control entry carried it
        Column("sha256", String(64), nullable=False),
        Column("batch_seq", Integer, nullable=False),  # the later batch's bundle wins, whatever order they came in
        Column("installed_at", DateTime(timezone=True), nullable=False),
        Column("active", Boolean, nullable=False, default=False),
        Column("problem", Text),  # why it was refused (then never active)
    )
    polls = Table(
        "ferry_agent_polls", metadata,
        Column("message_id", String(64), primary_key=True),  # the submission's entry id
        Column("sector", String(64), nullable=False),
        Column("case_no", String(64)),
        Column("task_id", String(64)),
        Column("idempotency_key", String(255), nullable=False),
        Column("sector_ref", String(255), nullable=False),
        Column("last_status", String(32)),
        Column("polls", Integer, nullable=False, default=0),
        Column("last_error", Text),
        Column("next_at", DateTime(timezone=True), nullable=False),
        Column("done", Boolean, nullable=False, default=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    outbox = Table(
        "ferry_agent_outbox", metadata,
        Column("id", String(64), primary_key=True),  # the entry id: the same when sent again after a crash
        Column("type", String(16), nullable=False),  # answer | decision
        Column("key", String(255)),
        Column("operation", String(64), nullable=False),
        Column("answer_to", String(64), unique=True),  # an answer: the message it answers
        Column("body", Text, nullable=False),  # the entry's JSON
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("sent_seq", Integer),  # the batch that carried it; NULL: still to send
        Column("sent_at", DateTime(timezone=True)),
    )
    return AgentTables(bundles, polls, outbox)


def utc(value: datetime | None) -> datetime | None:
    """A time as stored: SQLite hands it back without its zone, which is always UTC here."""
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)
