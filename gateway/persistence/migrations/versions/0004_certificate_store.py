"""certificate store

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 16:50:00

SQLite ALTERs run in batch mode (`with op.batch_alter_table(...)`), which works on PostgreSQL as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cert_names',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('sector', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('cert_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('certificate_pem', sa.Text(), nullable=True),
    sa.Column('csr_pem', sa.Text(), nullable=True),
    sa.Column('sealed', sa.Text(), nullable=True),
    sa.Column('master_key_id', sa.String(length=64), nullable=True),
    sa.Column('key_algorithm', sa.String(length=16), nullable=True),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('issuer', sa.Text(), nullable=True),
    sa.Column('serial', sa.String(length=64), nullable=True),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('not_after', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('sm3', sa.String(length=64), nullable=True),
    sa.Column('public_key_sha256', sa.String(length=64), nullable=True),
    sa.Column('trusted_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('changed_by', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['name'], ['cert_names.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', name='uq_cert_versions_name_version')
    )
    with op.batch_alter_table('cert_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cert_versions_public_key_sha256'), ['public_key_sha256'], unique=False)
        batch_op.create_index('uq_cert_versions_one_current', ['name'], unique=True, sqlite_where=sa.text("status = 'current'"), postgresql_where=sa.text("status = 'current'"))

    op.create_table('cert_warnings',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.String(length=16), nullable=False),
    sa.Column('emitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['cert_versions.id'], ),
    sa.PrimaryKeyConstraint('version_id', 'threshold')
    )


def downgrade() -> None:
    op.drop_table('cert_warnings')
    with op.batch_alter_table('cert_versions', schema=None) as batch_op:
        batch_op.drop_index('uq_cert_versions_one_current', sqlite_where=sa.text("status = 'current'"), postgresql_where=sa.text("status = 'current'"))
        batch_op.drop_index(batch_op.f('ix_cert_versions_public_key_sha256'))

    op.drop_table('cert_versions')
    op.drop_table('cert_names')
