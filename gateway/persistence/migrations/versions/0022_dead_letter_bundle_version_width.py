"""dead letters name a bundle version as long as a bundle's

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08 01:55:00

A bundle's version may be 64 characters (`bundle_versions.version`, the outbox's `bundle_version`), but a dead
letter kept only 40: on PostgreSQL a message of a longer version could not die — its dead letter's insert failed.
The column is widened to 64, as the others are (batch mode: SQLite rebuilds the table, PostgreSQL alters it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | Sequence[str] | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.alter_column('bundle_version', existing_type=sa.String(length=40), type_=sa.String(length=64),
                              existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.alter_column('bundle_version', existing_type=sa.String(length=64), type_=sa.String(length=40),
                              existing_nullable=True)
