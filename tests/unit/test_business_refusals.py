"""Business errors declared per code: retryable, or final with a way forward (and what is missing)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.contract import FailureClass, SectorRefusal
from adapters.kinds.common import mapping_failure
from mappings import BusinessError, MappingError, compile_mapping
from mappings.engine import describe


def _mapping(**business: Any) -> Any:
    spec = {"code": "ResultCode", "ok": ["SUCCESS"], "message": "ResultMessage", "auth": ["E401"], **business}
    return compile_mapping({"operation": "SubmitCase", "request": {"a": {"value": 1}},
                            "response": {"business_error": spec, "fields": {"ref": {"from": "Ref"}}}},
                           source_name="submit_case.mapping.yaml")


DECLARED = {
    "retryable": ["BUSY", 9001],
    "final": {"MATERIAL_MISSING": {"way": "supplement", "missing": "Detail.Missing"},
              "NOT_ELIGIBLE": {"way": "return"}},
}


def _refusal(answer: dict[str, Any], **business: Any) -> BusinessError:
    with pytest.raises(BusinessError) as caught:
        _mapping(**(business or DECLARED)).read_response(answer)
    return caught.value


def test_a_retryable_code_is_retryable_and_names_no_way() -> None:
    refusal = _refusal({"ResultCode": "9001", "ResultMessage": "系统繁忙"})
    assert (refusal.code, refusal.message, refusal.retryable, refusal.way) == ("9001", "系统繁忙", True, None)


@pytest.mark.parametrize(("missing", "expected"), [
    (["户口簿", "结婚证"], ("户口簿", "结婚证")),
    ("户口簿、结婚证；户口簿, 照片", ("户口簿", "结婚证", "照片")),  # split on 、,; each name once, in order
    (None, ()),  # the sector named nothing: the gateway falls back to the back office
])
def test_a_supplement_code_lists_what_the_sector_says_is_missing(missing: Any, expected: tuple[str, ...]) -> None:
    answer = {"ResultCode": "MATERIAL_MISSING", "ResultMessage": "缺少材料", "Detail": {"Missing": missing}}
    refusal = _refusal(answer)
    assert (refusal.way, refusal.missing, refusal.retryable, refusal.message) == ("supplement", expected, False,
                                                                                  "缺少材料")


def test_other_codes_take_the_declared_way_or_the_back_office() -> None:
    assert _refusal({"ResultCode": "NOT_ELIGIBLE"}).way == "return"
    assert _refusal({"ResultCode": "E999"}).way == "back_office"
    assert _refusal({"ResultCode": "E999"}, otherwise="return", **DECLARED).way == "return"
    assert _refusal({"ResultCode": "E401"}).auth


def test_a_mapping_that_declares_no_ways_leaves_refusals_to_an_operator() -> None:
    refusal = _refusal({"ResultCode": "E999"}, message="ResultMessage")
    assert refusal.way is None and not refusal.retryable


@pytest.mark.parametrize(("business", "expected"), [
    ({"final": {"A": {"way": "void"}}},
     "final.A.way: expected one of supplement, return, back_office, got 'void'"),
    ({"final": {"SUCCESS": {"way": "return"}}}, "final: 'SUCCESS' is listed under ok too"),
    ({"retryable": ["E401"]}, "retryable: 'E401' is listed under auth too"),
    ({"retryable": ["A"], "final": {"A": {"way": "return"}}}, "final: 'A' is listed under retryable too"),
    ({"retryable": []}, "retryable: expected a non-empty list"),
    ({"final": {"A": {"way": "supplement"}}}, "final.A.missing: required for a supplement"),
    ({"final": {"A": {"way": "return", "missing": "x"}}}, "final.A.missing: only a supplement names"),
    ({"final": {"A": {"way": "return", "why": "x"}}}, "final.A: unknown key 'why'"),
    ({"final": {}}, "final: expected at least one code"),
    ({"otherwise": "supplement"}, "otherwise: cannot be supplement"),
    ({"otherwise": "later"}, "otherwise: expected one of supplement, return, back_office"),
])
def test_bad_declarations_are_compile_errors(business: dict[str, Any], expected: str) -> None:
    with pytest.raises(MappingError) as caught:
        _mapping(**business)
    assert str(caught.value).startswith(f"submit_case.mapping.yaml: response.business_error.{expected}")


def test_describe_lists_the_missing_path_so_it_is_checked_against_the_answer() -> None:
    reads = [rule for rule in describe(_mapping(**DECLARED)) if rule.section == "response.business_error"]
    assert [(rule.field, rule.source) for rule in reads] == [
        ("response.business_error.code", ("ResultCode",)),
        ("response.business_error.message", ("ResultMessage",)),
        ("response.business_error.final.MATERIAL_MISSING.missing", ("Detail", "Missing")),
    ]


def test_adapter_kinds_classify_refusals_by_their_kind() -> None:
    busy = mapping_failure(BusinessError("BUSY", "繁忙", retryable=True))
    assert (busy.failure, busy.retryable) == (FailureClass.SECTOR_FAULT, True)
    final = mapping_failure(BusinessError("MATERIAL_MISSING", "缺少户口簿", way="supplement", missing=("户口簿",)))
    assert isinstance(final, SectorRefusal) and not final.retryable
    assert (final.failure, final.code, final.sector_message, final.way, final.missing) == (
        FailureClass.SECTOR_FAULT, "MATERIAL_MISSING", "缺少户口簿", "supplement", ("户口簿",))
    legacy = mapping_failure(BusinessError("E1", "x"))
    assert not isinstance(legacy, SectorRefusal) and not legacy.retryable


@pytest.mark.parametrize(("answer", "business"), [
    ({"ResultCode": "9001"}, DECLARED),  # retryable
    ({"ResultCode": "NOT_ELIGIBLE"}, DECLARED),  # final, with its way
    ({"ResultCode": "E401"}, DECLARED),  # our credentials
    ({"ResultCode": "E999"}, {"message": "ResultMessage"}),  # no ways declared: left to an operator
])
def test_every_business_refusal_carries_the_sectors_code(answer: dict[str, Any], business: dict[str, Any]) -> None:
    """Whoever reads the failure (a rehearsal's expectation, an operator) gets the code as the sector sent it,
    not parsed back out of a message."""
    assert mapping_failure(_refusal(answer, **business)).business_code == answer["ResultCode"]
    assert mapping_failure(MappingError("submit_case.mapping.yaml: response.fields.ref: Ref is missing")).business_code is None
