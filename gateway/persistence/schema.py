"""The whole schema: the one `metadata` with every table module registered on it.

A table module adds its tables to `gateway.persistence.tables.metadata` as it is imported, so a process
that has not imported all of them would migrate, compare or create part of the schema. `TABLE_MODULES` is
the one list of them: the unit of work and the migrations import this module, and a new table module is
added here and nowhere else. May import the table modules only.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from gateway.persistence.tables import metadata

TABLE_MODULES: tuple[ModuleType, ...] = tuple(import_module(f"gateway.persistence.{name}") for name in (
    "tables",
    "access_tables",
    "bundle_tables",
    "catalogue_tables",
    "cert_tables",
    "ferry_tables",
    "identity_tables",
    "ledger_tables",
    "material_tables",
    "notification_tables",
))

__all__ = ["TABLE_MODULES", "metadata"]
