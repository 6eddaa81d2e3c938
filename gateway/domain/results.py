"""What a sector's decision says besides the decision itself: its own time, the certificate it issued, a result
document — read from a canonical status answer or callback (adapters/canonical.py, "certificate facts").

The contract:
- `SectorResult.read(result)` takes the canonical result's `decided_at`, `certificate_issued`,
  `certificate_number`, `certificate_valid_until` and `document_ref`; every one is optional. A time must say its
  zone (the mapping declares the sector's zone and converts): a naive `decided_at`, an unreadable one or a date
  that is no date is refused (`ResultProblem`) — never guessed. The time is kept in UTC.
- `SectorResult.certificate_issued` is true when the sector said so, or named a certificate number.
- `CertificateDraft`: the certificate a sector issued, as its `fetch_certificate` answered, waiting at unified
  issuing (待出证) with where it came from; the issuing window issues it (or the gateway, for an electronic
  certificate of a matter that says so).

Plain Python: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

FACT_FIELDS = ("decided_at", "certificate_issued", "certificate_number", "certificate_valid_until", "document_ref")
MAX_TEXT = 128  # a certificate number or document reference longer than this is no such thing


@dataclass(frozen=True)
class Certificate:
    """A result certificate (证照): what unified issuing issues (defined here, beside its draft; `case` re-exports)."""

    name: str
    number: str
    issuer: str
    valid_until: date | None = None


class ResultProblem(ValueError):
    """A sector's answer whose facts cannot be taken as they are (a time without its zone, a date that is none)."""


@dataclass(frozen=True)
class SectorResult:
    """The facts of one task's decision as its sector stated them."""

    decided_at: datetime | None = None  # the sector's time of decision, UTC
    certificate_issued: bool = False
    certificate_number: str | None = None
    certificate_valid_until: date | None = None
    document_ref: str | None = None  # the sector's result document (决定书), a reference it resolves

    @classmethod
    def read(cls, result: Mapping[str, Any]) -> SectorResult:
        """The facts of a canonical result; ResultProblem names the field that cannot be read."""
        number = _text(result, "certificate_number")
        issued = result.get("certificate_issued")
        if issued is not None and not isinstance(issued, bool):
            raise ResultProblem(f"certificate_issued: expected true or false, got {_shown(issued)}")
        return cls(decided_at=utc_instant(result.get("decided_at"), "decided_at"),
                   certificate_issued=bool(issued) or number is not None, certificate_number=number,
                   certificate_valid_until=iso_date(result.get("certificate_valid_until"), "certificate_valid_until"),
                   document_ref=_text(result, "document_ref"))

    @property
    def empty(self) -> bool:
        return self == SectorResult()

    def as_data(self) -> dict[str, Any]:
        """JSON-able, for storage and views: times as ISO UTC, dates as ISO dates."""
        return {"decided_at": self.decided_at.isoformat() if self.decided_at else None,
                "certificate_issued": self.certificate_issued, "certificate_number": self.certificate_number,
                "certificate_valid_until": _iso(self.certificate_valid_until), "document_ref": self.document_ref}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SectorResult:
        return cls.read(data)


@dataclass(frozen=True)
class CertificateDraft:
    """A certificate fetched from the sector that issued it, prefilled for unified issuing (待出证)."""

    certificate: Certificate
    sector: str
    task_id: str
    fetched_at: datetime  # UTC
    holder_name: str | None = None
    file_ref: str | None = None  # the sector's file of the certificate, if it gave one

    def as_data(self) -> dict[str, Any]:
        c = self.certificate
        return {"name": c.name, "number": c.number, "issuer": c.issuer, "valid_until": _iso(c.valid_until),
                "sector": self.sector, "task_id": self.task_id, "fetched_at": self.fetched_at.isoformat(),
                "holder_name": self.holder_name, "file_ref": self.file_ref}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CertificateDraft:
        certificate = Certificate(data["name"], data["number"], data["issuer"],
                                  iso_date(data.get("valid_until"), "valid_until"))
        fetched = utc_instant(data["fetched_at"], "fetched_at")
        assert fetched is not None
        return cls(certificate, data["sector"], data["task_id"], fetched, data.get("holder_name"), data.get("file_ref"))


def fetched_certificate(result: Mapping[str, Any], fallback_issuer: str) -> tuple[Certificate, str | None, str | None]:
    """A canonical fetch_certificate result as (certificate, holder's name, file reference); the issuer defaults
    to the department whose task it is. ResultProblem names what cannot be read."""
    name, number = _text(result, "name"), _text(result, "number")
    if name is None or number is None:
        raise ResultProblem("the certificate answer names no " + ("name" if name is None else "number"))
    holder = result.get("holder")
    holder_name = holder.get("name") if isinstance(holder, Mapping) and isinstance(holder.get("name"), str) else None
    certificate = Certificate(name, number, _text(result, "issuer") or fallback_issuer,
                              iso_date(result.get("valid_until"), "valid_until"))
    return certificate, holder_name, _text(result, "file_ref")


def utc_instant(value: Any, field: str) -> datetime | None:
    """An ISO-8601 instant that states its zone, in UTC; None for none. A naive time is refused: which zone a
    sector meant is for its mapping to declare, not for us to guess."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        instant = value
    else:
        try:
            instant = datetime.fromisoformat(str(value))
        except ValueError:
            raise ResultProblem(f"{field}: not an ISO-8601 time: {_shown(value)}") from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ResultProblem(f"{field}: {_shown(value)} does not say its time zone (declare the sector's zone in the "
                            "mapping)")
    return instant.astimezone(UTC)


def iso_date(value: Any, field: str) -> date | None:
    """An ISO date (a validity's last day); None for none."""
    if value is None or value == "":
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ResultProblem(f"{field}: not an ISO date (YYYY-MM-DD): {_shown(value)}") from None


def _text(result: Mapping[str, Any], field: str) -> str | None:
    value = result.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ResultProblem(f"{field}: expected text, got {_shown(value)}")
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        raise ResultProblem(f"{field}: longer than {MAX_TEXT} characters")
    return text or None


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"
