"""outbox: how many status answers in a row could not be read

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 19:00:00

`outbox.bad_answers` counts a status poll's answers in a row that could not be read (the mapping could not read
them, or they were malformed): each is recorded and the next poll goes ahead later (the interval doubled per bad
answer, capped); a readable answer sets it back to 0, and only the bundle's `results.max_bad_answers` of them in a
row make the message a dead letter. Reset when the message is replayed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | Sequence[str] | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bad_answers', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('bad_answers')
