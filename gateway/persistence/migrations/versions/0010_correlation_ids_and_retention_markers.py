"""correlation ids on outbox messages; retention markers of the audit and message logs

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 22:00:00

`outbox.correlation_id` carries the id of the request or job that wrote a message to the worker and the
sector (gateway/observability/correlation.py). `ledger_retention` holds the signed markers of retention purges
(gateway/audit/ledger.py `purge`): `ledger_records` now deletes the records a marker covers, and only those.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.persistence.ledger_tables import (
    append_only_ddl,
    drop_append_only_ddl,
    drop_retention_delete_ddl,
    retention_delete_ddl,
)

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('correlation_id', sa.String(length=64), nullable=True))

    op.create_table('ledger_retention',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('chain', sa.String(length=120), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('head_hash', sa.String(length=128), nullable=False),
    sa.Column('purged_before', sa.DateTime(timezone=True), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signature', sa.Text(), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ledger_retention', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_retention_chain'), ['chain'], unique=False)

    dialect = op.get_bind().dialect.name
    for statement in [*append_only_ddl(dialect, 'ledger_retention'), *retention_delete_ddl(dialect)]:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in [*drop_retention_delete_ddl(dialect), *drop_append_only_ddl(dialect, 'ledger_retention')]:
        op.execute(statement)

    with op.batch_alter_table('ledger_retention', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_retention_chain'))

    op.drop_table('ledger_retention')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('correlation_id')
