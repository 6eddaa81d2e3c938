"""the operators' console: sessions and failed sign-ins

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08 01:00:00

The console at /console signs an identity in with its API key or client certificate and keeps a server-side
session (`console_sessions`, the session id's SHA-256 only), so every process and node honours it and revoking
the identity ends it. `console_sign_in_failures` counts failed sign-ins per client address for the lockout.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | Sequence[str] | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('console_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('identity_id', sa.String(length=20), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('signed_in_with', sa.String(length=16), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_why', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id_hash')
    )
    op.create_index('ix_console_sessions_identity', 'console_sessions', ['identity_id', 'ended_at'], unique=False)
    op.create_table('console_sign_in_failures',
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('client')
    )


def downgrade() -> None:
    op.drop_table('console_sign_in_failures')
    op.drop_index('ix_console_sessions_identity', table_name='console_sessions')
    op.drop_table('console_sessions')
