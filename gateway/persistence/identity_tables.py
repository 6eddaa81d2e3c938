"""The `identities` table: who holds an API key, with which roles. Rows are read in `gateway.security.api_keys`.

It lives on the shared `metadata`, so importing this module is what makes `metadata.create_all`
create it; the raw key is never stored, only its SHA-256 (see `gateway.security.api_keys.hash_key`).
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, String, Table

from gateway.persistence.tables import metadata

identities = Table(
    "identities",
    metadata,
    Column("id", String(20), primary_key=True),  # "id_" + 12 hex
    Column("name", String(128), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex of the raw key: the lookup
    Column("key_prefix", String(10), nullable=False),  # first characters of the raw key, for people to match
    Column("roles", JSON, nullable=False),  # list of `Role` values
    Column("department", String(18)),  # a clerk's department: unified social credit code
    Column("sector", String(64)),  # a sector admin's sector
    # SHA-256 of an mTLS client certificate bound to the identity (`yiwang keys bind-certificate`)
    Column("cert_fingerprint", String(64), unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)
