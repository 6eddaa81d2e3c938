"""the ways forward after acceptance: task rounds, cancelled tasks told to their sectors, case outcomes

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 09:00:00

A correction (更正) or a send-back starts a new *round* of a task: `case_tasks.round`, and `outbox.round` on the
messages of each round (their idempotency key ends in `:r<round>` after the first). A cancelled task records
whether its sector was told (`case_tasks.sector_told`). A dead letter records what discarding it did to its case
(`dead_letters.case_outcome`) and when a new round superseded it (`superseded_at`). Existing rows are round 0,
as their keys already say.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | Sequence[str] | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('case_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('round', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('sector_told', sa.Boolean(), nullable=True))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('round', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('case_outcome', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('superseded_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_column('superseded_at')
        batch_op.drop_column('case_outcome')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('round')
    with op.batch_alter_table('case_tasks', schema=None) as batch_op:
        batch_op.drop_column('sector_told')
        batch_op.drop_column('round')
