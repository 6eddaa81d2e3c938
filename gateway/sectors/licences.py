"""The electronic licence library as intake asks it: the named query `licence_lookup` of whichever active bundle
declares it (adapters/bundles/licence_library), behind the case service's `LicenceLibrary` port.

Why a port and not a call from the case service: the service sits below the sector calls (DESIGN.md layers);
the composition root hands it this object. What the library says becomes the case's words: no active bundle
answers the query, or the library knows no licence by that number (its business refusal), is a
`LicenceRefused` (422 to the hall); a library that cannot be asked (down, slow, an unusable answer) stays the
`DeliveryError` it is, which the API answers as it answers any query's (503 with Retry-After, 504, 502).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters import DeliveryError, FailureClass
from gateway.domain.provenance import LICENCE_LOOKUP, LicenceRefused
from gateway.sectors.calls import SectorCalls
from gateway.sectors.live_registry import NoActiveAdapter


class LicenceLookup:
    """`lookup(number)`: the library's answer for one licence, through the sector calls."""

    def __init__(self, calls: SectorCalls) -> None:
        self.calls = calls

    def lookup(self, number: str) -> Mapping[str, Any]:
        try:
            answered = self.calls.query(LICENCE_LOOKUP, {"number": number})
        except NoActiveAdapter:
            raise LicenceRefused("网关未接入证照库（没有启用的适配包提供查询 licence_lookup），"
                                 "不能引用证照，请上传材料") from None
        except DeliveryError as exc:
            if exc.failure is FailureClass.SECTOR_FAULT and not exc.retryable:  # the library's own "no such licence"
                raise LicenceRefused(f"证照库没有可用的证照 {number}（{exc.message}）") from None
            raise
        result: Mapping[str, Any] = answered["result"]
        return result
