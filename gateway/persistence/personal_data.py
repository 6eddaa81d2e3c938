"""How personal data rests: sealed, and found again only through a keyed blind index (DESIGN invariant 8).

Every column that can hold an ID number or a phone number — the applicant, the agent, the form, the
delivery address, opinions, event data and reasons, dead letters' rendered requests and error texts, the
stored idempotent answers — is written as a sealed token (`certstore.keyring.FieldSealer`: AES-256-GCM or
SM4-GCM under a key derived from the master key). A token is bound to its column (the AEAD's associated
data), so a token copied into another column does not open. JSON columns hold the token as a JSON string;
values written before sealing existed (plain JSON) still read.

Queries never need the plaintext: "my cases" goes through `index(id_number)`, a keyed HMAC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select, update

from certstore import FieldSealer, is_sealed
from gateway.persistence.tables import metadata


class PersonalData:
    def __init__(self, blind_index: Callable[[str], str], sealer: FieldSealer) -> None:
        self._blind_index = blind_index
        self._sealer = sealer

    def index(self, id_number: str) -> str:
        return self._blind_index(id_number)

    def seal(self, value: Any, column: str) -> str | None:
        """A JSON-able value as a sealed token; None stays None (absence is not personal data)."""
        return None if value is None else self._sealer.seal_json(value, column)

    def open(self, stored: Any, column: str) -> Any:
        return None if stored is None else self._sealer.open_json(stored, column)


class NoPersonalData:
    """For units of work that touch no personal data (the outbox lease): any attempt is a bug, said loudly."""

    def _refuse(self, *_: Any) -> Any:
        raise RuntimeError("this unit of work was opened without the personal-data keys; cases need them")

    index = seal = open = _refuse


# Where sealed values rest: table → (primary key columns, sealed columns). The AAD of each is "table.column".
SEALED_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cases": (("case_no",), ("applicant", "agent", "form", "delivery", "certificate", "opinion",
                                  "certificate_draft")),
    "case_tasks": (("case_no", "task_id"), ("opinion",)),
    "case_events": (("id",), ("reason", "data")),
    "dead_letters": (("id",), ("error_message", "rendered_request", "canonical_payload", "last_response", "history")),
    "idempotency_keys": (("owner", "key"), ("response",)),
}


def reseal_all(engine: Engine, sealer: FieldSealer, progress: Callable[[int], None] | None = None) -> int:
    """Re-seal every value not under the current master key and cipher, so an old key can leave the ring.

    The audit and message logs are not re-sealed: their hash chains cover the sealed bytes, so the keys
    they were written under stay in the ring (decrypt-only) for as long as the logs are kept.
    `progress` is told how many rows were read so far.
    """
    changed = read = 0
    for name, (keys, columns) in SEALED_COLUMNS.items():
        table = metadata.tables[name]
        with engine.begin() as conn:
            rows = conn.execute(select(*[table.c[k] for k in keys], *[table.c[c] for c in columns])).mappings().all()
            for row in rows:
                fresh = {c: sealer.reseal(row[c], f"{name}.{c}") for c in columns
                         if is_sealed(row[c]) and not sealer.is_current(row[c])}
                if fresh:
                    conn.execute(update(table).where(*[table.c[k] == row[k] for k in keys]).values(**fresh))
                    changed += 1
                read += 1
                if progress is not None:
                    progress(read)
    return changed
