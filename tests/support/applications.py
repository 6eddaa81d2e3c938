"""Applications to the housing fund, as the API tests submit them."""

from __future__ import annotations

from typing import Any

HOUSING = "12150200MB1A00020M3000720001000"  # 住房公积金提取（购买自住住房）: back office, 3 working days


HOUSING_FUND = "12150200MB1A00020M"  # 包头市住房公积金管理中心


HOUSING_MATERIALS = ("居民身份证", "购房合同", "购房发票", "本人银行卡")


APPLICANT_ID = "150203198503120039"


def application(code: str = HOUSING, materials: tuple[str, ...] = HOUSING_MATERIALS, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"matter_code": code, "applicant": {"name": "李秀英", "id_number": APPLICANT_ID,
                                                              "phone": "13847100002"},
                            "materials": [{"name": m} for m in materials]}
    return {**body, **changes}
