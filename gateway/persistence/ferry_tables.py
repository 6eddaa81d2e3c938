"""The ferry's channel state in the gateway's schema: batches sent and received, messages and their answers, gaps
and quarantined files, per channel (the near side's stations, `gateway.sectors.ferry`).

The tables are defined once, in the ferry kind (`adapters.ferry_tables`: the far-side agent keeps the same ones in
its own SQLite file); this module adds them to the gateway's metadata, where migration 0019 creates them. No
message body is stored in them: the sealed batches are encrypted, answers and decisions carry no ID numbers.
"""

from __future__ import annotations

from adapters import ferry_tables
from gateway.persistence.tables import metadata

FERRY_TABLES = ferry_tables(metadata)
