"""dead letters: bulk replay runs, discard, the pinned mapping version, filter indexes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 21:53:15.463687

Operators replay dead letters one by one or in resumable runs (`replay_runs`; a letter carries its run's
id), and discard them with a reason. A replay "with the original mapping" pins the outbox row to the bundle
version the message died with; `outbox.replays` counts how often a row was reopened. The composite indexes
serve the operators' filtered, keyset-paged lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('replay_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('filter', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('mapping', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('replayed', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('replay_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replay_runs_status'), ['status'], unique=False)

    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replay_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('replay_run_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('discarded_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('discarded_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('discard_reason', sa.Text(), nullable=True))
        # Composite indexes replace the single-column ones they start with (fewer to rewrite per replay).
        batch_op.drop_index('ix_dead_letters_sector')
        batch_op.drop_index('ix_dead_letters_error_class')
        batch_op.drop_index('ix_dead_letters_status')
        batch_op.create_index('ix_dead_letters_status_created', ['status', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_dead_letters_sector_status_created', ['sector', 'status', 'created_at', 'id'],
                              unique=False)
        batch_op.create_index('ix_dead_letters_class_status_created', ['error_class', 'status', 'created_at', 'id'],
                              unique=False)
        batch_op.create_index('ix_dead_letters_run_status', ['replay_run_id', 'status', 'id'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bundle_version', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('replays', sa.Integer(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('replays')
        batch_op.drop_column('bundle_version')

    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_dead_letters_run_status')
        batch_op.drop_index('ix_dead_letters_class_status_created')
        batch_op.drop_index('ix_dead_letters_sector_status_created')
        batch_op.drop_index('ix_dead_letters_status_created')
        batch_op.create_index('ix_dead_letters_status', ['status'], unique=False)
        batch_op.create_index('ix_dead_letters_error_class', ['error_class'], unique=False)
        batch_op.create_index('ix_dead_letters_sector', ['sector'], unique=False)
        batch_op.drop_column('discard_reason')
        batch_op.drop_column('discarded_by')
        batch_op.drop_column('discarded_at')
        batch_op.drop_column('replay_run_id')
        batch_op.drop_column('replay_reason')

    with op.batch_alter_table('replay_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replay_runs_status'))

    op.drop_table('replay_runs')
