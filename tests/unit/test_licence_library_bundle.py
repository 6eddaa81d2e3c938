"""The licence library's bundle (adapters/bundles/licence_library): its subscription mapping renders the canonical
event message of an issued certificate as the library's registration, and its named queries read the library's
answers. Rendered here with `mappings.compile_mapping` alone: the subscription mechanism that delivers the event
is another part of the gateway (BUNDLE-FORMAT.md, subscriptions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mappings import BusinessError, CompiledMapping, compile_mapping

BUNDLE = Path(__file__).resolve().parents[2] / "adapters" / "bundles" / "licence_library"
SIMULATOR_OPENAPI = BUNDLE.parents[1] / "simulators" / "licence_library.openapi.yaml"
ID_NUMBER = "150203199001011234"


def query_mapping(file: str) -> CompiledMapping:
    """A named query's mapping as the bundle compiles it (its `parameters:` contract is the gateway's)."""
    doc = yaml.safe_load((BUNDLE / file).read_text(encoding="utf-8"))
    return compile_mapping({k: v for k, v in doc.items() if k != "parameters"}, source_name=file)


def certificate_issued(valid_until: str | None = "2031-12-06") -> dict[str, Any]:
    """The canonical message of a certificate_issued event (the shared format of issue 18)."""
    holder = {"name": "张三", "id_type": "111", "id_number": ID_NUMBER}
    return {
        "idempotency_key": "150200202612070001:event:7:licence_library",
        "event": {"type": "certificate_issued", "at": "2026-12-07T02:00:00+00:00", "seq": 7},
        "case": {"case_no": "150200202612070001", "matter_code": "1115020000000000000000000000001",
                 "accepted_at": "2026-12-01T01:00:00+00:00", "green_channel": False, "channel": "window",
                 "region_code": "150200", "applicant": {**holder, "phone": "13800000000", "address": "",
                                                        "legal_representative": None},
                 "materials": [], "form": {}},
        "certificate": {"name": "就业创业证", "number": "JY-150200-0001", "issuer": "包头市就业服务中心",
                        "valid_until": valid_until, "holder": holder, "issued_at": "2026-12-07T02:00:00+00:00"},
    }


def test_the_bundle_subscribes_the_library_to_issued_certificates_and_serves_its_lookups() -> None:
    descriptor = yaml.safe_load((BUNDLE / "bundle.yaml").read_text(encoding="utf-8"))
    assert descriptor["subscriptions"] == {"certificate_issued": "certificate.mapping.yaml"}
    assert set(descriptor["queries"]) == {"licence_lookup", "licences_of_holder"}
    assert "operations" not in descriptor  # the library takes no cases
    assert (BUNDLE / "openapi.yaml").read_bytes() == SIMULATOR_OPENAPI.read_bytes()


def test_an_issued_certificate_renders_as_the_librarys_registration() -> None:
    mapping = compile_mapping(BUNDLE / "certificate.mapping.yaml")
    rendered = mapping.render_http(certificate_issued())
    assert (rendered.method, rendered.path) == ("POST", "/dzzzk/api/v1/licences")
    assert rendered.body == {
        "requestId": "150200202612070001:event:7:licence_library",  # a redelivery is recognised by it
        "licenceNo": "JY-150200-0001", "licenceName": "就业创业证",
        "holder": {"name": "张三", "idType": "111", "idNumber": ID_NUMBER},
        "issuer": "包头市就业服务中心", "validUntil": "2031-12-06",
        "issuedAt": "2026-12-07T02:00:00+00:00", "caseNo": "150200202612070001",
    }


def test_a_certificate_valid_for_good_is_registered_without_an_end_date() -> None:
    body = compile_mapping(BUNDLE / "certificate.mapping.yaml").render_http(certificate_issued(None)).body
    assert body is not None and body.get("validUntil") is None


def test_the_librarys_receipt_is_the_deliverys_result_and_its_refusal_a_business_error() -> None:
    mapping = compile_mapping(BUNDLE / "certificate.mapping.yaml")
    answer = {"code": "0", "msg": "成功", "data": {"licenceNo": "JY-1", "receiptNo": "ZK000000000001",
                                                 "duplicate": True}}
    assert mapping.read_response(answer) == {"receipt": "ZK000000000001"}
    with pytest.raises(BusinessError) as refused:
        mapping.read_response({"code": "E1001", "msg": "缺少必填项：issuer"})
    assert (refused.value.code, refused.value.message) == ("E1001", "缺少必填项：issuer")


def test_a_licence_lookup_asks_by_number_and_reads_status_holder_and_validity() -> None:
    mapping = query_mapping("licence_lookup.mapping.yaml")
    rendered = mapping.render_http({"query": {"number": "JY-150200-0001"}})
    assert (rendered.method, rendered.path) == ("GET", "/dzzzk/api/v1/licences/JY-150200-0001")
    answer = {"code": "0", "msg": "成功", "data": {
        "licenceNo": "JY-150200-0001", "licenceName": "就业创业证",
        "holder": {"name": "张三", "idType": "111", "idNumber": ID_NUMBER}, "issuer": "包头市就业服务中心",
        "validUntil": None, "status": "revoked", "docRef": "dzzzk://licences/JY-150200-0001"}}
    assert mapping.read_response(answer) == {
        "number": "JY-150200-0001", "name": "就业创业证", "holder_name": "张三", "holder_id_type": "111",
        "holder_id_number": ID_NUMBER, "issuer": "包头市就业服务中心", "valid_until": None, "status": "revoked",
        "document_ref": "dzzzk://licences/JY-150200-0001"}


def test_the_holders_licences_are_asked_by_id_type_and_number() -> None:
    rendered = query_mapping("licences_of_holder.mapping.yaml").render_http(
        {"query": {"id_type": "111", "id_number": ID_NUMBER}})
    assert (rendered.path, rendered.query) == ("/dzzzk/api/v1/licences", {"idType": "111", "idNumber": ID_NUMBER})
