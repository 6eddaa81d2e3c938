"""what a sector's decision says besides itself, and the certificate it issued waiting at unified issuing

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 18:40:00

`case_tasks.result`: the sector's time of decision, whether it issued a certificate, its number and validity, a
result document (gateway/domain/results.py; JSON, None for tasks decided before or by the back office).
`cases.certificate_draft`: 待出证, the certificate fetched from the sector (`fetch_certificate`), prefilled for
unified issuing, with its source (sealed like `certificate`: it names the holder). Existing rows have neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('case_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('result', sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('certificate_draft', sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('certificate_draft')
    with op.batch_alter_table('case_tasks', schema=None) as batch_op:
        batch_op.drop_column('result')
