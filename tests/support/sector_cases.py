"""Canonical cases for each shipped bundle's sector, as a dispatcher hands them over."""

from __future__ import annotations

from typing import Any

ACCEPTED_AT = "2026-11-24T02:00:00+00:00"  # 10:00 in Beijing


# Persons the simulators know (records derived from the number): see the expected values below.
WANG = ("王建国", "150203198503120039")  # unmarried; 城镇; 8 months of contributions, all paid


CHEN = ("陈强", "150203199211054426")  # 农村


def case_message(key: str, *, case_no: str, matter_code: str, department: str, credit_code: str,
                 applicant: tuple[str, str], materials: list[tuple[str, bool]], form: dict[str, Any],
                 green_channel: bool = False, sector_ref: str | None = None) -> dict[str, Any]:
    """A canonical message as `gateway.sectors.delivery.canonical_message` builds it."""
    name, id_number = applicant
    return {
        "idempotency_key": key,
        "sector_ref": sector_ref,
        "task": {"id": f"{case_no}-T1", "department": department, "credit_code": credit_code, "lead": True},
        "case": {
            "case_no": case_no,
            "matter_code": matter_code,
            "accepted_at": ACCEPTED_AT,
            "green_channel": green_channel,
            "channel": "window",
            "region_code": "150203",
            "applicant": {"name": name, "id_type": "111", "id_number": id_number, "phone": "13847100001",
                          "address": "内蒙古自治区包头市昆都仑区钢铁大街1号", "legal_representative": None},
            "materials": [{"name": m, "received": received, "file_ref": f"sha256:{i:064x}"}
                          for i, (m, received) in enumerate(materials)],
            "form": form,
        },
    }


def shebao_case(key: str, case_no: str, insured_months: int) -> dict[str, Any]:
    return case_message(
        key, case_no=case_no, matter_code="12150200MB1A00010L3000805001000",  # 失业保险金申领
        department="包头市社会保险事业服务中心", credit_code="12150200MB1A00010L", applicant=WANG,
        materials=[("居民身份证", True), ("解除或终止劳动合同证明", True), ("本人银行账户", True)],
        form={"insured_months": insured_months, "separation_date": "2026-10-31", "separation_reason": "用人单位解除"},
    )


def gjj_case(key: str, case_no: str, amount: str, *, green_channel: bool = False) -> dict[str, Any]:
    return case_message(
        key, case_no=case_no, matter_code="12150200MB1A00020M3000720001000",  # 住房公积金提取（购买自住住房）
        department="包头市住房公积金管理中心", credit_code="12150200MB1A00020M", applicant=WANG,
        materials=[("居民身份证", True), ("购房合同", True), ("购房发票", True), ("本人银行卡", True)],
        form={"amount": amount, "house_price": "650000.00", "contract_no": "BT2026-0815"},
        green_channel=green_channel,
    )


def mz_case(key: str, case_no: str, *, certificate_provided: bool) -> dict[str, Any]:
    return case_message(
        key, case_no=case_no, matter_code="11150203MB0C0004054000113003000",  # 困难残疾人两项补贴
        department="包头市昆都仑区民政局", credit_code="11150203MB0C000405", applicant=CHEN,
        materials=[("居民身份证", True), ("残疾人证", certificate_provided)],
        form={"disability_certificate_no": "15020319921105442643", "disability_grade": 2, "subsidies": ["护理补贴"]},
    )
