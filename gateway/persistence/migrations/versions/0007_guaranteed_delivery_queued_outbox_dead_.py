"""guaranteed delivery: queued outbox, dead letter context, job leases, case notifications

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 18:48:06.970406

The outbox gains `queued` (confirmed by the broker) and `published_at`; a dead letter keeps the canonical
payload, the sector's last answer and every attempt, and may come from the broker's dead-letter queue without
an outbox row; scheduled jobs take leases; case events to notify are written with the events.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('case_notifications',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_no', sa.String(length=50), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('from_state', sa.String(length=32), nullable=True),
    sa.Column('to_state', sa.String(length=32), nullable=False),
    sa.Column('matter_code', sa.String(length=31), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_no', 'seq', name='uq_case_notifications_case_seq')
    )
    with op.batch_alter_table('case_notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_notifications_case_no'), ['case_no'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_notifications_status'), ['status'], unique=False)

    op.create_table('job_leases',
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=80), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('runs', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('job')
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('canonical_payload', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('last_response', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('history', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('deliveries', sa.Integer(), nullable=False, server_default='0'))
        batch_op.alter_column('outbox_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('bundle_version', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('replayed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('replayed_by', sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f('ix_dead_letters_status'), ['status'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('published_at', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('published_at')

    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letters_status'))
        batch_op.drop_column('replayed_by')
        batch_op.drop_column('replayed_at')
        batch_op.drop_column('bundle_version')
        batch_op.drop_column('deliveries')
        batch_op.drop_column('history')
        batch_op.drop_column('last_response')
        batch_op.drop_column('canonical_payload')
        batch_op.alter_column('outbox_id', existing_type=sa.Integer(), nullable=False)

    op.drop_table('job_leases')
    with op.batch_alter_table('case_notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_notifications_status'))
        batch_op.drop_index(batch_op.f('ix_case_notifications_case_no'))

    op.drop_table('case_notifications')
