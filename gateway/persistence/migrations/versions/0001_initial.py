"""The initial schema: every table and index of the metadata when migrations began.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Making the next revision
------------------------
1. Change the tables (gateway/persistence/*tables.py).
2. From the repository root, autogenerate the revision against a scratch SQLite database at head:

       .venv/bin/python -m gateway.persistence.migrate revision "add cases.priority"

   (the same from Python: `gateway.persistence.migrate.new_revision("add cases.priority")`; or with the
   CLI on a database of your own that is at head: `YIWANG_DATABASE_URL=... .venv/bin/alembic revision
   --autogenerate --rev-id 0002 -m "add cases.priority"`). It writes versions/NNNN_add_cases_priority.py.
3. Read and tidy it like this one: autogenerate misses renames (it sees a drop and an add), server
   defaults and data changes; SQLite ALTERs must stay inside `with op.batch_alter_table(...)`.
4. `.venv/bin/pytest tests/integration/test_migrations.py` — it fails while the migrated schema and the metadata differ.
Revisions are applied by every process at start-up (`migrate.upgrade`), so keep them transactional: no
`autocommit_block`, and nothing that takes long on a big table without a plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    # --- cases and what hangs off them (tables.py) ---------------------------------------------------
    op.create_table(
        "cases",
        sa.Column("case_no", sa.String(50), primary_key=True),
        sa.Column("matter_code", sa.String(31), nullable=False),
        sa.Column("matter_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("applicant", sa.JSON(), nullable=False),
        sa.Column("applicant_index", sa.String(64), nullable=False),
        sa.Column("agent", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("green_channel", sa.JSON(), nullable=False),
        sa.Column("materials", sa.JSON(), nullable=False),
        sa.Column("form", sa.JSON(), nullable=False),
        sa.Column("receipt_no", sa.String(40), nullable=True),
        sa.Column("deadline", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("deadline_due", sa.Date(), nullable=True),
        sa.Column("missing_materials", sa.JSON(), nullable=False),
        sa.Column("supplement_rounds", sa.Integer(), nullable=False),
        sa.Column("opinion", sa.Text(), nullable=True),
        sa.Column("certificate", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("delivery", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("evaluation", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("completion", sa.String(16), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _utc("created_at"),
        _utc("updated_at"),
    )
    op.create_index("ix_cases_matter_code", "cases", ["matter_code"])
    op.create_index("ix_cases_state", "cases", ["state"])
    op.create_index("ix_cases_applicant_index", "cases", ["applicant_index"])
    op.create_index("ix_cases_deadline_due", "cases", ["deadline_due"])

    op.create_table(
        "case_tasks",
        sa.Column("case_no", sa.String(50), sa.ForeignKey("cases.case_no"), primary_key=True),
        sa.Column("task_id", sa.String(8), primary_key=True),
        sa.Column("department", sa.String(100), nullable=False),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("sector", sa.String(64), nullable=True),
        sa.Column("lead", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("sector_ref", sa.String(64), nullable=True),
        sa.Column("opinion", sa.Text(), nullable=True),
    )
    op.create_index("ix_case_tasks_credit_code", "case_tasks", ["credit_code"])

    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_no", sa.String(50), sa.ForeignKey("cases.case_no"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _utc("at"),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.UniqueConstraint("case_no", "seq"),
    )

    op.create_table(
        "case_counters",
        sa.Column("scope", sa.String(40), primary_key=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_no", sa.String(50), sa.ForeignKey("cases.case_no"), nullable=False),
        sa.Column("sector", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(8), nullable=False),
        sa.Column("idempotency_key", sa.String(160), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        _utc("available_at"),
        sa.Column("lease_owner", sa.String(80), nullable=True),
        _utc("lease_until", nullable=True),
        _utc("created_at"),
        _utc("done_at", nullable=True),
    )
    op.create_index("ix_outbox_case_no", "outbox", ["case_no"])
    op.create_index("ix_outbox_status", "outbox", ["status"])
    op.create_index("ix_outbox_available_at", "outbox", ["available_at"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("outbox_id", sa.Integer(), sa.ForeignKey("outbox.id"), nullable=False),
        sa.Column("case_no", sa.String(50), nullable=False),
        sa.Column("sector", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(160), nullable=False),
        sa.Column("error_class", sa.String(32), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("rendered_request", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _utc("created_at"),
    )
    op.create_index("ix_dead_letters_outbox_id", "dead_letters", ["outbox_id"])
    op.create_index("ix_dead_letters_case_no", "dead_letters", ["case_no"])
    op.create_index("ix_dead_letters_sector", "dead_letters", ["sector"])
    op.create_index("ix_dead_letters_error_class", "dead_letters", ["error_class"])

    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("case_no", sa.String(50), sa.ForeignKey("cases.case_no"), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        _utc("created_at"),
    )

    # --- the versioned matter catalogue (catalogue_tables.py) ----------------------------------------
    op.create_table(
        "matter_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(31), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        _utc("created_at"),
        sa.Column("created_by", sa.String(128), nullable=False),
        _utc("published_at", nullable=True),
        sa.Column("published_by", sa.String(128), nullable=True),
        _utc("retired_at", nullable=True),
        sa.Column("retired_by", sa.String(128), nullable=True),
        sa.UniqueConstraint("code", "version", name="uq_matter_versions_code_version"),
    )
    # At most one published version per matter: a partial unique index, on both databases.
    op.create_index(
        "uq_matter_versions_one_published",
        "matter_versions",
        ["code"],
        unique=True,
        sqlite_where=sa.text("status = 'published'"),
        postgresql_where=sa.text("status = 'published'"),
    )

    # --- API key holders (identity_tables.py) --------------------------------------------------------
    op.create_table(
        "identities",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(10), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("department", sa.String(18), nullable=True),
        sa.Column("sector", sa.String(64), nullable=True),
        _utc("created_at"),
        _utc("revoked_at", nullable=True),
    )

    # --- uploaded application materials (material_tables.py) ----------------------------------------
    op.create_table(
        "material_files",
        sa.Column("ref", sa.String(40), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("uploaded_by", sa.String(128), nullable=False),
        _utc("created_at"),
    )
    op.create_index("ix_material_files_sha256", "material_files", ["sha256"])


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in ("material_files", "identities", "matter_versions", "idempotency_keys", "dead_letters",
                  "outbox", "case_counters", "case_events", "case_tasks", "cases"):
        op.drop_table(table)
