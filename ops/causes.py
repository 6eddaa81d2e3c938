"""Causes: what thousands of dead letters have in common, so an operator acts on a fault, not on each letter.

`cause_of(error_class, sector, message)` is the key every dead letter stores when it is written
(`dead_letters.cause`): `sector/error_class: text`, where the text is the error message with what differs from
letter to letter made a placeholder — case numbers `<case_no>`, idempotency keys `<key>`, UUIDs `<uuid>`, times
`<time>`, IP addresses and ports `<addr>`, resident ID numbers `<id_number>`, mobile numbers `<phone>`, hex ids
`<id>`, any other number `<n>` — whitespace collapsed and at most 200 characters. Two messages differing only in
those give one cause; different words give different causes (tests/unit/test_causes.py, by property).

The normaliser itself lives in `gateway.domain.causes` (the repository writes the key with the letter, and the
gateway never imports ops); this module is the desk's face of it. A cause holds no ID or phone number, so it
rests plain and the desk's `text` search reads it (the error message itself is sealed).

`Cause` is one group as `DeadLetterDesk.causes(filter)` answers it: the largest first (ties: the group whose
oldest letter is older first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.domain.causes import MAX_CAUSE, cause_key, normalise

__all__ = ["MAX_CAUSE", "Cause", "cause_of", "normalise"]


def cause_of(error_class: str, sector: str, message: str) -> str:
    """The cause key of a letter of `sector` that failed with `error_class` and `message`."""
    return cause_key(error_class, sector, message)


@dataclass(frozen=True)
class Cause:
    """The matching dead letters of one cause: how many, the first and last to die, one of them to read."""

    error_class: str
    sector: str
    cause: str  # the key: filter by it (`cause=`) to list, replay or discard exactly this group; '' not yet known
    count: int
    first_at: datetime
    last_at: datetime
    sample_id: int  # the oldest letter of the group (lowest id)
