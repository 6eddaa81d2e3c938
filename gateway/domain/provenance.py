"""Where a material came from and how far it can be trusted (provenance and trust of licences, 国办函〔2016〕108号).

A material is either given by the applicant (an upload, or a paper shown at the window): `declared`, as good
as the applicant's word; or cited from the province's electronic licence library and verified
there when it was cited: `authoritative`, the issuing authority's own record. A cited licence is taken only
when the library says it is valid (not revoked, not past its validity on the Beijing date) and its holder is
the applicant (the same ID number); otherwise `LicenceRefused` says why and nothing changes.

The trust levels are the gateway's two of the national A–D scale that matter to a sector: `authoritative`
is an original from the library (A), `declared` a copy the applicant supplied (what a sector checks itself).
Pure: the library's answer arrives as data (the named query `licence_lookup`, docs/hall.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

LICENCE_LIBRARY = "licence_library"  # the source a cited licence's provenance names
LICENCE_LOOKUP = "licence_lookup"  # the named query that answers a licence by its number


class TrustLevel(StrEnum):
    AUTHORITATIVE = "authoritative"  # verified against the electronic licence library when cited
    DECLARED = "declared"  # the applicant's own upload or paper


class LicenceRefused(ValueError):
    """A cited licence the case cannot take: unknown, revoked, expired, or another person's."""


@dataclass(frozen=True)
class Provenance:
    """Where an authoritative material came from, as the library answered when it was cited."""

    source: str  # LICENCE_LIBRARY
    licence_number: str
    issuer: str
    valid_until: str | None  # ISO date; None: valid for good
    fetched_at: str  # ISO-8601 UTC: when the library was asked
    document_ref: str | None = None  # the library's reference to the licence's document

    def as_data(self) -> dict[str, Any]:
        return dict(vars(self))


def verified_licence(number: str, answer: Mapping[str, Any], holder_id_number: str, today: date,
                     fetched_at: datetime) -> Provenance:
    """The provenance of licence `number` from the library's `answer` (the mapped result of `licence_lookup`),
    if the licence is valid on `today` (Beijing date) and held by the person with `holder_id_number`."""
    status = answer.get("status")
    if status == "revoked":
        raise LicenceRefused(f"证照 {number} 已注销，不能作为申请材料")
    valid_until = _date_or_none(number, answer.get("valid_until"))
    if status == "expired" or (valid_until is not None and valid_until < today):
        raise LicenceRefused(f"证照 {number} 已过有效期（{valid_until}），不能作为申请材料")
    if status != "valid":
        raise LicenceRefused(f"证照库答复的证照 {number} 状态无法识别（{status!r}），不能作为申请材料")
    if str(answer.get("holder_id_number") or "").upper() != holder_id_number.upper():
        raise LicenceRefused(f"证照 {number} 的持证人不是申请人本人，不能作为申请材料")
    return Provenance(source=LICENCE_LIBRARY, licence_number=str(answer.get("number") or number),
                      issuer=str(answer.get("issuer") or ""),
                      valid_until=valid_until.isoformat() if valid_until else None,
                      fetched_at=fetched_at.isoformat(), document_ref=_text_or_none(answer.get("document_ref")))


def _date_or_none(number: str, value: Any) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise LicenceRefused(f"证照库答复的证照 {number} 有效期无法识别（{value!r}）") from None


def _text_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
