"""The electronic licence library in tests: its shipped bundle as this branch's loader takes it, activated on a
gateway against a running simulator, and licences put on the simulator's shelf."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

from adapters import validate_bundle
from adapters.registry import default_bundles_dir
from adapters.simulators.licence_library import Licence
from gateway.bootstrap.app import Gateway
from gateway.sectors.bundle_records import pack_folder

SECTOR = "licence_library"
HOLDER_ID = "150203198503120039"  # the applicant of tests/support/applications.py
ISSUER = "包头市公安局"

# Stand-in `submit_case` and `query_status` for the copy below: the loader of this branch requires them (and
# `serves`, `results`). No case reaches them (the library's department has no matter in the catalogue); they
# render requests the OpenAPI document accepts.
_STAND_IN_SUBMIT = """\
http: {method: POST, path: /dzzzk/api/v1/licences, success: [200]}
request:
  requestId: {from: idempotency_key}
  licenceNo: {from: case.case_no}
  licenceName: {from: case.matter_code}
  holder: {name: {from: case.applicant.name}, idType: {from: case.applicant.id_type},
           idNumber: {from: case.applicant.id_number}}
  issuer: {from: task.department}
  issuedAt: {from: case.accepted_at}
  caseNo: {from: case.case_no}
response:
  business_error: {code: code, ok: ["0"], message: msg}
  fields: {sector_ref: {from: data.receiptNo}}
"""
_STAND_IN_STATUS = """\
http: {method: GET, path: "/dzzzk/api/v1/licences/{licenceNo}", path_params: {licenceNo: {from: sector_ref}}}
response:
  business_error: {code: code, ok: ["0"], message: msg}
  fields: {status: {value: received}}
"""
_STAND_IN_DESCRIPTOR = """
serves: {departments: [11150000MB1A00090X]}
operations: {submit_case: stand_in_submit.mapping.yaml, query_status: stand_in_status.mapping.yaml}
results: {mode: polling, interval_ms: 60000}
"""


def loadable_bundle(tmp_path: Path) -> Path:
    """The shipped bundle folder when the loader takes it as it is; until case-event subscriptions are known to
    the loader (another part of issue 18), a copy without `subscriptions` and with the stand-in operations."""
    shipped = default_bundles_dir() / SECTOR
    if not validate_bundle(shipped):
        return shipped
    copy = tmp_path / "licence_library_bundle"
    shutil.copytree(shipped, copy)
    descriptor = (copy / "bundle.yaml").read_text(encoding="utf-8")
    kept = [line for line in descriptor.splitlines()
            if not line.startswith("subscriptions:") and not line.startswith("  certificate_issued:")]
    (copy / "bundle.yaml").write_text("\n".join(kept) + _STAND_IN_DESCRIPTOR, encoding="utf-8")
    (copy / "stand_in_submit.mapping.yaml").write_text(_STAND_IN_SUBMIT, encoding="utf-8")
    (copy / "stand_in_status.mapping.yaml").write_text(_STAND_IN_STATUS, encoding="utf-8")
    return copy


def activate_library(gateway: Gateway, tmp_path: Path) -> None:
    """Register and activate the licence library's bundle on `gateway` (its endpoint: the gateway's settings)."""
    version = gateway.bundles.register(pack_folder(loadable_bundle(tmp_path)), "test").version
    gateway.bundles.activate(SECTOR, version, "test", force=True)


def licence(number: str, *, holder_id: str = HOLDER_ID, valid_until: date | None = date(2036, 1, 1),
            revoked: bool = False, name: str = "居民身份证") -> Licence:
    return Licence(number=number, name=name, holder_name="李秀英", holder_id_type="111", holder_id_number=holder_id,
                   issuer=ISSUER, valid_until=valid_until, issued_at="2016-01-01T00:00:00+00:00",
                   case_no="", revoked=revoked)
