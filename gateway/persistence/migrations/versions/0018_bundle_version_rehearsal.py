"""bundle_versions: the last rehearsal of a version (its report and passed | failed)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 19:00:00

`bundle_versions.rehearsal_result` keeps the report of the version's last `yiwang adapters rehearse` (items,
rendered requests and answers, masked) and `rehearsal_outcome` says `passed` or `failed`; NULL for a version never
rehearsed. A passed rehearsal, like an accepted test, lets the version be activated without `force`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | Sequence[str] | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('bundle_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rehearsal_result', sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column('rehearsal_outcome', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('bundle_versions', schema=None) as batch_op:
        batch_op.drop_column('rehearsal_outcome')
        batch_op.drop_column('rehearsal_result')
