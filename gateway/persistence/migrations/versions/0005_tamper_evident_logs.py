"""tamper-evident audit and message logs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 16:50:00

SQLite ALTERs run in batch mode (`with op.batch_alter_table(...)`), which works on PostgreSQL as well.
The append-only triggers come from `ledger_tables.append_only_ddl`, the one place that states them
(`metadata.create_all` installs the same ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.persistence.ledger_tables import APPEND_ONLY_TABLES, append_only_ddl, drop_append_only_ddl

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ledger_records',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('chain', sa.String(length=120), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('actor', sa.String(length=160), nullable=False),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=True),
    sa.Column('sector', sa.String(length=64), nullable=True),
    sa.Column('case_no', sa.String(length=50), nullable=True),
    sa.Column('outcome', sa.String(length=64), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('prev_hash', sa.String(length=128), nullable=False),
    sa.Column('hash', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('chain', 'seq', name='uq_ledger_records_chain_seq')
    )
    with op.batch_alter_table('ledger_records', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_records_kind_at', ['kind', 'at'], unique=False)
        batch_op.create_index('ix_ledger_records_sector', ['sector'], unique=False)
        batch_op.create_index('ix_ledger_records_case_no', ['case_no'], unique=False)

    op.create_table('ledger_checkpoints',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('chain', sa.String(length=120), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('head_hash', sa.String(length=128), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signature', sa.Text(), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ledger_checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_checkpoints_chain'), ['chain'], unique=False)

    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY_TABLES:
        for statement in append_only_ddl(dialect, table):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY_TABLES:
        for statement in drop_append_only_ddl(dialect, table):
            op.execute(statement)
    if dialect == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS yiwang_refuse_change()')

    with op.batch_alter_table('ledger_checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_checkpoints_chain'))

    op.drop_table('ledger_checkpoints')
    with op.batch_alter_table('ledger_records', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_records_case_no')
        batch_op.drop_index('ix_ledger_records_sector')
        batch_op.drop_index('ix_ledger_records_kind_at')

    op.drop_table('ledger_records')
