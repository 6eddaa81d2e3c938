"""The certificate store's rows: keys, certificates and secrets, sealed by envelope encryption."""

from __future__ import annotations

from gateway.persistence.tables import metadata  # noqa: F401
