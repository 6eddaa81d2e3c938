"""The versioned matter catalogue's table, on the project's one `metadata`.

Every version of a matter's guide is one immutable row holding the guide as a document (the
catalogue file format, `gateway.catalogue.matters.matter_to_document`); only `status` and its times change.
A case keeps the version it was accepted under, so retired versions are never deleted.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, Integer, String, Table, UniqueConstraint

from gateway.persistence.tables import metadata

DRAFT, PUBLISHED, RETIRED = "draft", "published", "retired"
STATUSES = (DRAFT, PUBLISHED, RETIRED)

matter_versions = Table(
    "matter_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code", String(31), nullable=False),  # 实施编码
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # draft | published | retired
    Column("document", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("published_at", DateTime(timezone=True)),
    Column("published_by", String(128)),
    Column("retired_at", DateTime(timezone=True)),
    Column("retired_by", String(128)),
    # Two writers numbering the same next version (or seeding at once) collide here, not silently.
    UniqueConstraint("code", "version", name="uq_matter_versions_code_version"),
)

# At most one published version per matter, enforced by the database so that two concurrent
# publishes on PostgreSQL cannot both win (SQLite serialises writers with BEGIN IMMEDIATE anyway).
Index(
    "uq_matter_versions_one_published",
    matter_versions.c.code,
    unique=True,
    sqlite_where=matter_versions.c.status == PUBLISHED,
    postgresql_where=matter_versions.c.status == PUBLISHED,
)
