"""bundle_versions: the outcome of a version's last test, which activation reads

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 16:00:00

`bundle_versions.test_outcome` is `unreachable`, `refused` (the sector answered and refused our credentials) or
`accepted`; NULL for a version never tested. Activating a version whose last test did not end `accepted` needs
`force`. Versions tested before this revision get the outcome their stored result says: reachable → accepted
(the old test counted a business refusal of the probe as reachable, which is what `accepted` means), else
unreachable.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | Sequence[str] | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('bundle_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('test_outcome', sa.String(length=16), nullable=True))
    versions = sa.table('bundle_versions', sa.column('id', sa.Integer), sa.column('test_result', sa.JSON),
                        sa.column('test_outcome', sa.String))
    conn = op.get_bind()
    tested = conn.execute(sa.select(versions.c.id, versions.c.test_result)
                          .where(versions.c.test_result.is_not(None))).all()
    for row_id, result in tested:  # tens of rows: read in Python, the same on SQLite and PostgreSQL
        if isinstance(result, dict):
            outcome = 'accepted' if result.get('reachable') else 'unreachable'
            conn.execute(sa.update(versions).where(versions.c.id == row_id).values(test_outcome=outcome))


def downgrade() -> None:
    with op.batch_alter_table('bundle_versions', schema=None) as batch_op:
        batch_op.drop_column('test_outcome')
