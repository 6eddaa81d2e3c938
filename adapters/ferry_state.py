"""The ferry's channel state, in SQLAlchemy Core: the same tables on both sides of a link.

`ferry_tables(metadata)` declares them on a `MetaData` handed in: the gateway's own (its migration 0019 creates
them in the gateway's database) or the far-side agent's (created in its own SQLite file). Every name starts
with `ferry_`. Only portable types and statements: SQLite and PostgreSQL alike.

- `ferry_channels`: one row per channel name. A side writes the send columns of the channel it sends on and
  the receive columns of the channel it receives on, so both sides may even share one database (tests do).
  Send: `sent_seq` (the last seq allocated; the next `send` takes `sent_seq + 1`), `sent_digest` (its digest:
  the next batch's `previous`), `signals_sent` (the counter of our last signal), `beacon_at`. Receive:
  `applied_seq` (highest seq applied with every seq below it applied too), `seen_seq` (highest seq seen in a
  batch or announced by a beacon), `signals_seen` (the counter of the last signal accepted: replays are at or
  below it), `last_batch_at`, `last_signal_at`, `peer_seq` / `peer_digest` (what the peer's last beacon named).
- `ferry_sent`: every batch sent, its sealed bytes kept (encrypted: resends write them again unchanged),
  `written_at` (None: recorded but the file not written yet — a crash; written on the next pass), `resends`,
  `acked_at` (two-way: a receipt named it).
- `ferry_received`: every batch applied: seq, digest and `previous` (the chain is checked both ways).
- `ferry_messages`: one row per entry sent or received (direction `sent` | `received`), keyed by
  (channel, direction, id): the key and operation, never the body (personal data stays in the encrypted batch);
  sent messages carry their `answer` (the far side's answer entry, JSON) once it came back.
- `ferry_gaps`: seqs named missing on a receive channel (a later batch or a beacon showed them), `filled_at`
  once the last of them arrived.
- `ferry_quarantine`: every file refused on a receive channel, with its code and reason (ops alert on it).

Times are UTC (`timezone=True`); SQLite hands them back naive, `as_utc` puts the zone back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, LargeBinary, MetaData, String, Table, Text

SENT, RECEIVED = "sent", "received"  # ferry_messages.direction
STATE_SENT, STATE_ANSWERED, STATE_APPLIED = "sent", "answered", "applied"  # ferry_messages.state

_NAME = 200  # channel names (at most 100 characters: batch.py), file names
_TEXT = 512  # message ids and idempotency keys (batch.py caps them there)


@dataclass(frozen=True)
class FerryTables:
    channels: Table
    sent: Table
    received: Table
    messages: Table
    gaps: Table
    quarantine: Table


def _utc(name: str, **kw: Any) -> Column[datetime]:
    return Column(name, DateTime(timezone=True), **kw)


def _counter(name: str) -> Column[int]:
    """A seq or counter (a batch may carry one up to 2**63 - 1: BIGINT), 0 until the first."""
    return Column(name, BigInteger, nullable=False, default=0, server_default="0")


def _batch_key() -> tuple[Column[str], Column[int]]:
    """A batch's key: its channel and seq."""
    return (Column("channel", String(_NAME), primary_key=True),
            Column("seq", BigInteger, primary_key=True, autoincrement=False))


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time with its zone (SQLite drops it; every stored time is UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def ferry_tables(metadata: MetaData) -> FerryTables:
    """The ferry's tables, declared on `metadata` (once per MetaData: SQLAlchemy refuses a second)."""
    return FerryTables(
        channels=Table(
            "ferry_channels", metadata,
            Column("channel", String(_NAME), primary_key=True),
            _counter("sent_seq"),
            Column("sent_digest", String(64), nullable=False, default="", server_default=""),
            _counter("signals_sent"),
            _utc("beacon_at"),
            _counter("applied_seq"),
            _counter("seen_seq"),
            _counter("signals_seen"),
            _counter("duplicate_batches"),
            _counter("replayed_signals"),
            _utc("last_batch_at"),
            _utc("last_signal_at"),
            _counter("peer_seq"),
            Column("peer_digest", String(64), nullable=False, default="", server_default=""),
        ),
        sent=Table(
            "ferry_sent", metadata,
            *_batch_key(),
            Column("digest", String(64), nullable=False),
            Column("file", String(_NAME), nullable=False),
            Column("data", LargeBinary, nullable=False),  # sealed (signed + enveloped): no clear personal data
            _utc("sent_at", nullable=False),
            _utc("written_at"),  # the last time its file was written; None: not yet (a crash came first)
            _counter("resends"),
            _utc("acked_at"),
            Index("ix_ferry_sent_unacked", "channel", "acked_at"),
            Index("ix_ferry_sent_age", "channel", "sent_at"),
        ),
        received=Table(
            "ferry_received", metadata,
            *_batch_key(),
            Column("digest", String(64), nullable=False),
            Column("previous", String(64), nullable=False),
            Column("sender", String(_NAME), nullable=False),
            _utc("received_at", nullable=False),
            _utc("applied_at", nullable=False),
        ),
        messages=Table(
            "ferry_messages", metadata,
            Column("channel", String(_NAME), primary_key=True),
            Column("direction", String(8), primary_key=True),
            Column("id", String(_TEXT), primary_key=True),
            Column("type", String(16), nullable=False),
            Column("key", String(_TEXT)),
            Column("operation", String(64)),
            Column("seq", BigInteger, nullable=False),
            Column("state", String(16), nullable=False),
            Column("answer", JSON(none_as_null=True)),
            _utc("created_at", nullable=False),
            _utc("answered_at"),
            _utc("consumed_at"),
            Index("ix_ferry_messages_key", "key", "operation"),
            Index("ix_ferry_messages_created", "direction", "created_at"),
        ),
        gaps=Table(
            "ferry_gaps", metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("channel", String(_NAME), nullable=False),
            Column("seq_from", BigInteger, nullable=False),
            Column("seq_to", BigInteger, nullable=False),
            _utc("named_at", nullable=False),
            _utc("filled_at"),
            Index("ix_ferry_gaps_open", "channel", "filled_at"),
        ),
        quarantine=Table(
            "ferry_quarantine", metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("channel", String(_NAME), nullable=False, index=True),
            Column("file", String(_NAME), nullable=False),
            Column("code", String(32), nullable=False),
            Column("reason", Text, nullable=False),
            _utc("at", nullable=False),
        ),
    )
