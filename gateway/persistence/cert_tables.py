"""The certificate store's rows in the gateway's schema: keys, certificates and secrets, sealed by envelope
encryption.

The tables are defined once, in certstore (`certstore.cert_tables`: the far-side ferry agent keeps the same
ones in its own SQLite file); this module adds them to the gateway's metadata, where its migrations create
them. `certstore.CertStore` reads and writes them (it is handed `CERT_TABLES`).
"""

from __future__ import annotations

from certstore import cert_tables
from gateway.persistence.tables import metadata

CERT_TABLES = cert_tables(metadata)
cert_names, cert_versions, cert_warnings = CERT_TABLES.names, CERT_TABLES.versions, CERT_TABLES.warnings
