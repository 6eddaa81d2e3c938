"""outbox: when a message first met its sector's open circuit breaker

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 05:00:00

`outbox.circuit_wait_since` is set when a delivery is refused by an open breaker and the message is made due
again for when the breaker may close (no attempt spent); the bundle's `retry.max_wait_ms` bounds the wait from
then, after which the message becomes a dead letter of class `circuit_open`. Cleared when the message is polled
again after an answer, or replayed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | Sequence[str] | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('circuit_wait_since', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('circuit_wait_since')
