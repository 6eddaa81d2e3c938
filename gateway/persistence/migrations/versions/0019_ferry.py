"""the ferry: channel state tables, and the outbox found by idempotency key

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 21:30:55

The near side's stations (gateway/sectors/ferry.py) keep each ferry channel's state in the `ferry_*` tables,
declared once in `adapters/ferry_state.py` (the far-side agent creates the same ones in its own SQLite
file): channels (seqs, digests, signal counters), batches sent (their sealed bytes, for resends) and received,
messages sent and received with their answers (never a body), gaps and quarantined files. An answer arriving
across the ferry makes the outbox message waiting for it due now, found by its idempotency key: an index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | Sequence[str] | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ferry_channels',
    sa.Column('channel', sa.String(length=200), nullable=False),
    sa.Column('sent_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('sent_digest', sa.String(length=64), server_default='', nullable=False),
    sa.Column('signals_sent', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('beacon_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('applied_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('seen_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('signals_seen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('duplicate_batches', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('replayed_signals', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('last_batch_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_signal_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('peer_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('peer_digest', sa.String(length=64), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('channel')
    )
    op.create_table('ferry_gaps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('channel', sa.String(length=200), nullable=False),
    sa.Column('seq_from', sa.BigInteger(), nullable=False),
    sa.Column('seq_to', sa.BigInteger(), nullable=False),
    sa.Column('named_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('filled_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ferry_gaps', schema=None) as batch_op:
        batch_op.create_index('ix_ferry_gaps_open', ['channel', 'filled_at'], unique=False)

    op.create_table('ferry_messages',
    sa.Column('channel', sa.String(length=200), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('id', sa.String(length=512), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=512), nullable=True),
    sa.Column('operation', sa.String(length=64), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('answer', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consumed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('channel', 'direction', 'id')
    )
    with op.batch_alter_table('ferry_messages', schema=None) as batch_op:
        batch_op.create_index('ix_ferry_messages_created', ['direction', 'created_at'], unique=False)
        batch_op.create_index('ix_ferry_messages_key', ['key', 'operation'], unique=False)

    op.create_table('ferry_quarantine',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('channel', sa.String(length=200), nullable=False),
    sa.Column('file', sa.String(length=200), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ferry_quarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ferry_quarantine_channel'), ['channel'], unique=False)

    op.create_table('ferry_received',
    sa.Column('channel', sa.String(length=200), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('previous', sa.String(length=64), nullable=False),
    sa.Column('sender', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('channel', 'seq')
    )
    op.create_table('ferry_sent',
    sa.Column('channel', sa.String(length=200), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('file', sa.String(length=200), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('written_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resends', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('channel', 'seq')
    )
    with op.batch_alter_table('ferry_sent', schema=None) as batch_op:
        batch_op.create_index('ix_ferry_sent_age', ['channel', 'sent_at'], unique=False)
        batch_op.create_index('ix_ferry_sent_unacked', ['channel', 'acked_at'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_idempotency_key', ['idempotency_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_idempotency_key')

    with op.batch_alter_table('ferry_sent', schema=None) as batch_op:
        batch_op.drop_index('ix_ferry_sent_unacked')
        batch_op.drop_index('ix_ferry_sent_age')

    op.drop_table('ferry_sent')
    op.drop_table('ferry_received')
    with op.batch_alter_table('ferry_quarantine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ferry_quarantine_channel'))

    op.drop_table('ferry_quarantine')
    with op.batch_alter_table('ferry_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_ferry_messages_key')
        batch_op.drop_index('ix_ferry_messages_created')

    op.drop_table('ferry_messages')
    with op.batch_alter_table('ferry_gaps', schema=None) as batch_op:
        batch_op.drop_index('ix_ferry_gaps_open')

    op.drop_table('ferry_gaps')
    op.drop_table('ferry_channels')
