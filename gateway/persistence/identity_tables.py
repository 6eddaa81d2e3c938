"""The `identities` table: who holds an API key, with which roles. Rows are read in `gateway.security.api_keys`.
The operators' console's sessions and sign-in failures beside it: `gateway.security.sessions` reads them.

It lives on the shared `metadata`, so importing this module is what makes `metadata.create_all`
create it; the raw key is never stored, only its SHA-256 (see `gateway.security.api_keys.hash_key`).
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, Integer, String, Table

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

# A console session: kept in the database so every process and node honours it and revoking an identity ends
# it (in the same transaction). The raw session id lives only in the browser's cookie; this holds its SHA-256.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("identity_id", String(20), nullable=False),
    Column("csrf_token", String(64), nullable=False),  # the synchronizer token every change must carry
    Column("signed_in_with", String(16), nullable=False),  # "key" or "certificate" (later: the province's SSO)
    Column("client", String(64), nullable=False),  # the address it signed in from
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),  # the idle timeout counts from here
    Column("expires_at", DateTime(timezone=True), nullable=False),  # the absolute timeout
    Column("ended_at", DateTime(timezone=True)),
    Column("ended_why", String(16)),  # signed-out, revoked, idle, expired
    Index("ix_console_sessions_identity", "identity_id", "ended_at"),
)

# Failed sign-ins per client address, for the lockout: shared by every process like the sessions.
console_sign_in_failures = Table(
    "console_sign_in_failures",
    metadata,
    Column("client", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("first_at", DateTime(timezone=True), nullable=False),  # the window of counted failures starts here
    Column("locked_until", DateTime(timezone=True)),
)
