"""personal data sealed at rest

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 16:50:00

SQLite ALTERs run in batch mode (`with op.batch_alter_table(...)`), which works on PostgreSQL as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
