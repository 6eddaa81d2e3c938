"""dead letters' causes; cancelled replay runs

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08 00:40:00

Each dead letter carries its *cause* (`dead_letters.cause`, gateway/domain/causes.py): `sector/error_class:` and
its error text with case numbers, keys, ids, times and numbers as placeholders, so the operators group, search
and act on letters dead of one fault. Indexed like the other filters, with status and time.

Existing letters are filled here in batches of BATCH, from their error text where it rests plain (written before
sealing existed). A sealed error text cannot be opened here (the migration has no master key): those keep
None until the desk's scheduled job `dead-letter-causes` (ops.dead_letters.DeadLetterDesk.fill_causes) opens
and fills them; until then they group under an empty cause.

A bulk replay run can be cancelled: `replay_runs.cancelled_by` and `cancel_reason`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from certstore import is_sealed
from gateway.domain.causes import cause_key

revision: str = '0021'
down_revision: str | Sequence[str] | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cause', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_dead_letters_cause_status_created', ['cause', 'status', 'created_at', 'id'],
                              unique=False)
    with op.batch_alter_table('replay_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancelled_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('cancel_reason', sa.Text(), nullable=True))
    _fill_plain_causes()


def _fill_plain_causes() -> None:
    """The causes of letters whose error text rests plain, BATCH rows per read (keyset on id)."""
    d = sa.table('dead_letters', sa.column('id', sa.Integer), sa.column('sector', sa.String),
                 sa.column('error_class', sa.String), sa.column('error_message', sa.Text),
                 sa.column('cause', sa.String))
    conn, after = op.get_bind(), 0
    while True:
        rows = conn.execute(sa.select(d.c.id, d.c.sector, d.c.error_class, d.c.error_message)
                            .where(d.c.id > after, d.c.cause.is_(None)).order_by(d.c.id).limit(BATCH)).all()
        if not rows:
            return
        for row in rows:
            if not is_sealed(row.error_message):
                conn.execute(sa.update(d).where(d.c.id == row.id)
                             .values(cause=cause_key(row.error_class, row.sector, row.error_message)))
        after = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table('replay_runs', schema=None) as batch_op:
        batch_op.drop_column('cancel_reason')
        batch_op.drop_column('cancelled_by')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_dead_letters_cause_status_created')
        batch_op.drop_column('cause')
