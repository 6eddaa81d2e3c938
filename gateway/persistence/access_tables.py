"""Access control: approvals for the four-eyes rule."""

from __future__ import annotations

from gateway.persistence.tables import metadata  # noqa: F401
