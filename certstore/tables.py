"""The certificate store's rows, defined once for whoever keeps a store: keys, certificates and secrets,
sealed by envelope encryption.

`cert_tables(metadata)` adds the three tables to the caller's `MetaData` and returns them as the `CertTables`
that `CertStore` works on: the gateway adds them to its schema (gateway/persistence/cert_tables.py, created by
its migrations), the far-side ferry agent to its own SQLite file (`ferry`). A private key or a secret value is
only ever in `sealed`: an envelope (certstore.keyring) whose data key is wrapped by the master key named in
`master_key_id` — never plaintext, never a password-protected PEM.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

from certstore.store import CURRENT, CertTables


def cert_tables(metadata: MetaData) -> CertTables:
    """`cert_names`, `cert_versions` and `cert_warnings`, added to `metadata`."""
    names = Table(
        "cert_names",
        metadata,
        Column("name", String(128), primary_key=True),  # what bundles reference: `cert:NAME` or `vault:NAME`
        Column("sector", String(64)),  # the owner; NULL: the keeper's own (the gateway's, the agent's)
        Column("kind", String(16), nullable=False),  # certificate | secret
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("created_by", String(128), nullable=False),
    )
    versions = Table(
        "cert_versions",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(128), ForeignKey("cert_names.name"), nullable=False),
        Column("version", Integer, nullable=False),
        Column("status", String(16), nullable=False),  # pending | staged | current | superseded | retired
        Column("certificate_pem", Text),  # the leaf, then its chain; NULL while a generated key awaits it
        Column("csr_pem", Text),  # the request made for a generated key, to hand over again
        Column("sealed", Text),  # envelope JSON: the private key (PKCS#8 DER) or the secret's value
        Column("master_key_id", String(64)),  # which master key wraps `sealed` (what `rewrap` looks for)
        Column("key_algorithm", String(16)),
        Column("subject", Text),
        Column("issuer", Text),
        Column("serial", String(64)),
        Column("not_before", DateTime(timezone=True)),
        Column("not_after", DateTime(timezone=True)),
        Column("sha256", String(64)),
        Column("sm3", String(64)),
        Column("public_key_sha256", String(64), index=True),
        Column("trusted_until", DateTime(timezone=True)),  # a superseded version is trusted until then
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("created_by", String(128), nullable=False),
        Column("changed_at", DateTime(timezone=True)),
        Column("changed_by", String(128)),
        UniqueConstraint("name", "version", name="uq_cert_versions_name_version"),
    )
    # One current version per name, enforced by the database (two concurrent rotations cannot both win).
    Index(
        "uq_cert_versions_one_current",
        versions.c.name,
        unique=True,
        sqlite_where=versions.c.status == CURRENT,
        postgresql_where=versions.c.status == CURRENT,
    )
    # One row per certificate version and threshold: a warning is emitted once across processes and restarts.
    warnings = Table(
        "cert_warnings",
        metadata,
        Column("version_id", Integer, ForeignKey("cert_versions.id"), primary_key=True),
        Column("threshold", String(16), primary_key=True),  # 30d | 7d | expired
        Column("emitted_at", DateTime(timezone=True), nullable=False),
    )
    return CertTables(names, versions, warnings)
