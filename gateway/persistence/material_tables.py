"""The table behind uploaded application materials (`gateway.materials.store`), on the shared `metadata`.

A module of its own so the materials feature can land without touching `tables.py`; importing it
registers the table, so `metadata.create_all` must run after `gateway.materials.store` (or this) is imported.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, String, Table

from gateway.persistence.tables import metadata

# One row per upload. The bytes live on disk under their SHA-256, so identical uploads share a file
# while each keeps its own ref, uploader and original name.
material_files = Table(
    "material_files",
    metadata,
    Column("ref", String(40), primary_key=True),  # "mat_" + 32 hex: unguessable, never derived from content
    Column("sha256", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(100), nullable=False),  # as sniffed from the bytes, not as declared
    Column("filename", String(200), nullable=False),  # sanitised: basename only, display use only
    Column("uploaded_by", String(128), nullable=False),  # Identity.id
    Column("created_at", DateTime(timezone=True), nullable=False),
)
