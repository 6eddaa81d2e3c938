"""The one contract every adapter kind implements.

The gateway hands an adapter a *canonical message* (plain dicts and strings, see
`CanonicalMessage`) for one canonical operation (or a case event a bundle subscribes to, `CaseEventType`, called by
its name like a named query) and gets back a canonical result, or a `DeliveryError` whose `failure` class decides
whether the dispatcher retries.
Adapter kinds (SOAP now, REST later) differ only behind `Adapter.call`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

import structlog


class Operation(StrEnum):
    """Canonical operations a sector adapter may serve."""

    SUBMIT_CASE = "submit_case"
    QUERY_STATUS = "query_status"
    CANCEL_CASE = "cancel_case"
    FETCH_CERTIFICATE = "fetch_certificate"


class CaseEventType(StrEnum):
    """Case events a bundle may subscribe to (`subscriptions:` in bundle.yaml): each one it subscribes to is sent
    to it as a guaranteed delivery, through the mapping named for it (adapters/BUNDLE-FORMAT.md "Subscriptions")."""

    EVALUATED = "evaluated"  # 好差评: the applicant rated the case
    CERTIFICATE_ISSUED = "certificate_issued"  # 统一出证: the certificate was issued
    CASE_CLOSED = "case_closed"  # 办结


class FailureClass(StrEnum):
    """Why a delivery failed (DESIGN.md invariant 4). The class decides retry or not."""

    TRANSPORT = "transport"  # connection refused/reset, DNS, TLS
    TIMEOUT = "timeout"  # the sector did not answer in time
    SECTOR_FAULT = "sector_fault"  # SOAP Fault, HTTP 5xx/4xx, business error in a 200
    MAPPING = "mapping"  # our mapping could not render the request or read the answer
    VALIDATION = "validation"  # the sector's answer is malformed or hostile
    AUTH = "auth"  # the sector refused our credentials

    @property
    def transient(self) -> bool:
        """Only these are worth retrying; the others fail the same way every time."""
        return self in (FailureClass.TRANSPORT, FailureClass.TIMEOUT)


class DeliveryError(Exception):
    """A classified failure of one call to a sector."""

    def __init__(self, failure: FailureClass, message: str, *, retryable: bool | None = None,
                 business_code: str | None = None) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.business_code = business_code  # the sector's code when it refused inside a successful answer
        # A sector fault may be transient (HTTP 503, SOAP Server fault) or not (a business rejection).
        self.retryable = failure.transient if retryable is None else retryable
        self.attempts = 1  # the retry wrapper records how many calls it made before giving up
        # One entry per call made: {"at": ISO-8601 UTC, "failure": str | None, "message": str, "elapsed_ms": int}
        self.history: list[dict[str, Any]] = []
        # The sector's last raw answer: {"status": int | None, "headers": {...}, "body": str (cut at 64 KiB)}
        self.last_response: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.failure}: {self.message}"


class UnsendableRequest(DeliveryError):
    """The message cannot become a request the sector could receive — the mapping cannot render it, or the
    service description or the wire refuses a value (a dict where the WSDL wants a string, a character XML 1.0
    cannot carry, an URL too long) — so nothing was sent. MAPPING, never retried; the sector's health is not in
    question. For a hall's named query it is the hall's own mistake (its parameters), not the sector's."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureClass.MAPPING, message)


class SectorRefusal(DeliveryError):
    """The sector's final answer is no (a code its mapping lists under `business_error.final`, or any refusal when
    it declares `otherwise`): asking again gets the same answer, so it is never retried. It carries what the
    gateway needs to take the case on: the sector's `code`, its `sector_message` (as sent, usually Chinese), the
    `way` forward (`supplement` | `return` | `back_office`) and, for a supplement, the `missing` materials it
    named (possibly none)."""

    def __init__(self, code: str, sector_message: str, way: str, missing: tuple[str, ...] = ()) -> None:
        said = f"{code}: {sector_message}" if sector_message else code
        super().__init__(FailureClass.SECTOR_FAULT, f"business error {said} (final: {way})", retryable=False,
                         business_code=code)
        self.code = code
        self.sector_message = sector_message
        self.way = way
        self.missing = missing


class AnswerPending(DeliveryError):
    """The message is on its way to a sector that answers later, across a gap (the `ferry` kind): no failure,
    nothing to retry now — ask again in `retry_after_s` seconds (sooner when its answer arrives). Not
    retryable, so no retry policy spends an attempt on it, and no breaker or health window counts it: the
    sector was not called. The dispatcher makes the message due again (`CaseService.wait_for_answer`)."""

    def __init__(self, message: str, retry_after_s: float, *, sent: bool = False) -> None:
        super().__init__(FailureClass.TRANSPORT, message, retryable=False)
        self.retry_after_s = retry_after_s
        self.sent = sent  # this call put the message on its way (the message log records it then, once)


# A canonical message is a JSON-able dict:
#   {"idempotency_key": str, "sector_ref": str | None (the sector's reference for this task),
#    "task": {"id", "department", "credit_code", "lead": bool},   # one department's part of the case
#    "case": {"case_no", "matter_code", "accepted_at" (ISO-8601 UTC string), "green_channel": bool,
#             "channel", "region_code",
#             "applicant": {"name", "id_type", "id_number", "phone", "address", "legal_representative"},
#             "materials": [{"name": str, "received": bool, "file_ref": str | None,
#                            "trust": "authoritative"|"declared", "provenance": {...} | None}], "form": {...}}}
#   (a material's provenance: adapters/canonical.py PROVENANCE)
CanonicalMessage = Mapping[str, Any]
# A canonical result is a flat dict: submit_case -> {"sector_ref": str};
# query_status -> {"status": "received"|"in_process"|"approved"|"denied"|"returned", "opinion": str | None,
#                  "decided_at": ISO-8601 UTC string | None}, and the identifiers its mapping reads
#                  ("sector_ref", "case_no", "task_id", "idempotency_key"; see adapters/canonical.py)
CanonicalResult = dict[str, Any]


class Adapter(Protocol):
    """One registered bundle version of one sector, ready to call."""

    sector: str
    version: str

    def call(self, operation: Operation, message: CanonicalMessage) -> CanonicalResult:
        """Render, send, read the answer. Raises `DeliveryError` on any failure."""
        ...

    def render(self, operation: Operation, message: CanonicalMessage) -> Any:
        """The sector request this message becomes, without sending it (preview and dead letters)."""
        ...


CORRELATION_HEADER = "X-Correlation-Id"


def correlation_headers() -> dict[str, str]:
    """The HTTP header every request to a sector carries, whatever the adapter kind: the correlation id the
    gateway bound for the delivery in hand (`structlog.contextvars`, key `correlation_id`), so a sector's
    team can find our log lines for a request of theirs. Empty when nothing is bound (tools, previews)."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return {CORRELATION_HEADER: value} if isinstance(value, str) and value else {}
