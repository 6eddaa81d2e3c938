"""Tamper-evident logs: the audit log and the message log, hash-chained, with signed checkpoints."""

from __future__ import annotations

from gateway.persistence.tables import metadata  # noqa: F401
