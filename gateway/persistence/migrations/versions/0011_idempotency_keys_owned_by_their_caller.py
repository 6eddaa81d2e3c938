"""idempotency keys belong to the identity that sent them

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 10:00:00

`idempotency_keys.owner` is the id of the identity that submitted with the key, and the primary key becomes
(owner, key): another identity sending the same key makes a case of its own (issue 14). Existing rows take
their owner from their case's submit event (`case_events` seq 1, actor "applicant:<id>" or "agent:<id>").
A row whose case has no submit event (none should exist) gets the empty owner, which no identity has: its
key is never replayed again, and nothing is lost but that replay.

The downgrade keeps, of each key used by several identities, the oldest row: a key global again can name
one case only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRIMARY_KEY = 'idempotency_keys_pkey'  # PostgreSQL's own name for it; SQLite's is given the same
NOBODY = ''  # the owner of a row whose case has no submit event: no identity has the empty id

keys = sa.table('idempotency_keys', sa.column('owner', sa.String), sa.column('key', sa.String),
                sa.column('case_no', sa.String), sa.column('created_at', sa.DateTime))
events = sa.table('case_events', sa.column('case_no', sa.String), sa.column('seq', sa.Integer),
                  sa.column('actor', sa.String))


def upgrade() -> None:
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=128), nullable=True))
    op.execute(keys.update().values(owner=sa.func.coalesce(_submitter(), NOBODY)))
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.alter_column('owner', existing_type=sa.String(length=128), nullable=False)
    _primary_key(['owner', 'key'])


def downgrade() -> None:
    older = keys.alias('older')
    shadowed = sa.exists().where(older.c.key == keys.c.key, sa.or_(
        older.c.created_at < keys.c.created_at,
        sa.and_(older.c.created_at == keys.c.created_at, older.c.owner < keys.c.owner)))
    op.execute(keys.delete().where(shadowed))
    _primary_key(['key'])
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_column('owner')


def _submitter() -> sa.ScalarSelect[str]:
    """The identity id in the actor of the row's case's submit event: what follows "applicant:" or "agent:"."""
    actor = events.c.actor
    colon = sa.func.strpos(actor, ':') if op.get_bind().dialect.name == 'postgresql' else sa.func.instr(actor, ':')
    return (sa.select(sa.func.substr(actor, colon + 1))
            .where(events.c.case_no == keys.c.case_no, events.c.seq == 1).scalar_subquery())


def _primary_key(columns: list[str]) -> None:
    if op.get_bind().dialect.name == 'sqlite':  # SQLite changes a primary key by copying the table into this one
        with op.batch_alter_table('idempotency_keys', schema=None, recreate='always', copy_from=_with_key(columns)):
            pass
        return
    op.drop_constraint(PRIMARY_KEY, 'idempotency_keys', type_='primary')
    op.create_primary_key(PRIMARY_KEY, 'idempotency_keys', columns)


def _with_key(columns: list[str]) -> sa.Table:
    """The table as it stands (`owner` included) with `columns` as its primary key."""
    return sa.Table(
        'idempotency_keys', sa.MetaData(),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('case_no', sa.String(length=50), sa.ForeignKey('cases.case_no'), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=False),
        sa.Column('response', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('owner', sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint(*columns, name=PRIMARY_KEY),
    )
