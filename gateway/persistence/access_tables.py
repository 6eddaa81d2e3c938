"""Access control: approvals for the four-eyes rule (read and written in `gateway.security.approvals`).

An approval is one request to do a guarded action (activate a bundle version, publish a catalogue
version) that waits for a second identity. Rows are kept after the decision: they are the record of
who asked and who agreed.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, String, Table

from gateway.persistence.tables import metadata

PENDING, APPROVED, REJECTED, FAILED = "pending", "approved", "rejected", "failed"

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(20), primary_key=True),  # "ap_" + 12 hex
    Column("action", String(32), nullable=False),  # activate_bundle | publish_matter
    Column("subject", String(200), nullable=False),  # what it acts on, for people: "housing_fund 2026.11.1"
    Column("params", JSON, nullable=False),  # what the action needs: {sector, version} or {code, version}
    Column("sector", String(64)),  # a bundle's sector: which sector administrators may see and approve it
    Column("status", String(16), nullable=False),  # pending | approved | rejected | failed
    Column("requested_by", String(128), nullable=False),  # identity id
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(128)),
    Column("decided_at", DateTime(timezone=True)),
    Column("note", String(500)),  # a rejection's reason, or why the approved action failed
)

# One pending request per action and subject: asking twice finds the first request.
Index(
    "uq_approvals_one_pending",
    approvals.c.action,
    approvals.c.subject,
    unique=True,
    sqlite_where=approvals.c.status == PENDING,
    postgresql_where=approvals.c.status == PENDING,
)
Index("ix_approvals_status", approvals.c.status)
