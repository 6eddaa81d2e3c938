"""Provenance and trust of a material (gateway/domain/provenance.py): a licence cited from the library is taken
only when valid on the Beijing date and held by the applicant; a material keeps its citation through storage."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from adapters.canonical import readable_paths
from gateway.domain.case import SubmittedMaterial
from gateway.domain.provenance import LicenceRefused, Provenance, TrustLevel, verified_licence
from mappings import compile_mapping

HOLDER = "15020319850312003X"
TODAY = date(2026, 12, 7)
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def answer(**changes: Any) -> dict[str, Any]:
    return {"number": "GA-1", "name": "居民身份证", "holder_id_number": HOLDER, "issuer": "包头市公安局",
            "valid_until": "2036-01-01", "status": "valid", "document_ref": "dzzzk://licences/GA-1", **changes}


def test_a_valid_licence_of_the_applicant_gets_its_provenance() -> None:
    assert verified_licence("GA-1", answer(), HOLDER.lower(), TODAY, NOW) == Provenance(
        "licence_library", "GA-1", "包头市公安局", "2036-01-01", "2026-12-07T02:00:00+00:00", "dzzzk://licences/GA-1")


def test_a_licence_valid_for_good_has_no_end_date() -> None:
    assert verified_licence("GA-1", answer(valid_until=None), HOLDER, TODAY, NOW).valid_until is None


@pytest.mark.parametrize(("changes", "why"), [
    ({"status": "revoked"}, "已注销"),
    ({"status": "expired"}, "已过有效期"),
    ({"valid_until": "2026-12-06"}, "已过有效期"),  # the library's status lags: the date decides too
    ({"status": "suspended"}, "状态无法识别"),
    ({"valid_until": "someday"}, "有效期无法识别"),
    ({"holder_id_number": "150203199001010015"}, "不是申请人本人"),
    ({"holder_id_number": None}, "不是申请人本人"),
])
def test_a_licence_the_case_cannot_take_is_refused_saying_why(changes: dict[str, Any], why: str) -> None:
    with pytest.raises(LicenceRefused, match=why):
        verified_licence("GA-1", answer(**changes), HOLDER, TODAY, NOW)


def test_the_last_day_of_validity_is_still_valid() -> None:
    assert verified_licence("GA-1", answer(valid_until="2026-12-07"), HOLDER, TODAY, NOW).valid_until == "2026-12-07"


def test_trust_is_authoritative_only_for_a_confirmed_citation() -> None:
    provenance = verified_licence("GA-1", answer(), HOLDER, TODAY, NOW)
    assert SubmittedMaterial("居民身份证").trust is TrustLevel.DECLARED
    assert SubmittedMaterial("居民身份证", licence_number="GA-1").trust is TrustLevel.DECLARED  # not yet confirmed
    confirmed = SubmittedMaterial("居民身份证", licence_number="GA-1", provenance=provenance)
    assert confirmed.trust is TrustLevel.AUTHORITATIVE


def test_a_material_keeps_its_citation_through_storage_and_an_upload_is_stored_as_before() -> None:
    cited = SubmittedMaterial("居民身份证", licence_number="GA-1",
                              provenance=verified_licence("GA-1", answer(), HOLDER, TODAY, NOW))
    assert SubmittedMaterial.from_data(cited.as_data()) == cited
    assert SubmittedMaterial("购房合同", "m-1").as_data() == {"name": "购房合同", "file_ref": "m-1"}
    assert SubmittedMaterial.from_data({"name": "购房合同", "file_ref": None}) == SubmittedMaterial("购房合同")


SECTOR_READS_TRUST = {  # the example of adapters/BUNDLE-FORMAT.md, canonical materials
    "code_tables": {"trust": {"authoritative": "1", "declared": "0"}},
    "http": {"method": "POST", "path": "/applications"},
    "request": {"materials": {"for_each": "case.materials", "map": {
        "name": {"from": "name"},
        "verified": {"from": "trust", "code_table": "trust"},
        "licenceNo": {"from": "provenance.licence_number", "optional": True}}}},
    "response": {"fields": {"sector_ref": {"from": "ref"}}},
}


def test_a_sectors_mapping_reads_each_materials_trust_and_provenance() -> None:
    assert {"case.materials[].trust", "case.materials[].provenance.licence_number"} <= readable_paths("submit_case")
    cited = SubmittedMaterial("居民身份证", licence_number="GA-1",
                              provenance=verified_licence("GA-1", answer(), HOLDER, TODAY, NOW))
    message = {"case": {"materials": [{**m.described(), "received": True}
                                      for m in (cited, SubmittedMaterial("购房合同", "m-1"))]}}
    rendered = compile_mapping(SECTOR_READS_TRUST).render_request(message)
    assert rendered["materials"][0] == {"name": "居民身份证", "verified": "1", "licenceNo": "GA-1"}
    assert rendered["materials"][1]["verified"] == "0" and rendered["materials"][1].get("licenceNo") is None
