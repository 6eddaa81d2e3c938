"""The electronic licence library in tests: its shipped bundle activated on a gateway against a running simulator,
and licences put on the simulator's shelf."""

from __future__ import annotations

from datetime import date

from adapters.registry import default_bundles_dir
from adapters.simulators.licence_library import Licence
from gateway.bootstrap.app import Gateway
from gateway.sectors.bundle_records import pack_folder

SECTOR = "licence_library"
HOLDER_ID = "150203198503120039"  # the applicant of tests/support/applications.py
ISSUER = "包头市公安局"


def activate_library(gateway: Gateway) -> None:
    """Register and activate the licence library's bundle on `gateway` (its endpoint: the gateway's settings)."""
    version = gateway.bundles.register(pack_folder(default_bundles_dir() / SECTOR), "test").version
    gateway.bundles.activate(SECTOR, version, "test", force=True)


def licence(number: str, *, holder_id: str = HOLDER_ID, valid_until: date | None = date(2036, 1, 1),
            revoked: bool = False, name: str = "居民身份证") -> Licence:
    return Licence(number=number, name=name, holder_name="李秀英", holder_id_type="111", holder_id_number=holder_id,
                   issuer=ISSUER, valid_until=valid_until, issued_at="2016-01-01T00:00:00+00:00",
                   case_no="", revoked=revoked)
