"""Registered adapter bundles (every version, as an archive) and the nonces of signed sector callbacks.

The database is the registry's record: a bundle version is stored whole (a zip of its folder), so any
process on any machine can unpack and build the same adapter; which version is active is one row's
status, which every process polls (`gateway.sectors.live_registry`) — that is how activation needs no restart.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, Integer, LargeBinary, String, Table, UniqueConstraint

from gateway.persistence.tables import metadata

REGISTERED, ACTIVE, INACTIVE, RETIRED = "registered", "active", "inactive", "retired"
# What `yiwang adapters test` found: the sector did not answer; it answered and refused our credentials; it accepted.
UNREACHABLE, REFUSED, ACCEPTED = "unreachable", "refused", "accepted"
# What `yiwang adapters rehearse` found: every item answered as its sector team expects, or not.
PASSED, FAILED = "passed", "failed"

bundle_versions = Table(
    "bundle_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sector", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # registered | active | inactive (was active) | retired
    Column("kind", String(16), nullable=False),
    Column("archive", LargeBinary, nullable=False),  # the bundle folder, zipped
    Column("sha256", String(64), nullable=False),
    Column("summary", JSON, nullable=False),  # title, department, serves, operations, queries, results
    Column("test_result", JSON(none_as_null=True)),
    # The last test's outcome (unreachable | refused | accepted; None: never tested): activation reads it.
    Column("test_outcome", String(16)),
    # The last rehearsal (passed | failed; None: never rehearsed) and its report: a passed one also lets it activate.
    Column("rehearsal_result", JSON(none_as_null=True)),
    Column("rehearsal_outcome", String(16)),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("registered_by", String(128), nullable=False),
    Column("activated_at", DateTime(timezone=True)),
    Column("activated_by", String(128)),
    Column("retired_at", DateTime(timezone=True)),
    Column("retired_by", String(128)),
    UniqueConstraint("sector", "version", name="uq_bundle_versions_sector_version"),
)

# One active version per sector, enforced by the database (two concurrent activations cannot both win).
Index(
    "uq_bundle_versions_one_active",
    bundle_versions.c.sector,
    unique=True,
    sqlite_where=bundle_versions.c.status == ACTIVE,
    postgresql_where=bundle_versions.c.status == ACTIVE,
)

callback_nonces = Table(
    "callback_nonces",
    metadata,
    Column("sector", String(64), primary_key=True),
    Column("nonce", String(100), primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False, index=True),
)
